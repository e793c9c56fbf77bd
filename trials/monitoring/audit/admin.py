"""The audit trail in the admin.

Its pages hang under the records they describe, so they are routed by those records' admin
classes (trials.monitoring.casebook.admin: `ParticipantAdmin.get_urls`, `CrfEntryAdmin.get_urls`) and read the
record through their scoped querysets; the views are trials.monitoring.audit.views, the trail is
trials.monitoring.audit.trail. Nothing is registered here.
"""
