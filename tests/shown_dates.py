"""The unambiguous English date the pages and messages show (day, abbreviated month, year), worked
out here independently of Django's formats: "6 Dec 2026" (edc/formats/en/formats.py writes it)."""

from datetime import date

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def english_date(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"
