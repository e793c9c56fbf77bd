"""Monitoring in the admin, one module per concern (Django autodiscovers this module)."""

from trials.monitoring import admin_audit, admin_locks, admin_queries  # noqa: F401
