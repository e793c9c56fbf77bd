"""Every time shown says whose time it is (issue 20).

Times are stored in UTC. A time that happened at a site (a consent signed, an AE the site learned
of, a report sent) is shown in that site's wall-clock time with the zone's abbreviation and a label
naming the site's IANA zone: "2026-03-10 10:15 CET (site, Europe/Paris)"; any other time (a
server event, a deadline computed in UTC) is shown as "2026-03-10 09:15 UTC". Never the viewer's
time zone, never unlabeled: a monitor in another country reads the time the site wrote.

Dates and times are written ISO 8601 (year-month-day, 24-hour clock): the one order that no reader
of English, French or Spanish takes for another (03/10 is March 10 in en, 3 October in fr/es).
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

DATETIME_FORMAT = "%Y-%m-%d %H:%M"


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


def utc_text(value: datetime | None) -> str:
    """A moment in UTC, labelled: "2026-03-10 09:15 UTC"."""
    if value is None:
        return ""
    return _aware(value).astimezone(UTC).strftime(DATETIME_FORMAT) + " UTC"


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
        "time": local.strftime(DATETIME_FORMAT), "abbreviation": local.tzname(), "zone": site_zone.key,
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
