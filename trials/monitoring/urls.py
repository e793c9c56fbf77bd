"""Monitoring pages, one module per concern (queries and SDV; signatures, locks and deviations;
audit trail and the monitor's dashboard; the participant's dashboard)."""

from django.urls import include, path

urlpatterns = [
    path("", include("trials.monitoring.urls_queries")),
    path("", include("trials.monitoring.urls_locks")),
    path("", include("trials.monitoring.urls_audit")),
    path("", include("trials.monitoring.casebook.urls")),
]
