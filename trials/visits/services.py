"""Writes of CRF data: every save is validated, conflict-checked and audited here."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from edc.audit import SYSTEM_USERNAME, audited_save
from trials.records.locks import assert_writable, lock_covering, raise_for_lock_id
from trials.records.services import data_changed
from trials.participants.models import Allocation
from trials.participants.selectors import user_enters_data_at
from trials.participants.services import consent_problem
from trials.protocol.models import CrfDefinition, Site, TrialCrf, TrialCrfUse, VisitCrf
from trials.protocol import scores
from trials.protocol.ctcae import CTCAE_VERSION, LabGrade
from trials.protocol.labs import grade_entry
from trials.protocol.selectors import lab_ranges_for_site
from trials.protocol.engine import CrfSchema, Outcome, cel_answers, schema_for, validate_answers
from trials.visits import files as file_items
from trials.visits import hooks
from trials.visits.forms import CrfSubmission
from trials.visits.models import CrfEntry, EntryStatus, RecordKind, Visit, VisitStatus


# An entry the participant answered herself (trials.epro): staff read it, never change it.
PARTICIPANT_SOURCED = gettext_lazy(
    "The participant answered this questionnaire herself: it cannot be changed here. A correction is a query "
    "to the participant or a new administration of the questionnaire."
)


class CrfEntryConflict(Exception):
    """Someone saved this entry since the form was opened; nothing was overwritten.

    `entry` is the current entry when known; after a lost race on the first save it is read by
    the caller, once the failed transaction is rolled back.
    """

    def __init__(self, entry: CrfEntry | None, *, visit: Visit, crf_code: str):
        self.entry, self.visit, self.crf_code = entry, visit, crf_code
        super().__init__(f"{crf_code} at {visit} changed since revision the form was opened")

    def current(self) -> CrfEntry | None:
        """The entry as saved now (None: never saved, the form was out of date)."""
        return self.entry or CrfEntry.objects.filter(visit=self.visit, crf_code=self.crf_code).first()


class UnconfirmedWarnings(Exception):
    """Soft edit checks fired and the caller did not confirm them; nothing was written."""

    def __init__(self, warnings: list[dict]):
        self.warnings = warnings
        super().__init__(f"{len(warnings)} warning(s) to confirm")


@dataclass
class SaveResult:
    entry: CrfEntry
    submission: CrfSubmission
    saved: bool = False
    needs_confirmation: bool = False

    @property
    def outcome(self) -> Outcome:
        return self.submission.outcome


def entry_context(visit: Visit, schema: CrfSchema | None = None) -> dict:
    """What expressions and scores may use besides the answers: dates at the participant's site and,
    for a CRF whose checks read other CRFs (`schema.references`), those CRFs' answers."""
    site_today = visit.participant.site.today()
    participant = visit.participant
    context = {
        **(participant.trial.score_settings or {}),
        "today": site_today.isoformat(),
        "visit_date": (visit.visit_date or site_today).isoformat(),
        "consent_date": participant.consent_date.isoformat() if participant.consent_date else None,
    }
    if schema is not None and schema.reads_allocation:
        context.update(allocation_context(participant))
    if schema is not None and schema.references:
        context["crfs"] = other_crf_answers(visit, schema)
    return context


def allocation_context(participant) -> dict:  # noqa: ANN001
    """`ALLOCATION_CONTEXT_NAMES` for the participant: her cohort's dose per kg and the trial's dose
    tolerance (dose escalation), her allocation's kit code. Never the arm of a blinded allocation:
    inside a cohort active and placebo share the nominal dose, and kit codes are drawn apart from arms."""
    trial = participant.trial
    allocation = Allocation.objects.filter(participant=participant.pk).select_related("arm").first()
    dose_per_kg = None
    if allocation is not None and trial.design == "dose_escalation" and allocation.arm.dose is not None:
        dose_per_kg = float(allocation.arm.dose)
    tolerance = (trial.escalation or {}).get("dose_tolerance_percent")
    return {
        "planned_dose_per_kg": dose_per_kg,
        "dose_tolerance_percent": float(tolerance) if tolerance is not None else None,
        "allocation_kit_code": (allocation.kit_code or None) if allocation is not None else None,
    }


def other_crf_answers(visit: Visit, schema: CrfSchema) -> dict[str, dict[str, dict]]:
    """The other CRFs a schema's expressions read, in one query over the participant's entries up to
    this visit: `visit` (this visit's entries), `previous` (the latest entry at an earlier visit) and
    `baseline` (the first entry at an earlier visit). A CRF not entered there is left out."""
    codes = set().union(*schema.references.values())
    here = (visit.order, visit.sequence)
    entries = (
        CrfEntry.objects.filter(participant_id=visit.participant_id, crf_code__in=codes, visit__order__lte=visit.order)
        .select_related("visit", "crf")
        .only("crf_code", "answers", "visit__order", "visit__sequence", "crf__content_sha256", "crf__code", "crf__version")
        .order_by("visit__order", "visit__sequence")
    )
    out: dict[str, dict[str, dict]] = {namespace: {} for namespace in schema.references}
    wanted = schema.references
    for entry in entries:
        if entry.visit_id == visit.pk:
            namespace_codes = [("visit", wanted.get("visit", ()))]
        elif (entry.visit.order, entry.visit.sequence) < here:
            namespace_codes = [("previous", wanted.get("previous", ())), ("baseline", wanted.get("baseline", ()))]
        else:
            continue  # an unscheduled visit after this one, at the same scheduled position
        for namespace, codes_here in namespace_codes:
            if entry.crf_code not in codes_here or (namespace == "baseline" and entry.crf_code in out[namespace]):
                continue
            out[namespace][entry.crf_code] = cel_answers(schema_for(entry.crf), entry.answers)
    return out


def entry_lab_grades(visit: Visit, schema: CrfSchema, answers: dict) -> dict[str, LabGrade]:
    """CTCAE v5.0 grades of the CRF's laboratory items (`lab_test`) against the normal ranges of the
    participant's site in force on the sample date (the CRF's `sample_date`, else the visit date),
    for the participant's sex and age from DEMOG, and the first earlier entry of the CRF as baseline."""
    if not any(item.lab_test for item in schema.items):
        return {}
    participant = visit.participant
    # The earlier visits' DEMOG and entries of this CRF, and this visit's DEMOG, in one query.
    earlier = (
        CrfEntry.objects.filter(participant_id=participant.pk, crf_code__in=("DEMOG", schema.code))
        .filter(~Q(visit_id=visit.pk) | Q(crf_code="DEMOG")).filter(visit__order__lte=visit.order)
        .order_by("visit__order", "visit__sequence").values_list("visit_id", "crf_code", "answers")
    )
    demog: dict = {}
    demog_here: dict = {}
    baseline: dict | None = None
    for visit_id, code, stored in earlier:
        if visit_id == visit.pk:  # DEMOG entered at this very visit (screening labs): if no earlier one
            demog_here = demog_here or stored or {}
        elif code == "DEMOG" and not demog:
            demog = stored or {}
        elif code == schema.code and baseline is None:
            baseline = stored or {}
    return grade_entry(
        schema, answers, ranges=lab_ranges_for_site(participant.site_id), demog=demog or demog_here,
        baseline=baseline, visit_date=visit.visit_date, today=lambda: participant.site.today(),
    )


def lab_grade_warnings(schema: CrfSchema, grades: dict[str, LabGrade]) -> list[dict]:
    """A soft warning per grade 3-4 laboratory abnormality: the coordinator is asked whether an adverse
    event is recorded, confirms, and the confirmation becomes a query for the monitor (as any soft check)."""
    warnings = []
    for name, graded in grades.items():
        if not graded.prompts_adverse_event:
            continue
        warnings.append({
            "field": name,
            "message": _("CTCAE v%(version)s grade %(grade)s %(term)s: record an adverse event if it is not already recorded.")
            % {"version": CTCAE_VERSION, "grade": graded.grade, "term": graded.term},
            "expression": f"ctcae:{graded.test}>={graded.grade}",
            "kind": "ctcae",
        })
    return warnings


def crf_entry_for(visit: Visit, crf_code: str, *, page_checks: bool = False) -> CrfEntry:
    """The visit's entry of a CRF, or a new unsaved one on the CRF version the visit asks for.

    `page_checks` (the CRF page): a saved entry is read with what the page checks besides it, as
    annotations of the same query (`entry_page_annotations`); a new one has none of them."""
    entries = CrfEntry.objects.select_related("crf").defer("crf__definition")
    if page_checks:
        entries = entries.annotate(**entry_page_annotations(visit))
    try:
        entry = entries.get(visit=visit, crf_code=crf_code)
    except CrfEntry.DoesNotExist:
        return _new_entry(visit, crf_code)
    # The visit and participant already read: the page's checks reuse them, not a query each.
    entry.visit = visit
    if entry.participant_id == visit.participant_id and "participant" in visit._state.fields_cache:
        entry.participant = visit.participant
    return entry


def entry_page_annotations(visit: Visit) -> dict:
    """What the CRF page checks besides its entry, as annotations of the entry's query (the entry is
    the outer row), each sparing the page a query on its own table (issue 22):

    - `newer_consent`: a consent version the participant must re-consent to exists (consent_problem);
    - `page_lock_id`: the lock or freeze covering the entry that lock_covering would return, or NULL;
    - `page_signature_id`: the valid signature a change would break (the visit's first, then the
      casebook's), or NULL;
    - `page_sdv_mark_id`: the entry's SDV mark, or NULL;
    - `page_respondent_id` (trials.epro) and `page_has_queries` (trials.monitoring), by their hooks.

    The page reads a lock, a signature, a mark, a response or the queries only when there is one.
    Written as SQL subqueries (RawSQL): building them as querysets cost the page more CPU than the
    queries they replace (docs/benchmarks.md, "Third pass")."""
    from django.db.models import BooleanField, IntegerField
    from django.db.models.expressions import RawSQL

    from trials.records.locks import strongest_lock_sql
    from trials.records.models import SdvMark, Signature, SignatureState

    participant = visit.participant
    column = _entry_id_column()
    newer_sql, newer_params = _newer_consent_sql(participant)
    lock_sql, lock_params = strongest_lock_sql(
        trial_id=participant.trial_id, participant_id=participant.pk, visit_id=visit.pk, entry_column=column)
    signature_sql = (
        f"(SELECT g.id FROM {Signature._meta.db_table} g WHERE g.participant_id = %s AND g.state = %s"
        " AND (g.visit_id = %s OR g.visit_id IS NULL) ORDER BY CASE WHEN g.visit_id IS NULL THEN 1 ELSE 0 END, g.id LIMIT 1)"
    )
    return {
        "newer_consent": RawSQL(newer_sql, newer_params, output_field=BooleanField()),
        "page_lock_id": RawSQL(lock_sql, lock_params, output_field=IntegerField()),
        "page_signature_id": RawSQL(signature_sql, [participant.pk, SignatureState.VALID, visit.pk], output_field=IntegerField()),
        "page_sdv_mark_id": RawSQL(f"(SELECT m.id FROM {SdvMark._meta.db_table} m WHERE m.entry_id = {column})", [], output_field=IntegerField()),
        **hooks.entry_respondent_annotations(column),
        **hooks.crf_page_annotations(column),
    }


def _entry_id_column() -> str:
    """The outer CrfEntry query's id column, for the SQL subqueries that annotate it."""
    quote = connection.ops.quote_name
    return f"{quote(CrfEntry._meta.db_table)}.{quote('id')}"


def _unplanned_crf(visit: Visit, crf_code: str) -> CrfDefinition:
    """The CRF version a visit outside the plan takes: a log record its log CRF, an unscheduled
    visit one the trial allows at unscheduled visits (`TrialCrf`)."""
    if visit.record_kind == RecordKind.LOG:
        use, allowed = TrialCrfUse.LOG, crf_code == visit.log_crf_code
    else:
        use, allowed = TrialCrfUse.UNSCHEDULED, True
    link = (
        TrialCrf.objects.select_related("crf").defer("crf__definition")
        .filter(trial=visit.participant.trial_id, use=use, crf_code=crf_code, is_active=True).first()
    )
    if link is None or not allowed:
        raise ValidationError(_("CRF %(code)s is not part of this visit.") % {"code": crf_code})
    return link.crf


def _new_entry(visit: Visit, crf_code: str) -> CrfEntry:
    if visit.definition_id is None:
        return CrfEntry(participant=visit.participant, visit=visit, crf=_unplanned_crf(visit, crf_code), crf_code=crf_code)
    try:
        link = VisitCrf.objects.select_related("crf").defer("crf__definition").get(
            visit_definition=visit.definition_id, crf_code=crf_code, is_active=True
        )
    except VisitCrf.DoesNotExist:
        raise ValidationError(_("CRF %(code)s is not part of this visit.") % {"code": crf_code}) from None
    return CrfEntry(participant=visit.participant, visit=visit, crf=link.crf, crf_code=crf_code)


_CRF_COLUMNS = ("id", "code", "version", "title", "description", "source", "content_sha256", "source_file", "created_at")


def _new_entry_checked(user, visit: Visit, crf_code: str) -> CrfEntry:  # noqa: ANN001
    """`_new_entry` and the checks of a save (may the user enter data at this site; must the
    participant re-consent; does a lock or freeze cover the visit; does a valid signature cover it)
    in one query: the first save of a CRF is the coordinator's most frequent write, and building
    several ORM queries cost more than running them (docs/benchmarks.md)."""
    from trials.records.locks import covering_lock_sql
    from trials.records.services import valid_signature_sql

    participant = visit.participant
    if visit.definition_id is None:  # a log record or an unscheduled visit: the checks one by one
        entry = _new_entry(visit, crf_code)
        access = _access_only(user, participant)
        entry.may_enter, entry.newer_consent = access.may_enter, access.newer_consent
        lock = lock_covering(trial=participant.trial_id, participant=participant, visit=visit)
        entry.lock_id, entry.signed = (lock.pk if lock else None), None
        return entry
    may_enter, params = _may_enter_sql(user, participant)
    newer, newer_params = _newer_consent_sql(participant)
    params += newer_params
    lock, lock_params = covering_lock_sql(trial_id=participant.trial_id, participant_id=participant.pk, visit_id=visit.pk)
    signed, signed_params = valid_signature_sql(participant_id=participant.pk, visit_id=visit.pk)
    params += [*lock_params, *signed_params]
    columns = ", ".join(f"c.{name}" for name in _CRF_COLUMNS)
    sql = (
        f"SELECT {columns}, {may_enter}, {newer}, {lock}, {signed} FROM {VisitCrf._meta.db_table} v"
        f" JOIN {CrfDefinition._meta.db_table} c ON c.id = v.crf_id"
        " WHERE v.visit_definition_id = %s AND v.crf_code = %s AND v.is_active = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, visit.definition_id, crf_code, True])
        row = cursor.fetchone()
    if row is None:
        raise ValidationError(_("CRF %(code)s is not part of this visit.") % {"code": crf_code})
    crf = CrfDefinition.from_db(connection.alias, _CRF_COLUMNS, row[: len(_CRF_COLUMNS)])  # definition deferred
    entry = CrfEntry(participant=participant, visit=visit, crf=crf, crf_code=crf_code)
    entry.may_enter, entry.newer_consent, entry.lock_id, entry.signed = bool(row[-4]), bool(row[-3]), row[-2], bool(row[-1])
    return entry


def _may_enter_sql(user, participant) -> tuple[str, list]:  # noqa: ANN001
    """user_enters_data_at as an SQL boolean (data_entry_annotations' `may_enter`), for the reads of
    a save that take every check in one statement."""
    from trials.participants.selectors import DATA_ENTRY_ROLES
    from trials.protocol.models import StudyRole

    if user.username == SYSTEM_USERNAME:
        return "%s", [True]
    if not user.is_authenticated:
        return "%s", [False]
    roles = sorted(DATA_ENTRY_ROLES)
    sql = (
        f"EXISTS (SELECT 1 FROM {StudyRole._meta.db_table} r LEFT JOIN {Site._meta.db_table} s ON s.id = r.site_id"
        f" WHERE r.user_id = %s AND r.is_active = %s AND r.trial_id = %s AND r.role IN ({', '.join(['%s'] * len(roles))})"
        " AND (r.site_id IS NULL OR (r.site_id = %s AND s.is_active = %s)))"
    )
    return sql, [user.pk, True, participant.trial_id, *roles, participant.site_id, True]


def _newer_consent_sql(participant) -> tuple[str, list]:  # noqa: ANN001
    """consent_problem's re-consent rule as an SQL boolean: an active version approved after hers
    that requires re-consent exists (false when she has no version recorded)."""
    from trials.protocol.models import ConsentDocument

    if participant.consent_document_id is None:
        return "(1 = 0)", []
    table = ConsentDocument._meta.db_table
    sql = (
        f"EXISTS (SELECT 1 FROM {table} d WHERE d.trial_id = %s AND d.is_active = %s AND d.requires_reconsent = %s"
        f" AND d.approved_on > (SELECT o.approved_on FROM {table} o WHERE o.id = %s))"
    )
    return sql, [participant.trial_id, True, True, participant.consent_document_id]


def _save_check_annotations(user, visit: Visit) -> dict:  # noqa: ANN001
    """The checks of a save of a saved entry, read in the statement that locks its row: `may_enter`,
    `newer_consent`, `lock_id` (the lock or freeze that assert_writable would name) and
    `page_respondent_id` (trials.epro; a response saved meanwhile also changed the revision, which
    is checked). SQL subqueries (RawSQL): cheaper to build than nested querysets."""
    from django.db.models import BooleanField, IntegerField
    from django.db.models.expressions import RawSQL

    from trials.records.locks import strongest_lock_sql

    participant = visit.participant
    may_enter, may_params = _may_enter_sql(user, participant)
    newer, newer_params = _newer_consent_sql(participant)
    lock, lock_params = strongest_lock_sql(
        trial_id=participant.trial_id, participant_id=participant.pk, visit_id=visit.pk, entry_column=_entry_id_column())
    return {
        "may_enter": RawSQL(may_enter, may_params, output_field=BooleanField()),
        "newer_consent": RawSQL(newer, newer_params, output_field=BooleanField()),
        "lock_id": RawSQL(lock, lock_params, output_field=IntegerField()),
        **hooks.entry_respondent_annotations(_entry_id_column()),
    }


@dataclass
class _Access:
    may_enter: bool
    newer_consent: bool


def _access_only(user, participant) -> _Access:  # noqa: ANN001
    return _Access(user_enters_data_at(user, participant), consent_problem(participant) is not None)


def _row_ids(answers: dict) -> set[str]:
    return {row.get("_row_id") for rows in answers.values() if isinstance(rows, list) for row in rows if isinstance(row, dict)}


def crf_entry_carried_forward(entry: CrfEntry) -> dict:
    """Starting answers of a new entry: rows carried from the participant's previous entry of this CRF.

    Only the row items a group names in `carry_forward`, with the row identity, so a lesion seen at
    one visit is the same row at the next (digital ulcers followed until healing).
    """
    schema = schema_for(entry.crf)
    groups = [g for g in schema.groups if g.carry_forward]
    if not groups:
        return {}
    previous = (
        CrfEntry.objects.filter(participant=entry.participant_id, crf_code=entry.crf_code, visit__order__lt=entry.visit.order)
        .order_by("-visit__order", "-visit__sequence")
        .first()
    )
    if previous is None:
        return {}
    return {
        group.name: [
            {"_row_id": row.get("_row_id"), **{name: row.get(name) for name in group.carry_forward}}
            for row in previous.answers.get(group.name) or []
        ]
        for group in groups
    }


@transaction.atomic
def crf_entry_save(
    *,
    user,  # noqa: ANN001
    visit: Visit,
    crf_code: str,
    data,  # noqa: ANN001 - the submitted QueryDict
    expected_revision: int,
    complete: bool,
    confirm_warnings: bool = False,
    reason: str = "",
    files=None,  # noqa: ANN001 - the request's uploads (request.FILES)
    language: str | None = None,
) -> SaveResult:
    """Validate and save a CRF submission; a stale revision raises CrfEntryConflict and writes nothing.

    `language` is the page's: the form shown again and its messages use the CRF's texts in it
    (the answers, codes and names are the same in every language).

    Uploads of `file` items are checked with the other answers and stored only when the save is
    made; an item with no new upload keeps the file saved before."""
    participant = visit.participant
    if expected_revision == 0:
        # A first save: no entry lookup, the unique (visit, CRF) constraint catches a concurrent one.
        entry = _new_entry_checked(user, visit, crf_code)
    else:
        entry = (
            CrfEntry.objects.select_for_update(of=("self",)).select_related("crf").defer("crf__definition")
            .annotate(**_save_check_annotations(user, visit))
            .filter(visit=visit, crf_code=crf_code).order_by().first()
        )
    # No saved entry behind a form that claims a revision: still check access before saying so.
    flags = entry if entry is not None else _access_only(user, participant)
    if not flags.may_enter:
        raise PermissionDenied(_("You do not enter data at this site."))
    if participant.consent_date is None or flags.newer_consent:
        raise PermissionDenied(consent_problem(participant))
    if entry is None:
        raise CrfEntryConflict(None, visit=visit, crf_code=crf_code)
    raise_for_lock_id(entry.lock_id)  # locked or frozen data: nothing is saved
    if entry.pk and hooks.entry_respondent(entry):  # trials.epro: the participant's own answers
        raise PermissionDenied(PARTICIPANT_SOURCED)
    if entry.revision != expected_revision:
        raise CrfEntryConflict(entry, visit=visit, crf_code=crf_code)
    known_rows = _row_ids(entry.answers) | _row_ids(crf_entry_carried_forward(entry) if entry.pk is None else {})
    schema = schema_for(entry.crf, language)
    submission = CrfSubmission(
        schema, data=data, context=entry_context(visit, schema), known_row_ids=known_rows, files=files, stored=entry.answers,
    )
    outcome = submission.validate()
    if outcome.is_valid:
        outcome.warnings += lab_grade_warnings(schema, entry_lab_grades(visit, schema, outcome.answers))
    result = SaveResult(entry=entry, submission=submission)
    if not outcome.is_valid or (outcome.warnings and not confirm_warnings):
        if entry.pk is None and CrfEntry.objects.filter(visit=visit, crf_code=crf_code).exists():
            # The form was opened before someone's first save: say so before asking for fixes.
            raise CrfEntryConflict(None, visit=visit, crf_code=crf_code)
        result.needs_confirmation = outcome.is_valid
        return result
    reason = reason.strip()
    if "\x00" in reason:
        outcome.errors.setdefault("__all__", []).append(_("The reason contains a character that cannot be stored."))
        submission.form.add_error(None, _("The reason contains a character that cannot be stored."))
        return result
    if entry.status == EntryStatus.COMPLETE and not reason:
        submission.form.add_error(None, _("This entry is complete: give a reason for the change."))
        outcome.errors.setdefault("__all__", []).append(_("This entry is complete: give a reason for the change."))
        return result
    previous_warnings = entry.warnings
    # New uploads go to the storage now; the answer becomes their reference (the old one stays in
    # the entry's history, and its file in the storage).
    stored_files = file_items.store_pending(outcome.answers, schema=schema, user=user, visit=visit, crf_code=crf_code)
    entry.answers = outcome.answers
    entry.missing = outcome.missing
    entry.warnings = [{**w, "confirmed_by": user.username} for w in outcome.warnings]
    entry.status = EntryStatus.COMPLETE if complete else EntryStatus.IN_PROGRESS
    entry.revision += 1
    entry.score_library_version = scores.SCORE_LIBRARY_VERSION
    entry_reason = reason or (_("Data entry") if entry.revision == 1 else _("Data entry (in progress)"))
    if stored_files:
        entry_reason = f"{entry_reason} – " + _("file(s) uploaded: %(files)s") % {
            "files": ", ".join(f"{f.item} {f.original_name} (sha256 {f.sha256[:12]}…)" for f in stored_files)}
    try:
        audited_save(entry, user=user, reason=entry_reason)
    except IntegrityError:
        # Another first save of this CRF won; this transaction is rolled back, the page shows hers.
        raise CrfEntryConflict(None, visit=visit, crf_code=crf_code) from None
    # A first save has no SDV mark to reset; its query already said whether a signature covers the visit.
    first = entry.revision == 1
    data_changed(
        participant=participant, visit=visit, entry=None if first else entry, user=user, reason=entry_reason,
        signed=entry.signed if first else None,
    )
    # Soft checks the coordinator newly overrode become queries for the monitor (once each).
    hooks.checks_overridden(entry=entry, previous_warnings=previous_warnings)  # trials.monitoring.queries.services
    result.saved = True
    return result


@transaction.atomic
def crf_entry_save_answers(
    *, user, visit: Visit, crf_code: str, answers: dict, complete: bool, reason: str, missing: dict | None = None,  # noqa: ANN001
    participant_source: bool = False,
    expected_revision: int | None = None, confirm_warnings: bool = True, language: str | None = None,
) -> CrfEntry:
    """Save parsed answers (item name -> value, as `validate_answers` takes them; `missing`: item
    name -> {code, reason} for items answered with a missing-data code) without a form:
    for imports, the API and synthetic data. The same rules apply; any error raises
    ValidationError naming the items, and nothing is written. `expected_revision` (the API's
    optimistic locking): another revision raises CrfEntryConflict. `confirm_warnings=False`: soft
    warnings raise UnconfirmedWarnings instead of being saved as confirmed (an import confirms)."""
    if not user_enters_data_at(user, visit.participant):
        raise PermissionDenied(_("You do not enter data at this site."))
    problem = consent_problem(visit.participant)
    if problem:
        raise PermissionDenied(problem)
    entry = CrfEntry.objects.select_for_update().select_related("crf").filter(visit=visit, crf_code=crf_code).first()
    entry = entry or _new_entry(visit, crf_code)
    assert_writable(trial=visit.participant.trial_id, participant=visit.participant, visit=visit, entry=entry)
    # The participant's own answers are not changed by anyone else (ALCOA); trials.epro saves a new
    # administration with participant_source=True.
    if not participant_source and entry.pk and hooks.entry_respondent(entry):
        raise PermissionDenied(PARTICIPANT_SOURCED)
    if expected_revision is not None and entry.revision != expected_revision:
        raise CrfEntryConflict(entry if entry.pk else None, visit=visit, crf_code=crf_code)
    if entry.status == EntryStatus.COMPLETE and not reason.strip():
        raise ValidationError(_("This entry is complete: give a reason for the change."))
    schema = schema_for(entry.crf, language)  # check messages in `language` (the ePRO page's) where the CRF has it
    if file_items.file_answers(schema, answers) != file_items.file_answers(schema, entry.answers):
        # A reference could name a file that was never checked, or another participant's.
        raise ValidationError(_("Files are uploaded on the CRF page; an import cannot set or change a file item."))
    outcome = validate_answers(
        schema, answers, missing=missing, context=entry_context(visit, schema), known_row_ids=_row_ids(entry.answers),
    )
    if outcome.is_valid:
        # An import confirms by saving: a grade 3-4 result is stored with its warning, as the page's confirmation.
        outcome.warnings += lab_grade_warnings(schema, entry_lab_grades(visit, schema, outcome.answers))
    if not outcome.is_valid:
        errors = {name: [str(m) for m in messages] for name, messages in outcome.errors.items()}
        for group, rows in outcome.row_errors.items():
            for index, items in rows.items():
                for name, messages in items.items():
                    errors[f"{group}[{index + 1}].{name}"] = [str(m) for m in messages]
        raise ValidationError(errors)
    if outcome.warnings and not confirm_warnings:
        raise UnconfirmedWarnings(outcome.warnings)
    entry.answers = outcome.answers
    entry.missing = outcome.missing
    entry.warnings = [{**w, "confirmed_by": user.username} for w in outcome.warnings]
    entry.status = EntryStatus.COMPLETE if complete else EntryStatus.IN_PROGRESS
    entry.revision += 1
    entry.score_library_version = scores.SCORE_LIBRARY_VERSION
    audited_save(entry, user=user, reason=reason.strip() or _("Data entry"))
    data_changed(participant=visit.participant, visit=visit, entry=entry, user=user, reason=reason.strip() or _("Data entry"))
    return entry


@transaction.atomic
def crf_entry_migrate(*, entry: CrfEntry, user, reason: str) -> tuple[CrfEntry, list[str]]:  # noqa: ANN001
    """Move an entry to the newest version of its CRF; unchanged items are carried over, audited.

    An item is carried over when the new version has an item of the same name and type (inside a
    repeating group: same group and item). Returns the entry and the names of items not carried over.
    """
    if not reason.strip():
        raise ValidationError(_("Give a reason for migrating the entry."))
    entry = CrfEntry.objects.select_for_update().select_related("crf", "participant", "visit").get(pk=entry.pk)
    assert_writable(trial=entry.participant.trial_id, participant=entry.participant, visit=entry.visit, entry=entry)
    newest = CrfDefinition.objects.filter(code=entry.crf.code).order_by("-version").first()
    if newest is None or newest.pk == entry.crf_id:
        raise ValidationError(_("This entry already uses the newest version of %(code)s.") % {"code": entry.crf.code})
    old, new = schema_for(entry.crf), schema_for(newest)
    old_types = {i.name: i.type for i in old.items} | {c.name: (g.name, c.type) for g in old.groups for c in g.children}
    answers: dict = {}
    dropped: list[str] = []
    for item in new.items:
        if item.type == "repeating_group":
            if old_types.get(item.name) == "repeating_group":
                keep = {c.name for c in item.children if old_types.get(c.name) == (item.name, c.type)}
                answers[item.name] = [
                    {k: v for k, v in row.items() if k in keep or k == "_row_id"} for row in entry.answers.get(item.name) or []
                ]
        elif old_types.get(item.name) == item.type and item.name in entry.answers:
            answers[item.name] = entry.answers[item.name]
    for name, value in entry.answers.items():
        if name not in answers and value not in (None, [], ""):
            dropped.append(name)
    from_version = entry.crf.version
    entry.crf = newest
    entry.answers = answers
    entry.missing = {k: v for k, v in entry.missing.items() if k in answers}
    entry.status = EntryStatus.IN_PROGRESS  # to be checked against the new version's rules
    entry.revision += 1
    note = f" (not carried over: {', '.join(dropped)})" if dropped else ""
    audited_save(entry, user=user, reason=f"{reason.strip()} – migrated from v{from_version} to v{newest.version}{note}")
    data_changed(participant=entry.participant, visit=entry.visit, entry=entry, user=user, reason=reason.strip())
    return entry, dropped


# --- Logs outside visits ----------------------------------------------------------------------


@transaction.atomic
def log_record_add(*, user, participant, crf_code: str) -> Visit:  # noqa: ANN001
    """A new record of a participant's log (a medication, a condition): the container its one CRF
    entry is then entered in, through `crf_entry_save` like any visit's CRF. Audited; refused on a
    locked or frozen participant or trial, before consent, and to anyone who does not enter data
    at the participant's site."""
    if not user_enters_data_at(user, participant):
        raise PermissionDenied(_("You do not enter data at this site."))
    problem = consent_problem(participant)
    if problem:
        raise PermissionDenied(problem)
    assert_writable(trial=participant.trial_id, participant=participant)
    link = (
        TrialCrf.objects.select_related("crf").defer("crf__definition")
        .filter(trial=participant.trial_id, use=TrialCrfUse.LOG, crf_code=crf_code, is_active=True).first()
    )
    if link is None:
        raise ValidationError(_("%(code)s is not a log of this trial.") % {"code": crf_code})
    # The participant's row orders concurrent additions, so two coordinators get two numbers.
    type(participant).objects.select_for_update().filter(pk=participant.pk).first()
    sequence = Visit.objects.filter(participant=participant, record_kind=RecordKind.LOG, log_crf_code=crf_code).count() + 1
    reason = _("%(crf)s record %(n)s added") % {"crf": link.crf.title, "n": sequence}
    visit = audited_save(
        Visit(
            participant=participant, definition=None, record_kind=RecordKind.LOG, log_crf_code=crf_code,
            sequence=sequence, label=f"{link.crf.title} {sequence}", status=VisitStatus.DONE, order=20_000 + link.order,
        ),
        user=user,
        reason=reason,
    )
    data_changed(participant=participant, user=user, reason=reason)  # a new record changes the casebook
    return visit
