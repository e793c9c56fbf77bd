"""Accounts: how people get in and prove who they are (lockout, login audit, password re-entry)."""
