from django.urls import path

from trials.protocol import views

urlpatterns = [
    path("", views.home, name="home"),
    path("trials/<str:code>/", views.trial_detail, name="trial_detail"),
    path("trials/<str:code>/unblinded-access/", views.unblinded_access_log, name="unblinded_access_log"),
]
