"""Participants: screening, consent, eligibility, enrolment, allocation, cohorts, unblinding (writers call trials.records for locks and data_changed)."""
