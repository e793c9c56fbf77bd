"""The audit trail in the admin.

Its pages hang under the records they describe, so they are routed by those records' admin
classes (trials.monitoring.admin_casebook: `ParticipantAdmin.get_urls`, `CrfEntryAdmin.get_urls`) and read the
record through their scoped querysets; the views are trials.monitoring.views_audit, the trail is
trials.monitoring.audit. Nothing is registered here.
"""
