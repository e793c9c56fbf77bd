"""The CRF page of a saved entry reads its checks (consent, lock, signature, SDV mark, ePRO source,
queries) with the entry, in one query (issue 22, docs/architecture.md "Light requests"): the page
must still show each one as before, and the strongest lock when several cover the entry."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from edc.audit import audited_save, system_user
from tests.monitoring.test_locks import REASON, lock, registered, save_vitals, visit_of
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.protocol.models import ConsentDocument
from trials.records.models import LockKind, LockLevel

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo")]


def page(client, visit) -> str:  # noqa: ANN001
    client.force_login(user("coordinator.toulouse"))
    response = client.get(reverse("crf_entry", args=[visit.pk, "VITALS"]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_lock_is_shown_before_a_freeze_on_a_saved_entry(client):  # noqa: ANN001
    participant = registered()
    visit = visit_of(participant, "LIPO")
    entry = save_vitals(visit, user("coordinator.toulouse"))
    lock(LockLevel.TRIAL, participant.trial, kind=LockKind.FREEZE, reason="Interim freeze")
    lock(LockLevel.ENTRY, entry, reason=REASON)
    shown = page(client, visit)
    # lock_covering's rule (locks before freezes) names the entry lock, though the freeze is broader.
    assert "This CRF entry is locked by" in shown and REASON in shown
    assert "Interim freeze" not in shown
    assert "<fieldset disabled>" in shown and 'value="complete"' not in shown


def test_a_freeze_alone_makes_the_saved_entry_read_only_with_its_reason(client):  # noqa: ANN001
    participant = registered()
    visit = visit_of(participant, "LIPO")
    save_vitals(visit, user("coordinator.toulouse"))
    lock(LockLevel.PARTICIPANT, participant, kind=LockKind.FREEZE, reason="Source documents requested")
    shown = page(client, visit)
    assert "This participant is frozen by" in shown and "Source documents requested" in shown
    assert 'value="complete"' not in shown


def test_a_newer_consent_version_blocks_a_saved_entry(client):  # noqa: ANN001
    participant = registered()
    visit = visit_of(participant, "LIPO")
    save_vitals(visit, user("coordinator.toulouse"))
    current = participant.consent_document
    audited_save(
        ConsentDocument(trial=participant.trial, version="9.9", title="Amended", approved_on=current.approved_on + timedelta(days=1),
                        requires_reconsent=True, is_active=True),
        user=system_user(), reason="test: a new version to re-consent to",
    )
    shown = page(client, visit)
    assert 'data-testid="consent-block"' in shown and "re-consent to version 9.9" in shown
    assert 'value="complete"' not in shown


def test_a_saved_entry_without_lock_signature_mark_response_or_query_reads_none_of_them(client):  # noqa: ANN001
    participant = registered()
    visit = visit_of(participant, "LIPO")
    save_vitals(visit, user("coordinator.toulouse"))
    page(client, visit)  # the per-process caches warm, as in a running server
    with CaptureQueriesContext(connection) as queries:
        shown = page(client, visit)
    statements = [q["sql"] for q in queries.captured_queries]
    for table in ("monitoring_lock", "monitoring_signature", "monitoring_sdvmark", "epro_proresponse", "monitoring_query", "protocol_consentdocument"):
        # No query of its own (a subquery of the entry's query only).
        assert not [sql for sql in statements if sql.startswith(f'SELECT "{table}".')], table
    assert 'value="complete"' in shown and 'data-testid="signed-notice"' not in shown


def test_the_sdv_mark_is_shown_and_a_change_resets_it(client):  # noqa: ANN001
    from trials.monitoring.sdv.services import sdv_verify
    from trials.records.models import SdvMark, SdvState

    participant = registered()
    visit = visit_of(participant, "LIPO")
    entry = save_vitals(visit, user("coordinator.toulouse"))
    sdv_verify(entry=entry, user=user("monitor.du"))
    assert 'data-testid="sdv-status"' in page(client, visit) and "Source data verified on" in page(client, visit)
    save_vitals(visit, user("coordinator.toulouse"), revision=1, reason="Transcription error", heart_rate="72")
    mark = SdvMark.objects.get(entry=entry)
    assert (mark.state, mark.reset_by) == (SdvState.RESET, user("coordinator.toulouse"))
    assert "SDV reset by the change on" in page(client, visit)
