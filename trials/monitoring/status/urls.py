"""URL of the status grid."""

from django.urls import path

from trials.monitoring.status import views

urlpatterns = [
    path("trials/<str:code>/status-grid/", views.status_grid_page, name="status_grid"),
]
