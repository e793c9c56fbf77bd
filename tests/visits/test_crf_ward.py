"""The CRF page on the ward: matrix headings that name every radio, a VAS with no preset value, and
the page as a POST after the session expired (issue 13, "entry on the ward")."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user
from tests.visits.conftest import visit_with
from trials.participants.demo import participant_register
from trials.protocol.models import Site

pytestmark = pytest.mark.django_db


@pytest.fixture
def ra_participant(demo_users):
    """A consented EASC-RA participant at La Princesa, at screening (DAS28 and HAQ-DI are due)."""
    today = timezone.localdate()
    return participant_register(site=Site.objects.get(trial__code="EASC-RA", code="MAD-LP"), consent_date=today - timedelta(days=3), anchor_date=None, user=system_user())


@pytest.fixture
def madrid(ra_participant):
    return get_user_model().objects.get(username="coordinator.madrid")


def page_of(client, user, visit, crf_code: str) -> str:  # noqa: ANN001
    client.force_login(user)
    response = client.get(reverse("crf_entry", args=[visit.pk, crf_code]))
    assert response.status_code == 200
    return response.content.decode()


def column_headings(page: str, section: str) -> list[str]:
    """The <th scope="col"> texts of the matrix that follows the legend `section`."""
    table = page.split(f">{section}</legend>", 1)[1].split("</thead>", 1)[0]
    return re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', table)


@pytest.mark.parametrize(("crf_code", "section"), [("DAS28", "Tender joints"), ("DAS28", "Swollen joints"),
                                                    ("HAQDI", "Aids or devices"), ("HAQDI", "Help from another person")])
def test_a_yes_no_matrix_has_a_heading_over_each_radio_column(client, madrid, ra_participant, crf_code, section):
    # WCAG 1.3.1 (info and relationships): a data table's column headers are <th scope="col">.
    page = page_of(client, madrid, visit_with(ra_participant, crf_code), crf_code)
    assert column_headings(page, section) == ["Item", "Yes", "No"]


def test_a_scale_matrix_keeps_its_choice_headings(client, madrid, ra_participant):
    page = page_of(client, madrid, visit_with(ra_participant, "HAQDI"), "HAQDI")
    assert column_headings(page, "Eating") == ["Item", "Without any difficulty", "With some difficulty", "With much difficulty", "Unable to do"]


def test_each_matrix_radio_is_named_by_its_section_row_and_column(client, madrid, ra_participant):
    # The accessible name of a radio in a table cell comes from aria-labelledby (WAI-ARIA accname 1.2,
    # step 2B): the section legend, the row label and the column heading, in that order.
    page = page_of(client, madrid, visit_with(ra_participant, "DAS28"), "DAS28")
    radio = re.search(r'<input type="radio" name="crf-swollen_knee_l" value="true"[^>]*>', page).group(0)
    ids = re.search(r'aria-labelledby="([^"]*)"', radio).group(1).split()
    texts = [re.search(rf'id="{i}"[^>]*>([^<]*)<', page).group(1) for i in ids]
    assert texts == ["Swollen joints", "Knee, left", "Yes"]
