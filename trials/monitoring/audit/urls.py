"""URLs of the monitor's dashboard (the audit trail pages live in the admin: trials.monitoring.admin_casebook)."""

from django.urls import path

from trials.monitoring import views_audit

urlpatterns = [
    path("monitoring/", views_audit.monitoring_dashboard, name="monitoring_dashboard"),
]
