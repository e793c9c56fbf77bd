"""The trial's settings are read once and then served from the cache across requests (issue 22),
and a change of the trial (a load of a new version, an amendment, an admin edit: any save of the
row) makes the next request read it again."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from edc.audit import audited_save, system_user
from trials.demo.synthetic import SynthParams, synth_trial_generate
from trials.protocol.models import Role, Trial
from trials.protocol.services import study_role_grant
from trials.protocol.trial_cache import trial_cached

pytestmark = pytest.mark.django_db

# A query that reads the trial's settings (its JSON columns), joined or on its own. The CRF page's
# list of the entry's data queries joins each data query's trial (none here): not the page's trial.
TRIAL_SETTINGS_READ = re.compile(r'"protocol_trial"\."(masked_roles|numbering|score_settings)"')
QUERY_LIST = re.compile(r'FROM "monitoring_query"')


@pytest.fixture
def coordinator_at_a_crf(client):
    trial = synth_trial_generate(SynthParams(code="TCACHE", participants=3, visits=1, crfs=1, items=4, sites=1, aes_per_participant=0)).trial
    site = trial.sites.get()
    user = get_user_model().objects.create_user("coord-tcache", password="x")
    study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, site=site, granted_by=system_user(), reason="test")
    participant = trial.participants.order_by("screening_number").first()
    visit = participant.visits.order_by("order").first()
    client.force_login(user)
    return trial, f"/visits/{visit.pk}/crf/TCACHE-C01/", f"/participants/{participant.pk}/"


def settings_reads(client, url: str) -> list[str]:  # noqa: ANN001
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [q["sql"] for q in queries.captured_queries if TRIAL_SETTINGS_READ.search(q["sql"]) and not QUERY_LIST.search(q["sql"])]


def test_a_second_request_reads_no_trial_settings(client, coordinator_at_a_crf):
    trial, crf_url, participant_url = coordinator_at_a_crf
    assert len(settings_reads(client, crf_url)) == 1  # the first request reads the trial once
    assert settings_reads(client, crf_url) == []
    assert settings_reads(client, participant_url) == []  # another page of the same trial: still cached


def test_a_change_of_the_trial_is_read_by_the_next_request(client, coordinator_at_a_crf):
    trial, crf_url, _participant_url = coordinator_at_a_crf
    settings_reads(client, crf_url)
    assert trial_cached(trial.pk).sponsor == trial.sponsor
    # An amendment (any audited save of the row) forgets the cached trial.
    changed = Trial.objects.get(pk=trial.pk)
    changed.sponsor = "Amended Sponsor Ltd"
    changed.masked_roles = ["participant", "investigator"]
    audited_save(changed, user=system_user(), reason="Amendment 1")
    assert len(settings_reads(client, crf_url)) == 1
    cached = trial_cached(trial.pk)
    assert cached.sponsor == "Amended Sponsor Ltd"
    assert cached.is_blinded is True  # the new masking, not the cached one
    assert settings_reads(client, crf_url) == []
