"""Monitors review CRF entries in the admin (scoped, read-only, item-by-item audit trail);
data managers migrate entries to a newer CRF version."""

import shutil

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.urls import reverse

from edc.audit import system_user
from tests.conftest import SEEDS
from tests.visits.conftest import visit_with
from tests.visits.test_crf_entry import as_querydict, vitals_post
from trials.protocol.loader import protocol_load
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save

pytestmark = pytest.mark.django_db


def user(name):  # noqa: ANN001, ANN201
    return get_user_model().objects.get(username=name)


@pytest.fixture
def entry(participant, coordinator):
    visit = visit_with(participant, "VITALS")
    crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post()), expected_revision=0, complete=True)
    crf_entry_save(
        user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post(**{"crf-heart_rate": "72", "revision": "1"})),
        expected_revision=1, complete=True, reason="transcription error",
    )
    return CrfEntry.objects.get(visit=visit, crf_code="VITALS")


def test_monitor_reads_the_item_by_item_audit_trail(entry, client):
    client.force_login(user("monitor.du"))
    page = client.get(reverse("admin:visits_crfentry_change", args=[entry.pk])).content.decode()
    assert "transcription error" in page and "coordinator.toulouse" in page
    assert "<td>Heart rate</td><td>70</td><td>72</td>" in page
    assert 'name="_save"' not in page  # read-only: monitors raise queries, they do not edit answers


def test_entries_of_other_sites_are_invisible(entry, client):
    client.force_login(user("coordinator.mexico"))  # not staff: no admin at all
    assert client.get(reverse("admin:visits_crfentry_changelist")).status_code == 302
    from trials.protocol.models import Site, Trial
    from trials.protocol.services import study_role_grant

    lille_monitor = get_user_model().objects.create_user("monitor.lille", password="x-long-password-1")
    study_role_grant(user=lille_monitor, trial=Trial.objects.get(code="ASC-DU"), site=Site.objects.get(trial__code="ASC-DU", code="LIL"),
                     role="monitor", granted_by=system_user(), reason="t")
    client.force_login(lille_monitor)
    assert client.get(reverse("admin:visits_crfentry_changelist")).content.decode().count(entry.participant.subject_number) == 0
    assert client.get(reverse("admin:visits_crfentry_change", args=[entry.pk])).status_code == 404  # another site's: not found
    assert client.get(reverse("admin:visits_crfentry_history", args=[entry.pk])).status_code == 404


def test_data_manager_migrates_an_entry_to_the_newest_version(entry, client, tmp_path):
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    path = folder / "crfs" / "vitals.yaml"
    data = yaml.safe_load(path.read_text())
    data["fields"] = [f for f in data["fields"] if f["name"] != "temperature_c"]
    heart = next(f for f in data["fields"] if f["name"] == "heart_rate")
    heart["help"] = "Counted over 60 seconds."
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    protocol_load([folder], user=system_user())

    client.force_login(user("datamanager"))
    url = reverse("admin:visits_crfentry_changelist")
    form = {"action": "migrate_to_newest_version", "_selected_action": [entry.pk]}
    assert "Reason for change" in client.post(url, form).content.decode()  # asks first
    entry.refresh_from_db()
    assert entry.crf.version == 1
    client.post(url, {**form, "confirm": "1", "reason": "Protocol amendment 2"})
    entry.refresh_from_db()
    assert entry.crf.version == 2 and entry.answers["heart_rate"] == 72 and entry.status == "in_progress"
    assert entry.history.first().history_change_reason.startswith("Protocol amendment 2 – migrated from v1 to v2")


def test_monitor_cannot_migrate(entry, client):
    client.force_login(user("monitor.du"))
    client.post(reverse("admin:visits_crfentry_changelist"), {"action": "migrate_to_newest_version", "_selected_action": [entry.pk], "confirm": "1", "reason": "x"})
    entry.refresh_from_db()
    assert entry.revision == 2 and entry.crf.version == 1
