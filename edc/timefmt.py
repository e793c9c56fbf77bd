"""Every time shown says whose time it is (issue 20).

Times are stored in UTC. A time that happened at a site (a consent signed, an AE the site learned
of, a report sent) is shown in that site's wall-clock time with the zone's abbreviation and a label
naming the site's IANA zone: "2026-03-10 10:15 CET (site, Europe/Paris)"; any other time (a
server event, a deadline computed in UTC) is shown as "2026-03-10 09:15 UTC". Never the viewer's
time zone, never unlabeled: a monitor in another country reads the time the site wrote.

The date is written in the reader's language with the month's name, day first ("10 Mar 2026",
"10 mars 2026", "10 mar 2026": edc/formats' DATE_FORMAT), the time on a 24-hour clock: no reader of
English, French or Spanish takes it for another day (03/10 is March 10 in en, 3 October in fr/es).
The `datetime` attribute of the <time> element stays ISO 8601 UTC, and exports write ISO (not this).
"""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _


def _moment_text(value: datetime) -> str:
    """The date in the active language's DATE_FORMAT and a 24-hour time: "10 Mar 2026 09:15"."""
    return f"{formats.date_format(value, 'DATE_FORMAT')} {value.strftime('%H:%M')}"


def _zone(zone: object) -> ZoneInfo | None:
    """The site's zone from a ZoneInfo, an IANA name or anything with a `time_zone` (a Site)."""
    zone = getattr(zone, "time_zone", zone)
    if isinstance(zone, ZoneInfo):
        return zone
    if not zone:
        return None
    try:
        return ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _aware(value: datetime) -> datetime:
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def date_text(value: date | None) -> str:
    """A date in the active language, unambiguous: "10 Mar 2026", "10 mars 2026", "10 mar 2026"."""
    return formats.date_format(value, "DATE_FORMAT") if value is not None else ""


def utc_moment(value: datetime | None) -> str:
    """A moment in UTC without the label, for a sentence that names UTC itself ("... until {{ until }} UTC")."""
    if value is None:
        return ""
    return _moment_text(_aware(value).astimezone(UTC))


def utc_text(value: datetime | None) -> str:
    """A moment in UTC, labelled: "2026-03-10 09:15 UTC"."""
    if value is None:
        return ""
    return _moment_text(_aware(value).astimezone(UTC)) + " UTC"


def site_text(value: datetime | None, zone: object) -> str:
    """A moment in the site's wall-clock time, labelled: "2026-03-10 10:15 CET (site, Europe/Paris)".
    Without a known zone, UTC (labelled UTC)."""
    if value is None:
        return ""
    site_zone = _zone(zone)
    if site_zone is None:
        return utc_text(value)
    local = _aware(value).astimezone(site_zone)
    return _("%(time)s %(abbreviation)s (site, %(zone)s)") % {
        "time": _moment_text(local), "abbreviation": local.tzname(), "zone": site_zone.key,
    }


def site_html(value: datetime | None, zone: object) -> SafeString | str:
    """site_text in a <time> element carrying the UTC moment (machine-readable, and as a tooltip)."""
    if value is None:
        return ""
    moment = _aware(value).astimezone(UTC)
    return format_html('<time datetime="{}" title="{}" class="edc-time">{}</time>',
                       moment.strftime("%Y-%m-%dT%H:%M:%SZ"), utc_text(moment), site_text(value, zone))


def utc_html(value: datetime | None) -> SafeString | str:
    if value is None:
        return ""
    moment = _aware(value).astimezone(UTC)
    return format_html('<time datetime="{}" class="edc-time">{}</time>', moment.strftime("%Y-%m-%dT%H:%M:%SZ"), utc_text(moment))
