"""Visits: visits, CRF entries, the visit schedule, reminders and the calendar feed (what they need of monitoring goes through visits/hooks.py)."""
