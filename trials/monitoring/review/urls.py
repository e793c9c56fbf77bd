"""URL of the form-view review."""

from django.urls import path

from trials.monitoring.review import views

urlpatterns = [
    path("monitoring/entries/<int:pk>/review/", views.form_review, name="form_review"),
]
