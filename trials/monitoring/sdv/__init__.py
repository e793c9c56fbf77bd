"""Source data verification: the SDV plan of a trial, which items are critical, verifying an entry, the backlog."""
