"""Monitoring in the admin, one module per concern (Django autodiscovers this module): the monitor's
view of participants, casebooks and AEs, queries and SDV, locks, the audit trail."""

from trials.monitoring import (  # noqa: F401
    admin_audit,
    admin_casebook,
    admin_locks,
    admin_participants,
    admin_queries,
    admin_safety,
)
