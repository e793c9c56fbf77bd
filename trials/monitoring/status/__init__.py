"""The status grid: a trial's participants × visits × CRFs at a glance (issue 21)."""
