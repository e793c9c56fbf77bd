"""`{% load edc_time %}`: the one way a template shows a date-time (edc.timefmt).

    {{ consent.consented_at|site_time:participant.site }}   -> 2026-03-10 10:15 CET (site, Europe/Paris)
    {{ clock.due_at|utc_time }}                              -> 2026-03-10 09:15 UTC

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
