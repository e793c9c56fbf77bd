"""URL of the participant's dashboard (its path and name as when visits served it)."""

from django.urls import path

from trials.monitoring.casebook import views

urlpatterns = [
    path("participants/<int:pk>/", views.participant_dashboard, name="participant_dashboard"),
]
