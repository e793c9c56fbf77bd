"""The impact preview and the apply of a changed ASC-DU file (tests/build/amended.py says what
changed; every expectation below follows from those four changes and from the participants of
conftest.py, not from the code under test)."""

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from trials.build.impact import amendment_preview
from trials.build.models import Amendment
from trials.build.services import BuildError, amendment_apply, build_preview, impact_digest
from trials.monitoring.queries.services import query_raise
from trials.protocol.models import Trial, VisitDefinition
from trials.visits.models import CrfEntry

from .amended import amended_files
from .conftest import TODAY

pytestmark = pytest.mark.django_db

DATA_APPS = ("protocol", "participants", "visits", "records", "monitoring", "safety", "build")


def row_counts() -> dict[str, int]:
    """Every table of the data apps, their history (audit) tables included."""
    return {m._meta.label: m.objects.count() for app in DATA_APPS for m in apps.get_app_config(app).get_models()}


def label(participant) -> str:  # noqa: ANN001
    return participant.subject_number or participant.screening_number


def datamanager():
    return get_user_model().objects.get(username="datamanager")


def window(start, end) -> str:  # noqa: ANN001
    return f"{start.isoformat()} – {end.isoformat()}"


def test_the_preview_shows_the_impact_of_the_changes_and_writes_nothing(du_participants):
    a, c, b = du_participants.treated_w2_done, du_participants.treated_w2_ahead, du_participants.thumb_ulcer
    monitor = get_user_model().objects.get(username="monitor.du")
    entry_a = CrfEntry.objects.get(participant=a, crf_code="DU_ASSESS")
    row_id = entry_a.answers["ulcers"][0]["_row_id"]
    query_raise(user=monitor, entry=entry_a, item="location", row_id=row_id, text="Please confirm the location.")
    before = row_counts()

    trial = Trial.objects.get(code="ASC-DU")
    code, impact = build_preview(amended_files(), user=datamanager(), trial=trial)

    assert row_counts() == before  # nothing written, audit rows included
    assert code == "ASC-DU"
    # DU_ASSESS: a second version, whose only item change is the choices of an ulcer's location.
    assert [(c_["crf"], c_["was_version"], c_["version"]) for c_ in impact["crfs"]] == [("DU_ASSESS", 1, 2)]
    assert impact["crfs"][0]["changes"] == [{"item": "ulcers.location", "change": "choices", "detail": "removed: palm"}]
    # The three screening DU_ASSESS entries stay on v1 until migrated; every item carries over
    # (same names and types) and no ulcer was on the palm.
    assert sorted((e["participant"], e["crf"], e["from_version"], e["to_version"], tuple(e["not_carried"]), tuple(e["not_a_choice"]))
                  for e in impact["entries"]) == sorted((label(p), "DU_ASSESS", 1, 2, (), ()) for p in (a, b, c))
    # Week 2's window: -3/+3 → -5/+5. Only C's Week 2 moves: A's took place, B is not treated yet.
    assert impact["visit_definitions"] == [{"visit": "W2", "change": "changed",
                                            "was": {"anchor": "first_treatment", "day_offset": 14, "before": 3, "after": 3},
                                            "now": {"anchor": "first_treatment", "day_offset": 14, "before": 5, "after": 5}}]
    w2_c = TODAY - timedelta(days=10) + timedelta(days=14)
    assert [(v["participant"], v["code"], v["was_window"], v["window"]) for v in impact["visits_moved"]] == [
        (label(c), "W2", window(w2_c - timedelta(days=3), w2_c + timedelta(days=3)), window(w2_c - timedelta(days=5), w2_c + timedelta(days=5)))
    ]
    assert impact["visits_new"] == []
    # LI01 now excludes a thumb ulcer: B (her only ulcer is on the thumb) is no longer eligible.
    assert [(r["criterion"], r["change"], r["expression"]) for r in impact["criteria"]] == [
        ("LI01", "changed", "beyond_pip == true && finger != 1")]
    assert [r["participant"] for r in impact["no_longer_eligible"]] == [label(b)]
    # The open query on A's ulcer location is on a changed item.
    assert [(q["participant"], q["crf"], q["item"]) for q in impact["queries"]] == [(label(a), "DU_ASSESS", "location")]
    assert impact["sdv"] == [] and impact["signatures"] == []
    # Consent 2.0: every participant in follow-up consented to 1.0 and consents again.
    assert impact["consent_versions"] == ["2.0"]
    assert sorted((r["participant"], r["consented_to"]) for r in impact["reconsent"]) == sorted((label(p), "1.0") for p in (a, b, c))


def test_apply_writes_the_amendment_and_replans_only_visits_not_done(du_participants):
    a, c = du_participants.treated_w2_done, du_participants.treated_w2_ahead
    trial = Trial.objects.get(code="ASC-DU")
    w2_a_before = a.visits.get(definition__code="W2")
    _code, impact = build_preview(amended_files(), user=datamanager(), trial=trial)

    amendment = amendment_apply(amended_files(), user=datamanager(), trial=trial, version="2.0", effective_date=TODAY,
                                reason="Amendment 1: W2 window, LI01 thumb, consent 2.0", previewed=impact_digest(impact))

    assert (amendment.number, amendment.version, amendment.effective_date, amendment.applied_by.username) == (1, "2.0", TODAY, "datamanager")
    assert amendment.history.get().history_change_reason == "Amendment 1: W2 window, LI01 thumb, consent 2.0"
    assert amendment.impact == impact
    w2 = VisitDefinition.objects.get(trial=trial, code="W2")
    assert (w2.window_before_days, w2.window_after_days) == (5, 5)
    planned = TODAY - timedelta(days=10) + timedelta(days=14)
    w2_c = c.visits.get(definition__code="W2")
    assert (w2_c.window_start, w2_c.window_end) == (planned - timedelta(days=5), planned + timedelta(days=5))
    last = w2_c.history.order_by("-history_id").first()
    assert last.history_user.username == "datamanager" and "Amendment v2.0" in last.history_change_reason
    w2_a = a.visits.get(definition__code="W2")
    assert (w2_a.status, w2_a.window_start, w2_a.window_end) == ("done", w2_a_before.window_start, w2_a_before.window_end)
    assert w2_a.history.count() == w2_a_before.history.count()  # the done visit was not touched


def test_apply_refuses_when_the_data_changed_since_the_preview(du_participants):
    trial = Trial.objects.get(code="ASC-DU")
    _code, impact = build_preview(amended_files(), user=datamanager(), trial=trial)
    stale = impact_digest({**impact, "visits_moved": []})
    before = row_counts()
    with pytest.raises(BuildError, match="changed since the preview"):
        amendment_apply(amended_files(), user=datamanager(), trial=trial, version="2.0", effective_date=TODAY,
                        reason="Amendment 1", previewed=stale)
    assert row_counts() == before
    assert not Amendment.objects.exists()


def test_the_preview_run_alone_writes_nothing(du_participants):
    """amendment_preview itself (the loader, the re-planning) is rolled back."""
    import tempfile
    from pathlib import Path

    before = row_counts()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, data in amended_files().items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths.append(path)
        impact = amendment_preview("ASC-DU", paths, user=datamanager())
    assert impact["visits_moved"]
    assert row_counts() == before
