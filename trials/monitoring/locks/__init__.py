"""Sign-off pages and locks: the study pages to sign and to keep the deviation log, and the admin of locks, freezes, signatures and deviations (the lock rules are trials.records)."""
