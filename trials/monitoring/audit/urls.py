"""URLs of the monitor's dashboard (the audit trail pages live in the admin: trials.monitoring.casebook.admin)."""

from django.urls import path

from trials.monitoring.audit import views as views_audit

urlpatterns = [
    path("monitoring/", views_audit.monitoring_dashboard, name="monitoring_dashboard"),
]
