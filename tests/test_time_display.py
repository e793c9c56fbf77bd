"""Issue 20: every time shown says whose time it is. A consent signed at 10:15 in Toulouse reads
"10:15 CET (site, Europe/Paris)" to everyone, a monitor's server time zone (UTC) notwithstanding;
times not tied to a site say UTC. The expected strings are worked out by hand from the zone rules
(Paris: UTC+1 in winter "CET", UTC+2 in summer "CEST"; Mexico City: UTC-6 all year since 2022, "CST")."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from edc.audit import system_user
from trials.participants import services
from trials.participants.models import ConsentDocument
from trials.protocol.models import Site


def render(source: str, **context: object) -> str:
    return Template("{% load edc_time %}" + source).render(Context(context))


@pytest.mark.parametrize(("moment", "zone", "expected"), [
    (datetime(2026, 1, 15, 9, 15, tzinfo=UTC), "Europe/Paris", "15 Jan 2026 10:15 CET (site, Europe/Paris)"),
    (datetime(2026, 7, 15, 8, 15, tzinfo=UTC), "Europe/Paris", "15 Jul 2026 10:15 CEST (site, Europe/Paris)"),
    (datetime(2026, 1, 15, 16, 15, tzinfo=UTC), "America/Mexico_City", "15 Jan 2026 10:15 CST (site, America/Mexico_City)"),
    # Just after midnight UTC is still the evening before in Mexico City: the site's date is shown.
    (datetime(2026, 1, 16, 0, 30, tzinfo=UTC), "America/Mexico_City", "15 Jan 2026 18:30 CST (site, America/Mexico_City)"),
])
def test_site_time_is_the_sites_wall_clock_with_its_zone_named(moment, zone, expected):
    with timezone.override(UTC), translation.override("en"):  # the server's (and a monitor's) zone
        html = render("{{ at|site_time:zone }}", at=moment, zone=zone)
    assert expected in html
    assert f'datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in html  # the UTC moment, machine-readable


def test_utc_time_and_an_unknown_zone_say_utc():
    moment = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Paris")), translation.override("en"):  # whatever zone is active, UTC is written as UTC
        assert "15 Jan 2026 09:15 UTC" in render("{{ at|utc_time }}", at=moment)
        assert "15 Jan 2026 09:15 UTC" in render("{{ at|site_time:'' }}", at=moment)
        assert "15 Jan 2026 09:15 UTC" in render("{{ at|site_time:'Nowhere/Atlantis' }}", at=moment)
    assert render("{{ at|site_time:'Europe/Paris' }}|{{ at|utc_time }}", at=None) == "|"


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_a_datetime_shown_without_the_filters_still_says_utc(language):
    """Django's admin lists format a datetime with the locale's DATETIME_FORMAT (edc/formats)."""
    moment = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
    with translation.override(language), timezone.override(UTC):
        assert render("{{ at }}", at=moment) == {"en": "15 Jan 2026 09:15 UTC", "fr": "15 jan. 2026 09:15 UTC",
                                                 "es": "15 ene 2026 09:15 UTC"}[language]


@pytest.mark.django_db
@time_machine.travel(datetime(2026, 11, 20, 14, 0, tzinfo=UTC), tick=False)
def test_a_consent_typed_at_10_15_in_toulouse_reads_10_15_site_time_to_the_monitor(client, demo_users, django_user_model):
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    assert site.time_zone == "Europe/Paris"
    participant = services.participant_screen(site=site, user=system_user())
    document = ConsentDocument.objects.filter(trial=site.trial, is_active=True).first()
    signed = datetime(2026, 11, 20, 10, 15, tzinfo=ZoneInfo("Europe/Paris"))  # 09:15 UTC
    coordinator = django_user_model.objects.get(username="coordinator.toulouse")
    services.participant_consent(participant=participant, document=document, consented_at=signed, user=coordinator)

    client.force_login(django_user_model.objects.get(username="monitor.du"))
    html = client.get(reverse("admin:participants_consent_changelist")).content.decode()
    assert "20 Nov 2026 10:15 CET (site, Europe/Paris)" in html
    assert "9:15 a.m." not in html

    client.force_login(coordinator)
    html = client.get(reverse("participant_consent", args=[participant.pk])).content.decode()
    assert "20 Nov 2026 10:15 CET (site, Europe/Paris)" in html


# Dates in the reader's language, unambiguous: day, abbreviated month name, year (the DD-MMM-YYYY of
# clinical sites). The expected abbreviations are CLDR's (fr: "déc.", "juil.", "juin"; es: "dic",
# "ene", "jul"), the forms the brief asks for ("6 déc. 2026" / "6 dic 2026" / "6 Dec 2026").
# (Django's French catalogue writes January and February "jan." and "fév." where CLDR has "janv."
# and "févr.": unambiguous still, and not tested against CLDR here.)
@pytest.mark.parametrize(("language", "day", "expected"), [
    ("en", date(2026, 12, 6), "6 Dec 2026"),
    ("fr", date(2026, 12, 6), "6 déc. 2026"),
    ("es", date(2026, 12, 6), "6 dic 2026"),
    ("fr", date(2026, 6, 1), "1 juin 2026"),  # June and July stay apart in French
    ("fr", date(2026, 7, 1), "1 juil. 2026"),
    ("es", date(2026, 1, 3), "3 ene 2026"),
    ("en", date(2026, 3, 10), "10 Mar 2026"),  # never 03/10 (March 10 in en, 3 October in fr/es)
])
def test_a_date_is_shown_in_the_readers_language_with_the_months_name(language, day, expected):
    with translation.override(language):
        assert render('{{ day|date:"DATE_FORMAT" }}', day=day) == expected
        assert render("{{ day }}", day=day) == expected  # a date shown without a filter too


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "15 Dec 2026 10:15 CET (site, Europe/Paris)"),
    ("fr", "15 déc. 2026 10:15 CET (centre, Europe/Paris)"),
    ("es", "15 dic 2026 10:15 CET (centro, Europe/Paris)"),
])
def test_a_site_time_in_french_and_spanish_keeps_its_zone(language, expected):
    moment = datetime(2026, 12, 15, 9, 15, tzinfo=UTC)
    with translation.override(language), timezone.override(UTC):
        assert expected in render("{{ at|site_time:'Europe/Paris' }}", at=moment)
        assert 'datetime="2026-12-15T09:15:00Z"' in render("{{ at|site_time:'Europe/Paris' }}", at=moment)


@pytest.mark.django_db
@time_machine.travel(datetime(2026, 11, 20, 14, 0, tzinfo=UTC), tick=False)
def test_a_french_coordinator_reads_the_consent_date_in_french_and_the_spanish_monitor_in_spanish(client, demo_users, django_user_model):
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    participant = services.participant_screen(site=site, user=system_user())
    document = ConsentDocument.objects.filter(trial=site.trial, is_active=True).first()
    coordinator = django_user_model.objects.get(username="coordinator.toulouse")
    services.participant_consent(participant=participant, document=document,
                                 consented_at=datetime(2026, 11, 20, 10, 15, tzinfo=ZoneInfo("Europe/Paris")), user=coordinator)
    client.force_login(coordinator)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "fr"
    html = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert "20 nov. 2026" in html  # the consent date in the summary
    assert "2026-11-20" not in html.replace('datetime="2026-11-20', "")  # nothing ISO but machine-readable attributes
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    html = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert "20 nov 2026" in html
