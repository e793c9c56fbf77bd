"""The reads every export starts from, scoped to the requester's sites and to the spec.

Each `export_*` function takes an `ExportSpec` and returns `Rows`: iterating it streams named
tuples from the database in chunks of `CHUNK_SIZE` (`QuerySet.iterator`, a server-side cursor on
PostgreSQL), so memory does not grow with the trial; `rows.count()` gives the total for the
progress bar. Rows are `values_list(named=True)` tuples, not model instances (no model is built
per row). The field names of each selector's rows are listed in its `*_FIELDS` constant and are
the same whether or not a cut-off applies.

Scope: the requester (`spec.user_id`) must still hold an export role (sponsor, data manager,
DSMB) for the trial and sites when the export runs; the sites are `spec.site_ids` intersected
with `exportable_sites`, so a role withdrawn after the request narrows the export instead of
leaking.

Cut-off (`spec.cutoff`): the data *as they stood* at the end of the cut-off day (UTC, like the
safety summaries), read from the audit history: for each row, its latest historical version
recorded before the end of that day; rows created later are absent. So an export with a given
cut-off gives the same values whenever it is run (a reproducible interim data set). Identity
columns reached through a relation (site code, participant numbers, visit code, CRF version
number, coded term) are read from the current rows: they do not change once given. Visit states
moved by the calendar are outside the history (docs/architecture.md, "Visit schedule"), so a
visit's status is that of its last audited change before the cut-off.

Blinding: no selector but `export_allocations` reads the allocation table, and it refuses a
blinded spec. `export_participants` leaves out the emergency-unblinding time of a blinded spec.
`arm_mask` gives the function that writers apply to every text of a blinded export of a masked
trial (protocol labels and free text), so that no arm code or label appears in any file.
Identifiers: answers of CRF items flagged `identifier` are removed from `export_entries` rows,
and the date of birth becomes `age_at_consent` in `export_participants`, unless `spec.identifiers`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Case, F, Max, Model, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce

from trials.exports.spec import ExportSpec
from trials.monitoring.models import Query
from trials.participants.models import Allocation, EligibilityAnswer, Participant
from trials.protocol.models import Arm, CrfDefinition, FieldDefinition, FieldType, Role, Site, Trial, TrialCrf, VisitCrf
from trials.protocol.selectors import study_roles_for_user, user_role_grants
from trials.records.models import Signature, SignatureState
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, Visit

CHUNK_SIZE = 2000

# The item holding the date of birth: it becomes the age at consent.
BIRTH_ITEM = "date_of_birth"


class Rows:
    """A streamed, countable result: iterate for rows (in chunks), `count()` for the total."""

    def __init__(self, queryset: QuerySet, transform: Callable[[Any], Any] | None = None) -> None:
        self.queryset = queryset
        self.transform = transform

    def __iter__(self) -> Iterator[Any]:
        rows = self.queryset.iterator(chunk_size=CHUNK_SIZE)
        if self.transform is None:
            return rows
        return map(self.transform, rows)

    def count(self) -> int:
        return self.queryset.count()


# --- Scope ------------------------------------------------------------------------------------


# Roles that download exports (DESIGN.md: sponsors and DSMBs download exports; data managers too).
EXPORT_ROLES = frozenset({Role.SPONSOR, Role.DATA_MANAGER, Role.DSMB})


def exportable_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials in which the user holds a role that may export (a superuser: every trial)."""
    if user.is_authenticated and user.is_superuser:
        return Trial.objects.all()
    roles = study_roles_for_user(user).filter(role__in=EXPORT_ROLES)
    return Trial.objects.filter(pk__in=roles.values("trial_id"))


def exportable_sites(user, *, trial: Trial | None = None) -> QuerySet[Site]:  # noqa: ANN001
    """Sites whose data the user may export: every site of a trial for an all-sites export role,
    else the sites of the user's site-bound export roles (inactive sites included: their data
    remain part of the trial)."""
    if user.is_authenticated and user.is_superuser:
        sites = Site.objects.all()
    else:
        roles = study_roles_for_user(user).filter(role__in=EXPORT_ROLES)
        sites = Site.objects.filter(
            Q(trial_id__in=roles.filter(site__isnull=True).values("trial_id"))
            | Q(pk__in=roles.filter(site__isnull=False).values("site_id"))
        )
    if trial is not None:
        sites = sites.filter(trial=trial)
    return sites.select_related("trial").order_by("trial__code", "code")


def user_may_export(user) -> bool:  # noqa: ANN001
    """Whether the export page is for this user (navigation link)."""
    if user.is_authenticated and user.is_superuser:
        return exportable_trials(user).exists()
    return any(grant.role in EXPORT_ROLES for grant in user_role_grants(user))  # the request's memo of her roles


def pooled_crf_codes(user) -> list[str]:  # noqa: ANN001
    """CRF codes scheduled in at least one trial the user may export (for a pooled export)."""
    return sorted(set(
        VisitCrf.objects.filter(visit_definition__trial__in=exportable_trials(user)).values_list("crf_code", flat=True)
    ))


def jobs_for_user(user) -> QuerySet:  # noqa: ANN001
    """The user's own export jobs, newest first (nobody sees another user's exports)."""
    from trials.exports.models import ExportJob

    return ExportJob.objects.filter(requested_by=user).select_related("trial")


def _memo(spec: ExportSpec, key: str, compute: Callable[[], Any]) -> Any:
    """A value computed once per spec object (one export run reads its scope once, not once per
    table; a new run makes a new spec and reads the roles again)."""
    cache = spec.options.setdefault("_memo", {})
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def export_user(spec: ExportSpec):  # noqa: ANN201
    """The requester, whose roles scope the export."""
    return _memo(spec, "user", lambda: get_user_model().objects.get(pk=spec.user_id))


def export_trials(spec: ExportSpec) -> QuerySet[Trial]:
    """The trial of the export, or for a pooled export every trial the requester may export that
    schedules the pooled CRF."""
    trials = exportable_trials(export_user(spec))
    if spec.trial_id is not None:
        return trials.filter(pk=spec.trial_id)
    return trials.filter(
        pk__in=VisitCrf.objects.filter(crf_code=spec.pooled_crf).values("visit_definition__trial_id")
    ).order_by("code")


def export_sites(spec: ExportSpec) -> QuerySet[Site]:
    """The spec's sites that the requester may still export, in the export's trials."""
    sites = exportable_sites(export_user(spec)).filter(trial__in=export_trials(spec))
    return sites.filter(pk__in=spec.site_ids).order_by("trial__code", "code")


def export_crf_codes(spec: ExportSpec) -> list[str]:
    """The CRFs of the export in schedule order (first visit at which each is due): the spec's, or
    every CRF of the trial's schedule; the pooled CRF for a pooled export."""
    return list(_memo(spec, "crf_codes", lambda: _crf_codes(spec)))


def _crf_codes(spec: ExportSpec) -> list[str]:
    if spec.trial_id is None:
        return [spec.pooled_crf] if spec.pooled_crf else []
    rows = (
        VisitCrf.objects.filter(visit_definition__trial_id=spec.trial_id)
        .values_list("crf_code", "visit_definition__order", "order")
        .order_by("visit_definition__order", "order")
    )
    codes: list[str] = []
    for code, _visit_order, _order in rows:
        if code not in codes:
            codes.append(code)
    # Then the CRFs kept outside the plan: those of unscheduled visits, then the logs (CONMED, MEDHIST).
    outside = TrialCrf.objects.filter(trial_id=spec.trial_id).order_by("-use", "order").values_list("crf_code", flat=True)
    codes += [code for code in dict.fromkeys(outside) if code not in codes]
    if spec.crf_codes:
        return [code for code in codes if code in spec.crf_codes]
    return codes


def export_crf_versions(crf_code: str) -> list[CrfDefinition]:
    """Every version of a CRF, newest first: an export's columns are their union, so entries made
    with an older version keep their items."""
    return list(CrfDefinition.objects.filter(code=crf_code).order_by("-version"))


def cutoff_end(spec: ExportSpec) -> datetime | None:
    """The end of the cut-off day (UTC), or None for the data as they are now."""
    if spec.cutoff is None:
        return None
    return datetime.combine(spec.cutoff + timedelta(days=1), time.min, tzinfo=UTC)


def _source(model: type[Model], scope: Q, end: datetime | None) -> QuerySet:
    """The rows of `model` in `scope`: current ones, or each row's latest historical version
    recorded before `end` (the same field names either way)."""
    if end is None:
        return model.objects.filter(scope)
    historical = model.history.model
    latest = (
        historical.objects.filter(scope, history_date__lt=end)
        .order_by().values("id").annotate(last=Max("history_id")).values("last")
    )
    return historical.objects.filter(history_id__in=latest).exclude(history_type="-")


def _subject(prefix: str = "participant__") -> F:
    """The participant's key in every export: her screening number, given at screening and never
    changed, so a subject keeps one identifier across transfers (USUBJID, ODM SubjectKey, CSV
    `subject`); the subject number given at enrolment is carried as a variable of its own."""
    return F(f"{prefix}screening_number")


def export_site_ids(spec: ExportSpec) -> list[int]:
    """The ids of `export_sites`, read once per spec."""
    return _memo(spec, "site_ids", lambda: list(export_sites(spec).values_list("pk", flat=True)))


def _participant_scope(spec: ExportSpec, prefix: str = "") -> Q:
    return Q(**{f"{prefix}site_id__in": export_site_ids(spec)})


# --- Participants ---------------------------------------------------------------------------


class ParticipantRow(NamedTuple):
    id: int
    trial_code: str
    site_code: str
    subject: str
    screening_number: str
    subject_number: str
    status: str
    status_reason: str
    status_date: date | None
    screening_date: date | None
    consent_date: date | None
    consent_version: str | None
    enrolment_date: date | None
    first_treatment_date: date | None
    site_country: str  # ISO 3166 alpha-2
    allocated_at: datetime | None  # when an arm or cohort was allocated (the date only, never the arm)
    age_at_consent: int | None
    date_of_birth: str | None  # only with spec.identifiers, else None
    unblinded_at: datetime | None  # only in an unblinded export, else None


def birth_crf_codes() -> list[str]:
    """CRFs with a date-of-birth item (DEMOG in the library)."""
    return sorted(set(
        FieldDefinition.objects.filter(name=BIRTH_ITEM, field_type=FieldType.DATE, parent__isnull=True)
        .values_list("crf__code", flat=True)
    ))


def age_on(born: date | str | None, on: date | None) -> int | None:
    """Completed years between a birth date and a date."""
    if not born or on is None:
        return None
    if isinstance(born, str):
        try:
            born = date.fromisoformat(born)
        except ValueError:
            return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def export_participants(spec: ExportSpec) -> Rows:
    """Participants at the export's sites (screened before the cut-off), by trial, site and number.
    The date of birth (from the participant's first CRF with one) is turned into the age at
    consent and dropped, unless the spec asks for identifiers."""
    end = cutoff_end(spec)
    source = _source(Participant, _participant_scope(spec), end)
    birth = (
        CrfEntry.objects.filter(participant_id=OuterRef("id"), crf_code__in=_memo(spec, "birth", birth_crf_codes))
        .annotate(born=KT(f"answers__{BIRTH_ITEM}")).exclude(born__isnull=True)
        .order_by("visit__order", "pk").values("born")[:1]
    )
    # The date of the allocation only (the RANDOMIZED milestone, DM.ARMNRS): no arm is read.
    allocated = Allocation.objects.filter(participant_id=OuterRef("id"))
    if end is not None:
        allocated = allocated.filter(allocated_at__lt=end)
    queryset = source.annotate(
        trial_code=F("trial__code"), site_code=F("site__code"), subject=_subject(""),
        consent_version=F("consent_document__version"), born=Subquery(birth), site_country=F("site__country"),
        allocated_at=Subquery(allocated.values("allocated_at")[:1]),
    ).order_by("trial__code", "site__code", "screening_number").values_list(
        "id", "trial_code", "site_code", "subject", "screening_number", "subject_number", "status", "status_reason",
        "status_date", "screening_date", "consent_date", "consent_version", "enrolment_date", "first_treatment_date",
        "site_country", "allocated_at", "born", "unblinded_at",
    )
    identifiers, blinded = spec.identifiers, spec.blinded

    def transform(row: tuple) -> ParticipantRow:
        *head, born, unblinded_at = row
        return ParticipantRow(
            *head, age_on(born, row[10]), born if identifiers else None, None if blinded else unblinded_at
        )

    return Rows(queryset, transform)


# --- Blinded text ---------------------------------------------------------------------------

BLINDED_WORD = "[blinded]"


def arm_mask(spec: ExportSpec) -> Callable[[str], str] | None:
    """For a blinded export of a masked trial: a function replacing every arm code and label in a
    text by "[blinded]". Protocol texts name the arms ("Day 0 - injection (AdMSC or placebo)"),
    and free text written after an emergency unblinding could name the one a participant got; a
    blinded file carries neither. None when nothing needs masking (unblinded export, open-label
    trial). Arm definitions are protocol facts: this reads no allocation."""
    if not spec.blinded:
        return None
    return _memo(spec, "arm_mask", lambda: _arm_mask(spec))


def arm_mask_pattern(spec: ExportSpec) -> str | None:
    """The regular expression `arm_mask` replaces (case-insensitive), for writers that mask in SQL
    (PostgreSQL's regexp_replace reads the same syntax); None when nothing needs masking."""
    if not spec.blinded:
        return None
    return _memo(spec, "arm_mask_pattern", lambda: _arm_mask_pattern(spec))


def _arm_mask_pattern(spec: ExportSpec) -> str | None:
    masked = [t.pk for t in export_trials(spec) if t.is_blinded]
    words = {
        word.strip() for pair in Arm.objects.filter(trial_id__in=masked).values_list("code", "label") for word in pair
    }
    words = sorted((w for w in words if w), key=len, reverse=True)
    if not words:
        return None
    return r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])"


def _arm_mask(spec: ExportSpec) -> Callable[[str], str] | None:
    source = arm_mask_pattern(spec)
    if source is None:
        return None
    pattern = re.compile(source, re.IGNORECASE)

    def mask(text: str) -> str:
        return pattern.sub(BLINDED_WORD, text) if text else text

    return mask


# --- Allocation (never in a blinded export) -------------------------------------------------

ALLOCATION_FIELDS = (
    "participant_id", "trial_code", "site_code", "subject", "arm_code", "arm_label", "arm_type", "dose", "dose_unit",
    "method", "kit_code", "stratum", "allocated_at", "placebo",
)


def export_allocations(spec: ExportSpec) -> Rows:
    """Who got which arm (or dose cohort). Refused for a blinded spec: the only selector that reads
    the allocation table, so a blinded export cannot reach an arm."""
    if spec.blinded:
        raise PermissionDenied("A blinded export never reads allocations.")
    source = _source(Allocation, _participant_scope(spec, "participant__"), cutoff_end(spec))
    queryset = source.annotate(
        trial_code=F("participant__trial__code"), site_code=F("participant__site__code"), subject=_subject(),
        arm_code=F("arm__code"), arm_label=F("arm__label"), arm_type=F("arm__arm_type"), dose=F("arm__dose"),
        dose_unit=F("arm__dose_unit"), placebo=Coalesce(F("slot__placebo"), Value(False)),
    ).order_by("participant__trial__code", "participant__site__code", "participant__screening_number")
    return Rows(queryset.values_list(*ALLOCATION_FIELDS, named=True))


ELIGIBILITY_FIELDS = ("participant_id", "criterion_code", "kind", "text", "level", "lesion", "answer", "screening_date")


def export_eligibility(spec: ExportSpec) -> Rows:
    """The eligibility answers of the export's participants (criterion, kind, answer, the lesion of a
    lesion-level criterion), in criterion order: the SDTM IE domain."""
    source = _source(EligibilityAnswer, _participant_scope(spec, "participant__"), cutoff_end(spec))
    queryset = source.annotate(
        criterion_code=F("criterion__code"), kind=F("criterion__kind"), text=F("criterion__text"),
        level=F("criterion__level"), screening_date=F("participant__screening_date"),
    ).order_by("participant_id", "criterion__kind", "criterion__order", "criterion__code", "lesion")
    return Rows(queryset.values_list(*ELIGIBILITY_FIELDS, named=True))


# --- Visits ---------------------------------------------------------------------------------

VISIT_FIELDS = (
    "id", "participant_id", "trial_code", "site_code", "subject", "visit_code", "label", "sequence", "kind", "order",
    "planned_date", "window_start", "window_end", "visit_date", "status", "status_reason", "out_of_window",
)


def export_visits(spec: ExportSpec) -> Rows:
    """Visits of the export's participants, in schedule order per participant."""
    source = _source(Visit, _participant_scope(spec, "participant__"), cutoff_end(spec))
    queryset = source.annotate(
        trial_code=F("participant__trial__code"), site_code=F("participant__site__code"), subject=_subject(),
        visit_code=F("definition__code"),
        # A log record's kind is "log"; a planned visit's, its definition's; an unscheduled visit's, empty.
        kind=Case(When(record_kind="log", then=Value("log")), default=F("definition__kind")),
    ).order_by("participant__trial__code", "participant__site__code", "participant__screening_number", "order", "sequence", "id")
    return Rows(queryset.values_list(*VISIT_FIELDS, named=True))


# --- CRF entries ----------------------------------------------------------------------------

ENTRY_FIELDS = (
    "id", "participant_id", "trial_code", "site_code", "subject", "visit_id", "visit_code", "visit_label",
    "visit_sequence", "visit_order", "visit_date", "crf_code", "crf_id", "crf_version", "status", "answers", "missing",
    "updated_at",
)


class EntryRow(NamedTuple):
    id: int
    participant_id: int
    trial_code: str
    site_code: str
    subject: str
    visit_id: int
    visit_code: str | None
    visit_label: str
    visit_sequence: int
    visit_order: int
    visit_date: date | None
    crf_code: str
    crf_id: int
    crf_version: int
    status: str
    answers: dict
    missing: dict
    updated_at: datetime


def identifier_items(crf_ids: Iterable[int] | None = None) -> dict[int, dict[str | None, frozenset[str]]]:
    """Per CRF version, the names of items flagged `identifier`: {crf_id: {None: top-level names,
    group name: row item names}}."""
    rows = FieldDefinition.objects.filter(identifier=True)
    if crf_ids is not None:
        rows = rows.filter(crf_id__in=list(crf_ids))
    found: dict[int, dict[str | None, set[str]]] = {}
    for crf_id, name, group in rows.values_list("crf_id", "name", "parent__name"):
        found.setdefault(crf_id, {}).setdefault(group, set()).add(name)
    return {crf_id: {k: frozenset(v) for k, v in groups.items()} for crf_id, groups in found.items()}


def strip_identifiers(answers: dict, missing: dict, items: dict[str | None, frozenset[str]]) -> tuple[dict, dict]:
    """Copies of an entry's answers and missing-data codes without its identifying items."""
    top = items.get(None, frozenset())
    answers = {k: v for k, v in answers.items() if k not in top}
    missing = {k: v for k, v in missing.items() if k not in top}
    for group, names in items.items():
        if group is None:
            continue
        if isinstance(answers.get(group), list):
            answers[group] = [{k: v for k, v in row.items() if k not in names} for row in answers[group]]
        if isinstance(missing.get(group), dict):
            missing[group] = {
                row_id: {k: v for k, v in row.items() if k not in names} for row_id, row in missing[group].items()
            }
    return answers, missing


def export_entries(spec: ExportSpec, crf_code: str | None = None, *, with_missing_only: bool = False) -> Rows:
    """CRF entries of the export's participants (one CRF, or every CRF of the export), ordered by
    trial, site, participant, visit and CRF, each with its answers as stored (decimals as exact
    strings, dates ISO, choices as codes, yes/no as booleans, repeating groups as row lists with
    `_row_id`). Identifying items are removed unless the spec asks for them."""
    scope = _participant_scope(spec, "participant__")
    codes = [crf_code] if crf_code else export_crf_codes(spec)
    scope &= Q(crf_code__in=codes)
    source = _source(CrfEntry, scope, cutoff_end(spec))
    if with_missing_only:
        source = source.exclude(missing={})
    queryset = source.annotate(
        trial_code=F("participant__trial__code"), site_code=F("participant__site__code"), subject=_subject(),
        visit_code=F("visit__definition__code"), visit_label=F("visit__label"), visit_sequence=F("visit__sequence"),
        visit_order=F("visit__order"), visit_date=F("visit__visit_date"), crf_version=F("crf__version"),
    ).order_by(
        "participant__trial__code", "participant__site__code", "participant__screening_number", "visit__order",
        "visit__sequence", "crf_code",
    ).values_list(*ENTRY_FIELDS)
    if spec.identifiers:
        return Rows(queryset, EntryRow._make)
    hidden = _memo(spec, f"identifiers:{','.join(codes)}", lambda: identifier_items(
        CrfDefinition.objects.filter(code__in=codes).values_list("pk", flat=True)
    ))

    def transform(row: tuple) -> EntryRow:
        entry = EntryRow._make(row)
        items = hidden.get(entry.crf_id)
        if not items:
            return entry
        answers, missing = strip_identifiers(entry.answers or {}, entry.missing or {}, items)
        return entry._replace(answers=answers, missing=missing)

    return Rows(queryset, transform)


class EntryAuditRow(NamedTuple):
    participant_id: int
    entry_id: int
    at: datetime
    user_id: int | None
    reason: str | None


def export_entry_audit(spec: ExportSpec) -> Rows:
    """Every recorded change of the CRF entries of the export's participants (who, when, why), from
    the audit trail, in time order per entry: the ODM AuditRecords."""
    historical = CrfEntry.history.model
    queryset = historical.objects.filter(participant__site_id__in=export_site_ids(spec))
    end = cutoff_end(spec)
    if end is not None:
        queryset = queryset.filter(history_date__lt=end)
    queryset = queryset.order_by("id", "history_date", "history_id").values_list(
        "participant_id", "id", "history_date", "history_user_id", "history_change_reason",
    )
    return Rows(queryset, lambda row: EntryAuditRow(*row))


class SignatureRow(NamedTuple):
    participant_id: int
    visit_id: int | None  # None: the whole casebook
    signer_id: int
    signed_at: datetime
    meaning: str


def export_signatures(spec: ExportSpec) -> Rows:
    """The investigators' signatures of the export's participants that are valid (as of the
    cut-off: signed before it and not broken by then), newest first per participant: the ODM
    Signatures."""
    queryset = (
        _source(Signature, _participant_scope(spec, "participant__"), cutoff_end(spec))
        .filter(state=SignatureState.VALID)
        .order_by("participant_id", "-signed_at", "-id")
        .values_list("participant_id", "visit_id", "signer_id", "signed_at", "meaning")
    )
    return Rows(queryset, lambda row: SignatureRow(*row))


def export_audit_users(spec: ExportSpec) -> list[tuple[int, str, str]]:
    """(id, username, full name) of the users who changed the export's CRF entries or signed."""
    historical = CrfEntry.history.model
    queryset = historical.objects.filter(participant__site_id__in=export_site_ids(spec), history_user__isnull=False)
    end = cutoff_end(spec)
    if end is not None:
        queryset = queryset.filter(history_date__lt=end)
    ids = set(queryset.values_list("history_user_id", flat=True).distinct())
    ids |= {row.signer_id for row in export_signatures(spec)}
    users = get_user_model().objects.filter(pk__in=ids).order_by("pk")
    return [(user.pk, user.get_username(), user.get_full_name()) for user in users]


# --- Adverse events -------------------------------------------------------------------------

AE_FIELDS = (
    "id", "participant_id", "trial_code", "site_code", "subject", "number", "verbatim_term", "dictionary",
    "dictionary_version", "llt_code", "llt", "pt_code", "pt", "soc_code", "soc", "onset_date", "end_date", "ongoing",
    "grade", "serious", "seriousness", "related_product", "procedure", "related_procedure", "expected",
    "action_taken", "outcome", "treatment_given", "aware_at", "is_dlt", "leads_to_withdrawal",
)


def export_adverse_events(spec: ExportSpec) -> Rows:
    """Adverse events of the export's participants, by participant and AE number."""
    source = _source(AdverseEvent, _participant_scope(spec, "participant__"), cutoff_end(spec))
    queryset = source.annotate(
        trial_code=F("participant__trial__code"), site_code=F("participant__site__code"), subject=_subject(),
        dictionary=F("coded_term__dictionary"), dictionary_version=F("coded_term__version"),
        llt_code=F("coded_term__llt_code"), llt=F("coded_term__llt"), pt_code=F("coded_term__pt_code"),
        pt=F("coded_term__pt"), soc_code=F("coded_term__soc_code"), soc=F("coded_term__soc"),
    ).order_by("participant__trial__code", "participant__site__code", "participant__screening_number", "number")
    return Rows(queryset.values_list(*AE_FIELDS, named=True))


# --- Queries --------------------------------------------------------------------------------

QUERY_FIELDS = (
    "id", "participant_id", "trial_code", "site_code", "subject", "entry_id", "crf_code", "visit_code",
    "visit_sequence", "ae_number", "item", "row_id", "state", "origin", "text", "raised_by_username", "raised_at",
    "closed_at",
)


def export_queries(spec: ExportSpec) -> Rows:
    """Data clarification queries on the export's participants (the value at the time of the query
    is left out: a query on an identifying item would carry it)."""
    source = _source(Query, _participant_scope(spec, "participant__"), cutoff_end(spec))
    queryset = source.annotate(
        trial_code=F("participant__trial__code"), site_code=F("participant__site__code"), subject=_subject(),
        crf_code=F("entry__crf_code"), visit_code=F("entry__visit__definition__code"),
        visit_sequence=F("entry__visit__sequence"), ae_number=F("adverse_event__number"),
        raised_by_username=F("raised_by__username"),
    ).order_by("participant__trial__code", "participant__site__code", "participant__screening_number", "raised_at", "id")
    return Rows(queryset.values_list(*QUERY_FIELDS, named=True))


def lab_grading_context(spec: ExportSpec) -> tuple[dict[int, tuple[int, str | None, str | None]], dict[int, list]]:
    """What grading the export's laboratory values needs, read once: participant id -> (site id, sex,
    date of birth) from the participant's first DEMOG entry (the date of birth only to pick an
    age-specific normal range; it is not exported), and site id -> its normal-range rows."""
    from trials.participants.models import Participant
    from trials.protocol.selectors import lab_ranges_for_site

    scope = _participant_scope(spec)
    people: dict[int, tuple[int, str | None, str | None]] = {
        pk: (site_id, None, None) for pk, site_id in Participant.objects.filter(scope).values_list("pk", "site_id")
    }
    demog = (
        CrfEntry.objects.filter(_participant_scope(spec, "participant__"), crf_code="DEMOG")
        .order_by("participant_id", "-visit__order").values_list("participant_id", "answers")
    )
    for participant_id, answers in demog:  # the earliest visit's entry is read last and wins
        site_id = people.get(participant_id, (None,))[0]
        people[participant_id] = (site_id, (answers or {}).get("sex"), (answers or {}).get("date_of_birth"))
    sites = {site_id for site_id, _sex, _born in people.values() if site_id is not None}
    return people, {site_id: lab_ranges_for_site(site_id) for site_id in sites}
