from django.urls import path

from trials.epro import views

urlpatterns = [
    path("epro/visits/<int:visit_pk>/", views.visit_page, name="epro_visit"),
    path("epro/tablet/", views.tablet_home, name="epro_tablet"),
    path("epro/tablet/exit/", views.tablet_exit, name="epro_tablet_exit"),
    path("epro/tablet/<str:crf_code>/", views.tablet_answer, name="epro_tablet_answer"),
    path("epro/q/<str:token>/", views.link_answer, name="epro_link"),
]
