"""Issue 20: every time shown says whose time it is. A consent signed at 10:15 in Toulouse reads
"10:15 CET (site, Europe/Paris)" to everyone, a monitor's server time zone (UTC) notwithstanding;
times not tied to a site say UTC. The expected strings are worked out by hand from the zone rules
(Paris: UTC+1 in winter "CET", UTC+2 in summer "CEST"; Mexico City: UTC-6 all year since 2022, "CST")."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
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
    (datetime(2026, 1, 15, 9, 15, tzinfo=UTC), "Europe/Paris", "2026-01-15 10:15 CET (site, Europe/Paris)"),
    (datetime(2026, 7, 15, 8, 15, tzinfo=UTC), "Europe/Paris", "2026-07-15 10:15 CEST (site, Europe/Paris)"),
    (datetime(2026, 1, 15, 16, 15, tzinfo=UTC), "America/Mexico_City", "2026-01-15 10:15 CST (site, America/Mexico_City)"),
    # Just after midnight UTC is still the evening before in Mexico City: the site's date is shown.
    (datetime(2026, 1, 16, 0, 30, tzinfo=UTC), "America/Mexico_City", "2026-01-15 18:30 CST (site, America/Mexico_City)"),
])
def test_site_time_is_the_sites_wall_clock_with_its_zone_named(moment, zone, expected):
    with timezone.override(UTC):  # the server's (and a monitor's) zone
        html = render("{{ at|site_time:zone }}", at=moment, zone=zone)
    assert expected in html
    assert f'datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in html  # the UTC moment, machine-readable


def test_utc_time_and_an_unknown_zone_say_utc():
    moment = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Paris")):  # whatever zone is active, UTC is written as UTC
        assert "2026-01-15 09:15 UTC" in render("{{ at|utc_time }}", at=moment)
        assert "2026-01-15 09:15 UTC" in render("{{ at|site_time:'' }}", at=moment)
        assert "2026-01-15 09:15 UTC" in render("{{ at|site_time:'Nowhere/Atlantis' }}", at=moment)
    assert render("{{ at|site_time:'Europe/Paris' }}|{{ at|utc_time }}", at=None) == "|"


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_a_datetime_shown_without_the_filters_still_says_utc(language):
    """Django's admin lists format a datetime with the locale's DATETIME_FORMAT (edc/formats)."""
    moment = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
    with translation.override(language), timezone.override(UTC):
        assert render("{{ at }}", at=moment) == "2026-01-15 09:15 UTC"


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
    assert "2026-11-20 10:15 CET (site, Europe/Paris)" in html
    assert "9:15 a.m." not in html

    client.force_login(coordinator)
    html = client.get(reverse("participant_consent", args=[participant.pk])).content.decode()
    assert "2026-11-20 10:15 CET (site, Europe/Paris)" in html
