"""manage.py synth_trial: a synthetic trial is a valid trial whose rows are those the services leave behind."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from edc.audit import system_user
from trials.participants import eligibility
from trials.participants.models import Allocation, AllocationSlot, Consent, Participant, ParticipantStatus
from trials.participants.services import participant_screen
from trials.protocol.models import Role, StudyRole, Trial, VisitCrf
from trials.demo.synthetic import REASON, SynthParams, synth_trial_generate
from trials.safety.models import AdverseEvent, ReportingClock
from trials.safety.services import _validate as ae_validate
from trials.protocol.engine import schema_for, validate_answers
from trials.visits.models import CrfEntry, EntryStatus, Visit, VisitStatus
from trials.visits.schedule import participants_missing_visits, plan, schedule_generate
from trials.visits.services import crf_entry_save_answers, entry_context

pytestmark = pytest.mark.django_db

SMALL = SynthParams(code="SYN-T", participants=5, visits=3, crfs=2, items=6, sites=2, randomized=True, repeating_group=True,
                    aes_per_participant=2.0)


@pytest.fixture
def small():
    return synth_trial_generate(SMALL)


def test_counts(small):
    trial = small.trial
    assert small.created
    assert trial.participants.count() == 5
    assert Visit.objects.filter(participant__trial=trial).count() == 5 * 3
    assert CrfEntry.objects.filter(participant__trial=trial).count() == 5 * 3 * 2
    assert Consent.objects.filter(participant__trial=trial).count() == 5
    assert Allocation.objects.filter(participant__trial=trial).count() == 5
    assert trial.sites.count() == 2 and trial.arms.count() == 2 and trial.visit_definitions.count() == 3
    assert small.counts["CrfEntry"] == 30 and small.counts["Participant"] == 5
    # Six items per CRF, and the repeating group on the last CRF only.
    entry = CrfEntry.objects.filter(participant__trial=trial, crf_code="SYN-T-C01").first()
    assert len(entry.answers) == 6
    last = CrfEntry.objects.filter(participant__trial=trial, crf_code="SYN-T-C02").first()
    assert len(last.answers) == 7 and 1 <= len(last.answers["lesions"]) <= 3


def test_every_entry_validates_against_its_crf(small):
    """The answers are what the CRF engine stores for a valid, complete submission of the same values."""
    entries = CrfEntry.objects.filter(participant__trial=small.trial).select_related("crf", "visit__participant__site__trial")
    for entry in entries:
        row_ids = {row["_row_id"] for value in entry.answers.values() if isinstance(value, list) for row in value}
        outcome = validate_answers(schema_for(entry.crf), entry.answers, context=entry_context(entry.visit), known_row_ids=row_ids)
        assert outcome.is_valid, (entry.crf_code, outcome.errors, outcome.row_errors)
        assert not outcome.warnings
        assert outcome.answers == entry.answers
        assert entry.status == EntryStatus.COMPLETE and entry.revision == 1 and entry.missing == {}
        # Pinned to the CRF version the visit asks for.
        assert entry.crf_id == VisitCrf.objects.get(visit_definition=entry.visit.definition_id, crf_code=entry.crf_code).crf_id
    assert entries.count() == 30


def test_participants_are_as_the_services_leave_them(small):
    trial = small.trial
    for participant in trial.participants.select_related("site", "consent_document"):
        assert participant.status == ParticipantStatus.ON_TREATMENT
        assert participant.subject_number.startswith(f"{participant.site.code}-")
        assert participant.consent_date <= participant.enrolment_date <= participant.site.today()
        assert participant.consent_document.version == "1.0"
        assert eligibility.assess(participant).eligible is True
        visits = list(participant.visits.select_related("definition"))
        assert len(visits) == 3 and all(v.status == VisitStatus.DONE and v.visit_date for v in visits)
        for visit in visits:
            assert (visit.planned_date, visit.window_start, visit.window_end) == plan(visit.definition, participant)
            assert visit.out_of_window == (not visit.window_start <= visit.visit_date <= visit.window_end)
        # The schedule is complete: nothing for the generator of schedules to add.
        assert schedule_generate(participant, user=system_user(), reason="test") == 0
    assert not list(participants_missing_visits())
    # Randomized by the list: each participant holds the next slot of her site's stratum.
    for allocation in Allocation.objects.filter(participant__trial=trial).select_related("slot", "participant__site"):
        assert allocation.slot.stratum == f"site={allocation.participant.site.code}" == allocation.stratum
        assert allocation.arm_id == allocation.slot.arm_id and allocation.kit_code == allocation.slot.kit_code
    assert trial.is_blinded
    assert AllocationSlot.objects.filter(allocation_list__trial=trial).count() >= 5


def test_history_rows_with_the_reason(small):
    trial = small.trial
    history = CrfEntry.history.filter(participant__trial=trial)
    assert history.count() == 30
    assert set(history.values_list("history_change_reason", flat=True)) == {REASON}
    assert Participant.history.filter(trial=trial, history_change_reason=REASON).count() == 5


def test_adverse_events_pass_the_safety_rules(small):
    events = list(AdverseEvent.objects.filter(participant__trial=small.trial).select_related("participant__site", "participant__trial"))
    assert events, "two AEs per participant on average"
    for ae in events:
        ae_validate(ae)  # the rules ae_save applies; raises ValidationError on a bad AE
    numbers = {}
    for ae in events:
        numbers.setdefault(ae.participant_id, []).append(ae.number)
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in numbers.values())
    serious = [ae for ae in events if ae.serious]
    assert ReportingClock.objects.filter(adverse_event__in=serious).count() == len(serious)


def test_real_services_continue_after_the_synthetic_data(small):
    """A participant screened by hand takes the next number, and a synthetic entry can be corrected."""
    site = small.trial.sites.order_by("code").first()
    user = system_user()
    taken = list(site.participants.values_list("screening_number", flat=True))
    newcomer = participant_screen(site=site, user=user)
    assert newcomer.screening_number == f"{site.code}-S{len(taken) + 1:05d}"
    entry = CrfEntry.objects.filter(participant__site=site, crf_code="SYN-T-C01").select_related("visit").first()
    answers = dict(entry.answers, text_04="Corrected")
    saved = crf_entry_save_answers(user=user, visit=entry.visit, crf_code="SYN-T-C01", answers=answers, complete=True,
                                   reason="Typo")
    assert saved.revision == 2 and saved.answers["text_04"] == "Corrected"


def test_same_parameters_same_data_and_second_run_writes_nothing():
    with transaction.atomic():
        synth_trial_generate(SMALL)
        first = list(CrfEntry.objects.order_by("participant__screening_number", "visit__order", "crf_code").values_list("answers", flat=True))
        transaction.set_rollback(True)
    assert not Trial.objects.filter(code="SYN-T").exists()
    result = synth_trial_generate(SMALL)
    again = list(CrfEntry.objects.order_by("participant__screening_number", "visit__order", "crf_code").values_list("answers", flat=True))
    assert first == again
    rerun = synth_trial_generate(SMALL)
    assert not rerun.created and rerun.trial.pk == result.trial.pk
    assert CrfEntry.objects.count() == 30
    other = SynthParams(code="SYN-T", participants=6, visits=3, crfs=2, items=6)
    with pytest.raises(ValidationError, match="already exists"):
        synth_trial_generate(other)


def test_bad_parameters_are_refused():
    with pytest.raises(ValidationError) as caught:
        synth_trial_generate(SynthParams(code="syn lower", participants=0, visits=3))
    assert "--code" in str(caught.value) and "--participants" in str(caught.value)


def test_open_label_trial_and_the_command(seeds, django_user_model):
    sponsor = django_user_model.objects.create(username="synth-sponsor")
    out = StringIO()
    call_command("synth_trial", "--code", "SYN-C", "--participants", "4", "--visits", "2", "--crfs", "1", "--items", "10",
                 "--sites", "1", "--grant", "synth-sponsor:sponsor", stdout=out)
    assert "Made synthetic trial SYN-C" in out.getvalue()
    trial = Trial.objects.get(code="SYN-C")
    assert trial.design == "open_label" and not trial.is_blinded
    assert set(Allocation.objects.filter(participant__trial=trial).values_list("method", flat=True)) == {"assignment"}
    assert CrfEntry.objects.filter(participant__trial=trial).count() == 8
    assert StudyRole.objects.filter(user=sponsor, trial=trial, role=Role.SPONSOR, is_active=True).exists()
    out = StringIO()
    call_command("synth_trial", "--code", "SYN-C", "--participants", "4", "--visits", "2", "--crfs", "1", "--items", "10",
                 "--sites", "1", stdout=out)
    assert "Up to date" in out.getvalue()
    with pytest.raises(CommandError, match="already exists"):
        call_command("synth_trial", "--code", "SYN-C", "--participants", "5", stdout=StringIO())
    with pytest.raises(CommandError, match="no user"):
        call_command("synth_trial", "--code", "SYN-D", "--participants", "5", "--grant", "nobody:sponsor", stdout=StringIO())
    # The seed trials' CRF library is untouched: synthetic CRFs have codes of their own.
    assert not CrfEntry.objects.exclude(crf_code__startswith="SYN-").exists()


def test_the_tables_filled_are_analysed_on_postgresql():
    """issue 22: right after the load the planner knows the tables' sizes (pg_class.reltuples is
    set by ANALYZE; a table never analysed has -1, one analysed before the load about 0)."""
    from django.db import connection

    result = synth_trial_generate(SynthParams(code="SYN-AN", participants=40, visits=3, crfs=2, items=4, sites=2, aes_per_participant=0))
    if connection.vendor != "postgresql":
        assert result.analyzed == []  # SQLite: nothing to do
        return
    assert {"visits_visit", "visits_crfentry", "participants_participant", "visits_historicalcrfentry"} <= set(result.analyzed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'visits_visit'")
        (estimate,) = cursor.fetchone()
    assert estimate >= Visit.objects.count() == 40 * 3
