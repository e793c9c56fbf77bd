"""Signing: the investigator signs a visit or a casebook (re-entering her password); failed attempts are kept (what breaks a signature is trials.records)."""
