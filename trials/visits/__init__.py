"""Visits: visits, CRF entries, the visit schedule, reminders and the calendar feed."""
