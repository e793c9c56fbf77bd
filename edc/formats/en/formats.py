"""Dates in this language, unambiguous (issue 20): day, abbreviated month name, four-digit year
(the DD-MMM-YYYY of clinical sites: "6 Dec 2026"), never 03/10 (March 10 in en, 3 October in
fr/es). Templates show a date with `|date:"DATE_FORMAT"`; edc.timefmt writes date-times with the same
date and a 24-hour time. A date-time shown without edc_time's filters (Django's admin lists) still says
its zone: the current time zone is UTC, so "... 09:15 UTC", never an unlabeled "9:15 a.m.".
Inputs stay ISO (`type=date` pickers, format="%Y-%m-%d"); exports keep ISO (trials.exports)."""

DATE_FORMAT = "j M Y"
SHORT_DATE_FORMAT = DATE_FORMAT
DATETIME_FORMAT = "j M Y H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
