"""Monitoring in the admin, one module per concern (Django autodiscovers this module): the monitor's
view of participants, casebooks and AEs, queries and SDV, locks, the audit trail. The order is the
registration order (queries/admin.py re-registers what locks/admin.py registered)."""

from trials.monitoring.audit import admin as audit_admin  # noqa: F401
from trials.monitoring.casebook import admin as casebook_admin  # noqa: F401
from trials.monitoring.locks import admin as locks_admin  # noqa: F401
from trials.monitoring.casebook import admin_participants  # noqa: F401
from trials.monitoring.queries import admin as queries_admin  # noqa: F401
from trials.monitoring.casebook import admin_safety  # noqa: F401
