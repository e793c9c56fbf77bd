"""Monitoring: queries, SDV plans and verification, signing, lock management, deviations, the audit trail and the monitor's admin (above the data apps)."""
