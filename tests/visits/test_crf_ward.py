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
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

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


# --- Drafts kept by the browser until the save succeeds --------------------------------------------


def test_a_crf_page_names_its_draft_by_user_and_page(client, madrid, ra_participant):
    visit = visit_with(ra_participant, "PAIN_VAS")
    page = page_of(client, madrid, visit, "PAIN_VAS")
    path = reverse("crf_entry", args=[visit.pk, "PAIN_VAS"])
    assert f'data-edc-draft="edc-draft:{madrid.pk}:{path}"' in page and "data-edc-draft-offer" in page


def test_a_save_after_the_session_expired_goes_to_the_login_page_and_back_to_the_crf(client, madrid, ra_participant):
    visit = visit_with(ra_participant, "PAIN_VAS")
    path = reverse("crf_entry", args=[visit.pk, "PAIN_VAS"])
    response = client.post(path, {"crf-pain_vas": "37", "revision": "0", "action": "save"})  # no session
    assert response.status_code == 302 and response["Location"] == f"{reverse('login')}?next={path}"


def test_a_restored_draft_is_shown_as_typed_with_a_notice_and_saves_nothing(client, madrid, ra_participant):
    visit = visit_with(ra_participant, "PAIN_VAS")
    client.force_login(madrid)
    path = reverse("crf_entry", args=[visit.pk, "PAIN_VAS"])
    response = client.post(path, {"crf-pain_vas": "37", "revision": "0", "action": "restore_draft"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Your unsaved answers were restored — review and save." in page and "data-edc-draft-discard" in page
    assert re.search(r'<input type="number" name="crf-pain_vas" value="37"', page)
    assert "data-edc-draft-offer" not in page  # the restored page never restores again
    assert not CrfEntry.objects.filter(visit=visit, crf_code="PAIN_VAS").exists()


def test_a_restored_draft_keeps_the_revision_it_was_typed_on(client, madrid, ra_participant):
    visit = visit_with(ra_participant, "PAIN_VAS")
    client.force_login(madrid)
    path = reverse("crf_entry", args=[visit.pk, "PAIN_VAS"])
    assert client.post(path, {"crf-pain_vas": "20", "revision": "0", "action": "save"}).status_code == 302  # someone saved meanwhile
    page = client.post(path, {"crf-pain_vas": "37", "revision": "0", "action": "restore_draft"}).content.decode()
    assert '<input type="hidden" name="revision" value="0">' in page
    # Saving it is then a conflict (shown, nothing overwritten), not a silent overwrite of revision 1.
    response = client.post(path, {"crf-pain_vas": "37", "revision": "0", "action": "save"})
    assert response.status_code == 409
    assert CrfEntry.objects.get(visit=visit, crf_code="PAIN_VAS").answers["pain_vas"] == 20


def test_a_successful_save_tells_the_browser_to_drop_the_draft_of_the_page(client, madrid, ra_participant):
    visit = visit_with(ra_participant, "PAIN_VAS")
    client.force_login(madrid)
    path = reverse("crf_entry", args=[visit.pk, "PAIN_VAS"])
    response = client.post(path, {"crf-pain_vas": "37", "revision": "0", "action": "complete_next"})
    assert response.status_code == 302 and response.cookies["edc_draft_saved"].value == path
    invalid = client.post(path, {"crf-pain_vas": "300", "revision": "1", "action": "save", "reason": "typo"})
    assert invalid.status_code == 200 and "edc_draft_saved" not in invalid.cookies  # not saved: the draft stays
