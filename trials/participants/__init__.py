"""Participants: screening, consent, eligibility, enrolment, allocation, cohorts, unblinding (writers call trials.records; what they need of visits and safety goes through participants/hooks.py)."""
