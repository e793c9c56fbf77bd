"""ePRO screens show their CRF section's title and help (HAQ-DI: "Are you able to:" above each
category's questions) in the participant's language: her site's (`language: fr` for Toulouse in the
trial file) unless she picked another. Expected texts are read from the CRF and trial files."""

import html
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import reverse

from tests.epro.test_epro import new_link

pytestmark = pytest.mark.django_db

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
HAQDI = yaml.safe_load((SEEDS / "crfs" / "haqdi.yaml").read_text())
DRESSING = next(s for s in HAQDI["sections"] if s["name"]["en"] == "Dressing and grooming")


def _toulouse_language() -> str:
    trial = yaml.safe_load((SEEDS / "001_nct04356755_du.yaml").read_text())
    return next(s for s in trial["sites"] if s["code"] == "TLS")["language"]


def _screen(client, url: str, step: int) -> str:  # noqa: ANN001
    response = client.get(f"{url}?step={step}")
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_a_personal_link_shows_the_section_title_and_help_in_the_sites_language(coordinator, w8, client):
    language = _toulouse_language()
    assert language == "fr"
    _link, token = new_link(coordinator, w8, "HAQDI")
    url = reverse("epro_link", args=[token])
    first = _screen(client, url, 0)  # the instructions screen
    assert 'data-testid="section-title">Instructions<' in first
    dressing = _screen(client, url, 1)
    assert f'data-testid="section-title">{DRESSING["name"][language]}<' in dressing
    assert f'data-testid="section-help">{DRESSING["help"][language]}<' in dressing
    assert DRESSING["name"]["en"] not in dressing and DRESSING["help"]["en"] not in dressing


def test_the_participants_own_choice_of_language_wins(coordinator, w8, client):
    _link, token = new_link(coordinator, w8, "HAQDI")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"  # she pressed "Español" on the page
    dressing = _screen(client, reverse("epro_link", args=[token]), 1)
    assert f'data-testid="section-title">{DRESSING["name"]["es"]}<' in dressing
    assert f'data-testid="section-help">{DRESSING["help"]["es"]}<' in dressing


def test_participant_mode_shows_the_section_in_the_sites_language(coordinator, w8, client):
    client.force_login(coordinator)
    assert client.post(reverse("epro_visit", args=[w8.pk]), {"action": "handover"})["Location"] == reverse("epro_tablet")
    dressing = _screen(client, reverse("epro_tablet_answer", args=["HAQDI"]), 1)
    assert f'data-testid="section-title">{DRESSING["name"]["fr"]}<' in dressing
    assert f'data-testid="section-help">{DRESSING["help"]["fr"]}<' in dressing


def test_a_used_link_says_so_in_the_participants_language(coordinator, w8, client):
    """The page of a used link speaks her language too (her site's), not the browser's."""
    from django.utils.translation import gettext, override  # noqa: PLC0415

    from tests.epro.test_epro import COCHIN, walk  # noqa: PLC0415
    _link, token = new_link(coordinator, w8, "COCHIN")
    url = reverse("epro_link", args=[token])
    walk(client, url, COCHIN)
    with override(_toulouse_language()):
        expected = gettext("This questionnaire has already been answered. Thank you.")
    gone = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    assert gone.status_code == 410
    assert expected in html.unescape(gone.content.decode())
