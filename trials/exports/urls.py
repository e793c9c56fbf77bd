"""Export pages."""

from django.urls import path

from trials.exports import views

urlpatterns = [
    path("exports/", views.export_home, name="export_home"),
    path("exports/<int:pk>/progress/", views.job_progress, name="export_progress"),
    path("exports/<int:pk>/retry/", views.job_retry, name="export_retry"),
    path("exports/<int:pk>/download/", views.job_download, name="export_download"),
    path("trials/<str:code>/exports/", views.trial_exports, name="trial_exports"),
]
