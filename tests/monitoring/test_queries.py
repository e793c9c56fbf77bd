"""Queries: raised by reviewers (or by an overridden soft check), answered by the site, closed only
by a reviewer when the value changed or with a justification; scoped to the user's sites."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from edc.audit import SYSTEM_USERNAME, system_user
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.monitoring.queries import services as q
from trials.records.locks import lock_apply
from trials.monitoring.models import Query, QueryMessageKind, QueryOrigin, QueryState
from trials.records.models import LockKind, LockLevel
from trials.monitoring.queries.selectors import open_query_counts, queries_for_user, query_ageing, query_target_label
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save

pytestmark = pytest.mark.django_db


def registered(site_code: str = "TLS", *, days: int = 20):  # noqa: ANN201
    """A consented, enrolled participant of ASC-DU with her screening ulcer assessment (one row)."""
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code=site_code), user=system_user(),
        consent_date=today - timedelta(days=days), anchor_date=today - timedelta(days=days - 10),
    )


def vitals_data(revision: int = 0, **overrides) -> QueryDict:
    data = {
        "crf-height_cm": "165", "crf-weight_kg": "60", "crf-systolic_bp": "120", "crf-diastolic_bp": "80",
        "crf-heart_rate": "70", "crf-temperature_c": "", "revision": str(revision), "action": "complete",
    }
    data.update({f"crf-{k}": v for k, v in overrides.items()})
    query_dict = QueryDict(mutable=True)
    query_dict.update(data)
    return query_dict


def save_vitals(participant, actor, *, revision: int = 0, reason: str = "", confirm: bool = False, **overrides) -> CrfEntry:  # noqa: ANN001
    visit = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order").first()
    result = crf_entry_save(
        user=actor, visit=visit, crf_code="VITALS", data=vitals_data(revision, **overrides), expected_revision=revision,
        complete=True, confirm_warnings=confirm, reason=reason,
    )
    assert result.saved, result.outcome.errors or result.outcome.warnings
    return result.entry


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201, ARG001
    return registered()


@pytest.fixture
def vitals(participant):  # noqa: ANN001, ANN201
    return save_vitals(participant, user("coordinator.toulouse"))


# --- Raising --------------------------------------------------------------------------------


def test_a_monitor_raises_a_query_on_an_item_with_the_value_then_and_an_audited_thread(vitals):
    monitor = user("monitor.du")
    query = q.query_raise(user=monitor, entry=vitals, item="heart_rate", text="Source says 76 bpm.")
    assert (query.state, query.origin, query.item, query.site.code) == (QueryState.OPEN, QueryOrigin.MANUAL, "heart_rate", "TLS")
    assert query.value_at_raise == {"value": 70, "missing": None}
    assert [(m.kind, m.author, m.text) for m in query.messages.all()] == [(QueryMessageKind.RAISE, monitor, "Source says 76 bpm.")]
    record = query.history.get()
    assert (record.history_user, record.history_change_reason) == (monitor, "Query raised")
    assert query.messages.get().history.get().history_user == monitor
    assert query_target_label(query) == "VITALS · Heart rate"


def test_a_data_manager_raises_too_but_a_coordinator_cannot(vitals):
    q.query_raise(user=user("datamanager"), entry=vitals, item="weight_kg", text="Check the scale.")
    with pytest.raises(PermissionDenied):
        q.query_raise(user=user("coordinator.toulouse"), entry=vitals, item="weight_kg", text="?")
    assert Query.objects.filter(entry=vitals).count() == 1


@pytest.mark.parametrize(("item", "row", "message"), [
    ("pulse", "", "has no item"),
    ("heart_rate", "abc", "not in a repeating group"),
])
def test_the_item_must_exist_in_the_entrys_crf(vitals, item, row, message):
    with pytest.raises(ValidationError, match=message):
        q.query_raise(user=user("monitor.du"), entry=vitals, item=item, row_id=row, text="?")
    assert not Query.objects.exists()


def test_a_query_on_a_row_of_a_repeating_group_names_an_existing_row(participant):
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    row_id = entry.answers["ulcers"][0]["_row_id"]
    monitor = user("monitor.du")
    with pytest.raises(ValidationError, match="say which row"):
        q.query_raise(user=monitor, entry=entry, item="finger", text="Which finger?")
    with pytest.raises(ValidationError, match="no such row"):
        q.query_raise(user=monitor, entry=entry, item="finger", row_id="0" * 32, text="Which finger?")
    query = q.query_raise(user=monitor, entry=entry, item="finger", row_id=row_id, text="The source says finger 3.")
    assert query.value_at_raise == {"value": 2, "missing": None}
    assert query_target_label(query) == "DU_ASSESS · Digital ulcers, row 1 · Finger"
    # The whole row can be queried too.
    whole = q.query_raise(user=monitor, entry=entry, item="ulcers", row_id=row_id, text="Is this ulcer new?")
    assert query_target_label(whole) == "DU_ASSESS · Digital ulcers, row 1"


def test_a_monitor_of_toulouse_cannot_raise_or_see_queries_of_grenoble(demo):  # noqa: ARG001
    grenoble = registered("GRE")
    entry = CrfEntry.objects.get(participant=grenoble, crf_code="DU_ASSESS")
    # monitor.du monitors TLS and GRE; a Toulouse-only monitor is made here.
    from django.contrib.auth import get_user_model

    from trials.protocol.services import study_role_grant

    toulouse_only = get_user_model().objects.create_user("monitor.tls", password="x")
    study_role_grant(user=toulouse_only, trial=grenoble.trial, role="monitor", site=Site.objects.get(trial=grenoble.trial, code="TLS"),
                     granted_by=system_user(), reason="test")
    with pytest.raises(PermissionDenied):
        q.query_raise(user=toulouse_only, entry=entry, text="?")
    query = q.query_raise(user=user("datamanager"), entry=entry, text="Please check the assessment date.")
    assert not queries_for_user(toulouse_only).filter(pk=query.pk).exists()
    assert queries_for_user(user("monitor.du")).filter(pk=query.pk).exists()


def test_raising_is_refused_under_a_lock_but_not_under_a_freeze(vitals, participant):
    manager = user("datamanager")
    lock_apply(level=LockLevel.PARTICIPANT, target=participant, kind=LockKind.FREEZE, user=manager, reason="interim")
    query = q.query_raise(user=user("monitor.du"), entry=vitals, item="heart_rate", text="Queries are still possible.")
    q.query_answer(query=query, user=user("coordinator.toulouse"), text="Also answers.")
    lock_apply(level=LockLevel.ENTRY, target=vitals, kind=LockKind.LOCK, user=manager, reason="final")
    with pytest.raises(ValidationError, match="locked"):
        q.query_raise(user=user("monitor.du"), entry=vitals, item="weight_kg", text="Too late.")
    assert Query.objects.filter(entry=vitals).count() == 1


# --- Answering, closing, re-opening, cancelling ---------------------------------------------


def test_a_coordinator_answers_but_can_never_close(vitals):
    query = q.query_raise(user=user("monitor.du"), entry=vitals, item="heart_rate", text="Source says 76.")
    coordinator = user("coordinator.toulouse")
    q.query_answer(query=query, user=coordinator, text="Checked: 70 is right, the 76 was before rest.")
    query.refresh_from_db()
    assert query.state == QueryState.ANSWERED
    with pytest.raises(PermissionDenied):
        q.query_close(query=query, user=coordinator, justification="I say so")
    query.refresh_from_db()
    assert query.state == QueryState.ANSWERED and query.closed_by is None
    with pytest.raises(PermissionDenied):
        q.query_answer(query=query, user=user("monitor.du"), text="A monitor does not answer")


def test_closing_needs_a_changed_value_or_a_justification(vitals):
    monitor = user("monitor.du")
    query = q.query_raise(user=monitor, entry=vitals, item="heart_rate", text="Source says 76.")
    q.query_answer(query=query, user=user("coordinator.toulouse"), text="70 is right.")
    with pytest.raises(ValidationError, match="has not changed"):
        q.query_close(query=query, user=monitor)
    query.refresh_from_db()
    assert query.state == QueryState.ANSWERED
    q.query_close(query=query, user=monitor, justification="Pre-rest value in the source; 70 confirmed.")
    query.refresh_from_db()
    assert (query.state, query.closed_by) == (QueryState.CLOSED, monitor) and query.closed_at is not None
    assert query.messages.last().kind == QueryMessageKind.CLOSE
    assert query.history.first().history_change_reason == "Query closed"


def test_a_corrected_value_lets_the_monitor_close_without_a_justification(vitals, participant):
    monitor, coordinator = user("monitor.du"), user("coordinator.toulouse")
    query = q.query_raise(user=monitor, entry=vitals, item="heart_rate", text="Source says 76.")
    save_vitals(participant, coordinator, revision=1, reason="query: transcription error", heart_rate="76")
    q.query_answer(query=query, user=coordinator, text="Corrected to 76.")
    assert q.query_value_changed(query)
    q.query_close(query=Query.objects.get(pk=query.pk), user=monitor)
    assert Query.objects.get(pk=query.pk).state == QueryState.CLOSED


def test_reopen_and_cancel_move_between_the_right_states(vitals):
    monitor = user("monitor.du")
    query = q.query_raise(user=monitor, entry=vitals, item="heart_rate", text="Source says 76.")
    with pytest.raises(ValidationError, match="answered or closed"):
        q.query_reopen(query=query, user=monitor, text="?")
    q.query_answer(query=query, user=user("coordinator.toulouse"), text="Right as entered.")
    q.query_reopen(query=query, user=monitor, text="Please attach the source page number.")
    query.refresh_from_db()
    assert query.state == QueryState.OPEN
    q.query_close(query=query, user=monitor, justification="Accepted.")
    q.query_reopen(query=query, user=monitor, text="Reopened after the audit.")
    query.refresh_from_db()
    assert (query.state, query.closed_by, query.closed_at) == (QueryState.OPEN, None, None)
    with pytest.raises(ValidationError, match="Write the message"):
        q.query_cancel(query=query, user=monitor, text="  ")
    q.query_cancel(query=query, user=monitor, text="Raised on the wrong participant.")
    query.refresh_from_db()
    assert query.state == QueryState.CANCELLED
    for action in (lambda: q.query_reopen(query=query, user=monitor, text="x"),
                   lambda: q.query_answer(query=query, user=user("coordinator.toulouse"), text="x"),
                   lambda: q.query_close(query=query, user=monitor, justification="x"),
                   lambda: q.query_cancel(query=query, user=monitor, text="x")):
        with pytest.raises(ValidationError):
            action()
    assert [m.kind for m in query.messages.all()] == ["raise", "answer", "reopen", "close", "reopen", "cancel"]
    with pytest.raises(PermissionDenied):
        q.query_cancel(query=q.query_raise(user=monitor, entry=vitals, text="x"), user=user("coordinator.toulouse"), text="no")


# --- Automatic queries from overridden soft checks ------------------------------------------


def test_an_overridden_soft_check_raises_one_query_once(participant):
    coordinator = user("coordinator.toulouse")
    entry = save_vitals(participant, coordinator, confirm=True, heart_rate="130")
    query = Query.objects.get(entry=entry)
    assert (query.origin, query.item, query.raised_by.username, query.state) == (QueryOrigin.EDIT_CHECK, "heart_rate", SYSTEM_USERNAME, "open")
    assert "Heart rate below 45 or above 120" in query.text
    assert "coordinator.toulouse confirmed this value" in query.messages.get().text
    # Saved again with the same override: no second query.
    save_vitals(participant, coordinator, revision=1, reason="weight corrected", confirm=True, heart_rate="130", weight_kg="61")
    assert Query.objects.filter(entry=entry).count() == 1
    # A newly overridden check raises its own query, and only that one.
    save_vitals(participant, coordinator, revision=2, reason="BP re-measured", confirm=True, heart_rate="130", systolic_bp="185")
    assert sorted(Query.objects.filter(entry=entry).values_list("item", flat=True)) == ["heart_rate", "systolic_bp"]


def test_a_check_overridden_again_after_its_query_was_closed_and_the_value_fixed_raises_again(participant):
    coordinator, monitor = user("coordinator.toulouse"), user("monitor.du")
    entry = save_vitals(participant, coordinator, confirm=True, heart_rate="130")
    first = Query.objects.get(entry=entry)
    save_vitals(participant, coordinator, revision=1, reason="re-measured", heart_rate="90")
    q.query_close(query=first, user=monitor)  # the value changed: no justification needed
    save_vitals(participant, coordinator, revision=2, reason="source says 130", confirm=True, heart_rate="130")
    assert Query.objects.filter(entry=entry, state=QueryState.OPEN).count() == 1
    assert Query.objects.filter(entry=entry).count() == 2


# --- Selectors ------------------------------------------------------------------------------


def test_open_query_counts_and_ageing_by_site(demo):  # noqa: ARG001
    toulouse, grenoble = registered("TLS"), registered("GRE")
    monitor = user("monitor.du")
    now = timezone.now()
    for days, participant in ((2, toulouse), (12, toulouse), (40, toulouse), (45, grenoble), (3, grenoble)):
        with time_machine.travel(now - timedelta(days=days), tick=False):
            entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
            q.query_raise(user=monitor, entry=entry, text=f"{days} days old")
    answered = Query.objects.get(text="3 days old")
    q.query_answer(query=answered, user=system_user(), text="done")
    closed = Query.objects.get(text="12 days old")
    q.query_close(query=closed, user=monitor, justification="fine")
    assert open_query_counts(monitor, by="participant") == {toulouse.pk: 2, grenoble.pk: 2}
    rows = {row["site"].code: row for row in query_ageing(monitor, toulouse.trial)}
    assert set(rows) == {"TLS", "GRE"}  # monitor.du's sites only
    tls, gre = rows["TLS"], rows["GRE"]
    assert (tls["total"], tls["age_0_7"], tls["age_8_30"], tls["age_over_30"], tls["closed"]) == (2, 1, 0, 1, 1)
    assert (gre["total"], gre["age_0_7"], gre["age_over_30"], gre["waiting_site"], gre["waiting_review"]) == (2, 1, 1, 1, 1)
    assert tls["median_age_days"] == 21 and gre["median_age_days"] == 24


# --- The site's screens ---------------------------------------------------------------------


def test_the_coordinator_sees_badges_and_the_thread_on_the_item_and_answers_there(client, vitals, participant):
    query = q.query_raise(user=user("monitor.du"), entry=vitals, item="heart_rate", text="Source says 76 bpm.")
    client.force_login(user("coordinator.toulouse"))
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert 'data-testid="participant-queries"' in dashboard and "1 open query" in dashboard
    assert "1 query open" in dashboard  # the chip on the VITALS cell of the grid
    page = client.get(reverse("crf_entry", args=[vitals.visit_id, "VITALS"])).content.decode()
    assert 'data-testid="query-badge-heart_rate"' in page and "Source says 76 bpm." in page
    assert f'form="qa-{query.pk}"' in page and f'id="qa-{query.pk}"' in page
    response = client.post(reverse("query_answer", args=[query.pk]), {"text": "70 after 5 minutes of rest."}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "waiting for the monitor" in response.content.decode()
    assert Query.objects.get(pk=query.pk).state == QueryState.ANSWERED
    listing = client.get(reverse("site_queries", args=["ASC-DU", "TLS"])).content.decode()
    assert "70 after 5 minutes of rest." in listing and "VITALS · Heart rate" in listing


def test_an_empty_answer_is_refused_on_the_thread(client, vitals):
    query = q.query_raise(user=user("monitor.du"), entry=vitals, item="heart_rate", text="?")
    client.force_login(user("coordinator.toulouse"))
    response = client.post(reverse("query_answer", args=[query.pk]), {"text": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "is-invalid" in response.content.decode()
    assert Query.objects.get(pk=query.pk).state == QueryState.OPEN


def test_a_row_query_shows_in_its_row_on_the_crf_page(client, participant):
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    row_id = entry.answers["ulcers"][0]["_row_id"]
    q.query_raise(user=user("monitor.du"), entry=entry, item="finger", row_id=row_id, text="Finger 3 in the source.")
    client.force_login(user("coordinator.toulouse"))
    page = client.get(reverse("crf_entry", args=[entry.visit_id, "DU_ASSESS"])).content.decode()
    row_card = page[page.index('data-testid="row"'):]
    assert "Finger 3 in the source." in row_card and 'data-testid="query-badge-finger"' in row_card


def test_other_sites_queries_are_404_for_the_site_and_in_the_admin(client, demo):  # noqa: ARG001
    grenoble = registered("GRE")
    entry = CrfEntry.objects.get(participant=grenoble, crf_code="DU_ASSESS")
    query = q.query_raise(user=user("datamanager"), entry=entry, text="Check the date.")
    client.force_login(user("coordinator.toulouse"))
    assert client.get(reverse("site_queries", args=["ASC-DU", "GRE"])).status_code == 404
    assert client.post(reverse("query_answer", args=[query.pk]), {"text": "x"}).status_code == 404
    from django.contrib.auth import get_user_model

    from trials.protocol.services import study_role_grant

    toulouse_only = get_user_model().objects.create_user("monitor.tls2", password="x")
    study_role_grant(user=toulouse_only, trial=grenoble.trial, role="monitor", site=Site.objects.get(trial=grenoble.trial, code="TLS"),
                     granted_by=system_user(), reason="test")
    client.force_login(toulouse_only)
    assert client.get(reverse("admin:monitoring_query_change", args=[query.pk])).status_code == 404
    assert client.get(reverse("admin:monitoring_query_raise"), {"entry": entry.pk}).status_code == 404
    assert client.post(reverse("admin:monitoring_query_act", args=[query.pk]), {"action": "close", "text": "x"}).status_code == 404
    listing = client.get(reverse("admin:monitoring_query_changelist")).content.decode()
    assert "Check the date." not in listing


# --- The monitor's admin ---------------------------------------------------------------------


def test_the_monitor_raises_closes_and_reads_the_ageing_report_in_the_admin(client, vitals):
    client.force_login(user("monitor.du"))
    url = reverse("admin:monitoring_query_raise")
    page = client.get(url, {"entry": vitals.pk, "item": "heart_rate"})
    assert page.status_code == 200 and "Heart rate" in page.content.decode() and "70" in page.content.decode()
    bad = client.get(url, {"entry": vitals.pk, "item": "nope"})
    assert "has no item" in bad.content.decode()
    response = client.post(url, {"entry": vitals.pk, "item": "heart_rate", "text": "Source says 76."})
    assert response.status_code == 302
    query = Query.objects.get(entry=vitals)
    change = client.get(reverse("admin:monitoring_query_change", args=[query.pk])).content.decode()
    assert "Source says 76." in change and "query-close" in change and "(unchanged)" in change
    act = reverse("admin:monitoring_query_act", args=[query.pk])
    client.post(act, {"action": "close", "text": ""})
    assert Query.objects.get(pk=query.pk).state == QueryState.OPEN  # refused: unchanged, no justification
    client.post(act, {"action": "close", "text": "Confirmed against the source."})
    assert Query.objects.get(pk=query.pk).state == QueryState.CLOSED
    ageing = client.get(reverse("admin:monitoring_query_ageing"), {"trial": vitals.participant.trial_id})
    assert ageing.status_code == 200 and 'data-site="TLS"' in ageing.content.decode()
    changelist = client.get(reverse("admin:monitoring_query_changelist"), {"age": "0-7", "status": "unresolved"})
    assert changelist.status_code == 200


def test_bulk_close_refuses_unjustified_queries_whose_value_did_not_change(client, vitals):
    monitor = user("monitor.du")
    first = q.query_raise(user=monitor, entry=vitals, item="heart_rate", text="a")
    second = q.query_raise(user=monitor, entry=vitals, item="weight_kg", text="b")
    client.force_login(monitor)
    url = reverse("admin:monitoring_query_changelist")
    client.post(url, {"action": "close_queries", "_selected_action": [first.pk, second.pk], "confirm": "1", "text": ""})
    assert set(Query.objects.values_list("state", flat=True)) == {"open"}
    client.post(url, {"action": "close_queries", "_selected_action": [first.pk, second.pk], "confirm": "1", "text": "Both confirmed."})
    assert set(Query.objects.values_list("state", flat=True)) == {"closed"}


def test_a_query_on_an_item_hidden_by_branching_moves_to_the_top_of_the_page(client, participant):
    from tests.participants.conftest import days_ago, demog
    from trials.visits.services import crf_entry_save_answers

    visit = participant.visits.filter(definition__visit_crfs__crf_code="DEMOG").order_by("order").first()
    answers = demog(age=50, smoking_status="former", smoking_stop_date=days_ago(400))
    entry = crf_entry_save_answers(user=system_user(), visit=visit, crf_code="DEMOG", answers=answers, complete=True, reason="entry")
    q.query_raise(user=user("monitor.du"), entry=entry, item="smoking_stop_date", text="Stop date not in the source.")
    client.force_login(user("coordinator.toulouse"))
    url = reverse("crf_entry", args=[visit.pk, "DEMOG"])
    page = client.get(url).content.decode()
    assert "Stop date not in the source." not in page[page.index("data-testid=\"entry-queries\""):page.index("class=\"edc-crf\"")]
    crf_entry_save_answers(user=system_user(), visit=visit, crf_code="DEMOG", answers={**answers, "smoking_status": "never"},
                           complete=True, reason="never smoked, per the source")
    page = client.get(url).content.decode()
    assert "Stop date not in the source." in page[page.index("data-testid=\"entry-queries\""):page.index("class=\"edc-crf\"")]


def test_the_coordinator_sees_an_ae_query_in_the_ae_log_and_answers_it_on_the_ae_page(client, participant):
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from trials.safety.models import AdverseEvent
    from trials.safety.services import ae_save

    onset = timezone.localdate() - timedelta(days=2)
    ae = ae_save(AdverseEvent(
        participant=participant, verbatim_term="Headache", onset_date=onset, grade=1, related_product="not_related",
        procedure="none", related_procedure="not_related", action_taken="none", outcome="not_recovered",
        aware_at=datetime.combine(onset, time(10), tzinfo=ZoneInfo(participant.site.time_zone)),
    ), user=user("coordinator.toulouse"))
    query = q.query_raise(user=user("monitor.du"), adverse_event=ae, text="Source says grade 2.")
    client.force_login(user("coordinator.toulouse"))
    log = client.get(reverse("participant_aes", args=[participant.pk])).content.decode()
    assert f'data-testid="ae-query-badge-{ae.number}"' in log and "1 query" in log
    page = client.get(reverse("ae_edit", args=[participant.pk, ae.number])).content.decode()
    assert 'data-testid="ae-queries"' in page and "Source says grade 2." in page
    assert f'form="qa-{query.pk}"' in page and f'id="qa-{query.pk}"' in page
    client.post(reverse("query_answer", args=[query.pk]), {"text": "Grade corrected to 2.", "next": reverse("ae_edit", args=[participant.pk, ae.number])})
    assert Query.objects.get(pk=query.pk).state == QueryState.ANSWERED
    log = client.get(reverse("participant_aes", args=[participant.pk])).content.decode()
    assert f'data-testid="ae-query-badge-{ae.number}"' in log  # answered: unresolved until the monitor closes it
