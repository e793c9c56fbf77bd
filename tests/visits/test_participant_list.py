"""The participant list (issue 22): a page of 50 at a time, searched and filtered by the server, in
the same number of queries whatever the number of participants at the site."""

import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from edc.audit import audited_save, system_user
from trials.demo.synthetic import SynthParams, synth_trial_generate
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import Role
from trials.protocol.services import study_role_grant

pytestmark = pytest.mark.django_db


def site_with(participants: int, code: str):  # noqa: ANN201
    """A one-site synthetic trial of `participants` and a coordinator of its site, logged in by the caller."""
    trial = synth_trial_generate(SynthParams(code=code, participants=participants, visits=1, crfs=1, items=2, sites=1, aes_per_participant=0)).trial
    site = trial.sites.get()
    user = get_user_model().objects.create_user(f"c-{code.lower()}", password="x")
    study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, site=site, granted_by=system_user(), reason="test")
    return site, user


def rows(page: str) -> list[str]:
    """The screening numbers of the page's rows, in order."""
    return re.findall(r'<tr><td class="text-nowrap"><a href="/participants/\d+/">([^<]+)</a>', page)


def list_queries(client, site, user) -> int:  # noqa: ANN001
    client.force_login(user)
    url = reverse("participant_list", args=[site.trial.code, site.code])
    client.get(url)  # the per-process caches warm, as on a running server
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    # The rows come without their trial and site (and the trial's JSON settings) joined in.
    rows_query = [q["sql"] for q in queries.captured_queries if 'FROM "participants_participant"' in q["sql"] and "screening_number" in q["sql"]]
    assert rows_query and all('"protocol_trial"."randomization"' not in sql for sql in rows_query)
    return len(queries)


def test_the_list_makes_as_many_queries_for_200_participants_as_for_20(client):
    small = list_queries(client, *site_with(20, "LIST-S"))
    large = list_queries(client, *site_with(200, "LIST-L"))
    assert small == large


def test_pages_of_50_in_screening_number_order_with_counts_and_links(client):
    site, user = site_with(120, "LIST-P")
    client.force_login(user)
    url = reverse("participant_list", args=[site.trial.code, site.code])
    numbers = list(Participant.objects.filter(site=site).order_by("screening_number").values_list("screening_number", flat=True))
    assert len(numbers) == 120

    first = client.get(url).content.decode()
    assert rows(first) == numbers[:50]
    assert "1–50 of 120 participants" in first
    assert 'href="?page=2"' in first and 'href="?page=3"' in first and 'href="?page=4"' not in first

    last = client.get(url, {"page": 3}).content.decode()
    assert rows(last) == numbers[100:]
    assert "101–120 of 120 participants" in last and 'rel="next"' not in last
    # A page past the end shows the last page; a page that is not a number, the first.
    assert rows(client.get(url, {"page": 99}).content.decode()) == numbers[100:]
    assert rows(client.get(url, {"page": "x"}).content.decode()) == numbers[:50]


def test_search_and_status_are_applied_by_the_server_and_kept_in_the_page_links(client):
    site, user = site_with(120, "LIST-Q")
    client.force_login(user)
    url = reverse("participant_list", args=[site.trial.code, site.code])
    one = Participant.objects.filter(site=site).order_by("screening_number")[7]
    page = client.get(url, {"q": one.screening_number.lower()}).content.decode()
    assert rows(page) == [one.screening_number]
    # The subject number finds the participant too.
    assert rows(client.get(url, {"q": one.subject_number}).content.decode()) == [one.screening_number]

    one.status = ParticipantStatus.WITHDRAWN
    audited_save(one, user=system_user(), reason="test")
    withdrawn = client.get(url, {"status": ParticipantStatus.WITHDRAWN}).content.decode()
    assert rows(withdrawn) == [one.screening_number] and "Withdrawn" in withdrawn

    # A search matching more than a page: the page links keep it.
    prefix = one.screening_number[:3]
    matching = Participant.objects.filter(site=site, screening_number__icontains=prefix).count()
    assert matching > 50
    page = client.get(url, {"q": prefix}).content.decode()
    assert f'href="?q={prefix}&amp;page=2"' in page
    assert "No participants match." in client.get(url, {"q": "no-such-number"}).content.decode()


def test_another_sites_participants_are_not_listed_or_counted(client):
    site, user = site_with(30, "LIST-A")
    other, _user = site_with(30, "LIST-B")
    client.force_login(user)
    assert client.get(reverse("participant_list", args=[other.trial.code, other.code])).status_code == 404
    page = client.get(reverse("participant_list", args=[site.trial.code, site.code])).content.decode()
    assert "1–30 of 30 participants" in page and len(rows(page)) == 30


def test_a_rows_values_are_escaped_and_a_missing_subject_number_or_consent_shows_a_dash(client):
    """The rows are written in Python (trials.visits.participant_rows): the expected HTML is the
    one the template wrote, typed out here."""
    site, user = site_with(3, "LIST-E")
    one = Participant.objects.filter(site=site).order_by("screening_number").first()
    one.screening_number, one.subject_number, one.consent_date = '<script>x</script>&"1', "", None
    one.status = ParticipantStatus.SCREENING
    audited_save(one, user=system_user(), reason="test")
    client.force_login(user)
    page = client.get(reverse("participant_list", args=[site.trial.code, site.code])).content.decode()
    assert (
        f'<tr><td class="text-nowrap"><a href="/participants/{one.pk}/">&lt;script&gt;x&lt;/script&gt;&amp;&quot;1</a></td>'
        '<td class="text-nowrap">—</td><td>Screening</td><td class="text-nowrap">—</td></tr>'
    ) in page
    assert "<script>x" not in page
    # In French, the status label is the catalogue's (edc/locale/fr: "Screening" -> "Sélection").
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "fr"
    assert "<td>Sélection</td>" in client.get(reverse("participant_list", args=[site.trial.code, site.code])).content.decode()
