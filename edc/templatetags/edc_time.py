"""`{% load edc_time %}`: the one way a template shows a date-time (edc.timefmt).

    {{ consent.consented_at|site_time:participant.site }}   -> 10 Mar 2026 10:15 CET (site, Europe/Paris)
    {{ clock.due_at|utc_time }}                              -> 10 Mar 2026 09:15 UTC
    {{ link.expires_at|utc_moment }}   (the sentence says UTC) -> 10 Mar 2026 09:15
    {{ visit.visit_date|date:"DATE_FORMAT" }}                -> 10 Mar 2026 (10 mars 2026, 10 mar 2026)

Dates are in the reader's language with the month's name (edc/formats), times on a 24-hour clock.

The argument of site_time is a Site, or an IANA zone name."""

from django import template

from edc import timefmt

register = template.Library()


@register.filter
def site_time(value, zone):  # noqa: ANN001, ANN201
    """A date-time in the site's time zone, with the zone named."""
    return timefmt.site_html(value, zone)


@register.filter
def utc_time(value):  # noqa: ANN001, ANN201
    """A date-time in UTC, labelled UTC."""
    return timefmt.utc_html(value)


@register.filter
def utc_moment(value):  # noqa: ANN001, ANN201
    """A date-time in UTC, not labelled: only where the text around it says UTC."""
    return timefmt.utc_moment(value)
