"""Export pages."""

from django.urls import path, re_path

from trials.exports import oversight_views, views

urlpatterns = [
    path("exports/", views.export_home, name="export_home"),
    path("exports/<int:pk>/progress/", views.job_progress, name="export_progress"),
    path("exports/<int:pk>/retry/", views.job_retry, name="export_retry"),
    path("exports/<int:pk>/download/", views.job_download, name="export_download"),
    path("trials/<str:code>/exports/", views.trial_exports, name="trial_exports"),
    path("participants/<int:pk>/casebook.pdf", oversight_views.participant_casebook, name="participant_casebook_pdf"),
    path("trials/<str:code>/dsmb/", oversight_views.dsmb_package, name="dsmb_package"),
    re_path(r"^trials/(?P<code>[^/]+)/dsmb/(?P<report>open|closed)\.(?P<fmt>pdf|csv)$", oversight_views.dsmb_download,
            name="dsmb_download"),
]
