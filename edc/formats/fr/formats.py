"""Date-time formats for any {{ datetime }} not shown through edc_time (Django's admin lists, for
one): ISO 8601 with the zone's abbreviation (the current time zone is UTC: "2026-03-10 09:15 UTC"),
never an unlabeled "9:15 a.m.". Dates stay in each language's own format (Django's locale files)."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
