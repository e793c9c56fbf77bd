"""URLs of the data-quality rules (data managers)."""

from django.urls import path

from trials.monitoring.quality import views

urlpatterns = [
    path("quality/", views.quality_index, name="quality_index"),
    path("trials/<str:code>/quality/", views.quality_report, name="quality_report"),
    path("trials/<str:code>/quality/run/", views.quality_run, name="quality_run"),
]
