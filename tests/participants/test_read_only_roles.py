"""Read-only roles are not shown action forms they cannot submit (issue 16): the sponsor, the
monitor and the DSMB get 403 on the GET of every participant action page, as on its POST; the
site's coordinator gets the form. On main the GET answered 200 with the form."""

import pytest
from django.urls import reverse

from tests.participants.conftest import TLS, days_ago, site, user
from edc.audit import system_user
from trials.demo.participants import participant_register

pytestmark = pytest.mark.django_db

ACTIONS = ["participant_enrol", "participant_treatment", "participant_status", "participant_anchor", "participant_screen_fail", "participant_unblind", "participant_allocate"]


def test_read_only_roles_get_403_on_every_action_form(demo, client):  # noqa: ARG001
    participant = participant_register(site=site(TLS), user=system_user(), consent_date=days_ago(20), anchor_date=days_ago(10))
    for username in ("sponsor.toulouse", "monitor.du", "dsmb.statistician"):
        client.force_login(user(username))
        for name in ACTIONS:
            url = reverse(name, args=[participant.pk])
            assert client.get(url).status_code == 403, (username, name)
            assert client.post(url, {}).status_code == 403, (username, name)
    client.force_login(user("coordinator.toulouse"))
    for name in ("participant_status", "participant_anchor", "participant_allocate"):
        assert client.get(reverse(name, args=[participant.pk])).status_code == 200, name
    client.force_login(user("investigator.toulouse"))
    assert client.get(reverse("participant_unblind", args=[participant.pk])).status_code == 200
    client.force_login(user("coordinator.toulouse"))
    assert client.get(reverse("participant_unblind", args=[participant.pk])).status_code == 403


def test_read_only_roles_get_403_on_the_new_ae_form_and_the_consent_form(demo, client):  # noqa: ARG001
    """The AE form and the consent form (the screening log's entry form) answered 200 with a form
    the sponsor, monitor and DSMB could not submit (issue 16)."""
    participant = participant_register(site=site(TLS), user=system_user(), consent_date=days_ago(20), anchor_date=days_ago(10))
    forms = [reverse("ae_new", args=[participant.pk]), reverse("participant_consent", args=[participant.pk])]
    for username in ("sponsor.toulouse", "monitor.du", "dsmb.statistician"):
        client.force_login(user(username))
        for url in forms:
            assert client.get(url).status_code == 403, (username, url)
            assert client.post(url, {}).status_code == 403, (username, url)
    client.force_login(user("coordinator.toulouse"))
    for url in forms:
        assert client.get(url).status_code == 200, url
