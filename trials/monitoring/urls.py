"""Monitoring pages, one module per concern (queries and SDV; signatures, locks and deviations;
audit trail and the monitor's dashboard; the participant's dashboard)."""

from django.urls import include, path

urlpatterns = [
    path("", include("trials.monitoring.queries.urls")),
    path("", include("trials.monitoring.locks.urls")),
    path("", include("trials.monitoring.audit.urls")),
    path("", include("trials.monitoring.casebook.urls")),
    path("", include("trials.monitoring.status.urls")),
    path("", include("trials.monitoring.review.urls")),
    path("", include("trials.monitoring.reports.urls")),
    path("", include("trials.monitoring.quality.urls")),
]
