"""The audit trail (who, when, what, old -> new, why) of a participant and a CRF entry, its admin pages and CSV, and the monitor's dashboard."""
