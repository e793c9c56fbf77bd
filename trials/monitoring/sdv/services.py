"""Source data verification: the monitor's marks, their reset by later edits, the trial's SDV
plan and the backlog it defines.

A mark records the entry's revision it verified. Any save raises the revision, so "verified at
its current revision" is the whole test; `sdv_entry_changed` (called by
trials.records.services.data_changed after every save of an entry) also turns the mark into a
visible, audited reset: "SDV reset by the change on <date> by <user>".
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import audited_save
from trials.monitoring.models import SdvPlan, SdvScope
from trials.records.models import SdvItemTick, SdvMark, SdvState
from trials.records.services import stored_value
from trials.monitoring.queries.selectors import reviewer_trials, user_verifies_at
from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Role, Trial, VisitCrf
from trials.protocol.selectors import study_roles_for_user
from trials.protocol.engine import ROW_ID, schema_for
from trials.visits.forms import CrfSubmission
from trials.visits.models import CrfEntry, EntryStatus
from trials.visits.services import entry_context


def sdv_critical_items(entry: CrfEntry, plan: SdvPlan | None = None) -> list[str]:
    """The items of this entry's CRF the trial's plan wants verified one by one."""
    if plan is None:
        plan = SdvPlan.objects.filter(trial_id=entry.participant.trial_id).first()
    if plan is None:
        return []
    return list((plan.critical_items or {}).get(entry.crf_code) or [])


@transaction.atomic
def sdv_verify(*, entry: CrfEntry, user, items=()) -> SdvMark:  # noqa: ANN001
    """Mark a complete entry as verified against the source at its current revision (monitors of
    the site only). If the plan names critical items for this CRF, each must be ticked in `items`."""
    entry = (
        CrfEntry.objects.select_for_update(of=("self",)).select_related("crf", "participant__trial", "participant__site")
        .get(pk=entry.pk)
    )
    if not user_verifies_at(user, entry.participant):
        raise PermissionDenied(_("Only the monitors of this site verify source data."))
    if entry.status != EntryStatus.COMPLETE:
        raise ValidationError(_("Only a complete entry can be verified."))
    items = list(dict.fromkeys(str(i) for i in items or ()))
    schema = schema_for(entry.crf)
    for name in items:
        try:
            schema.item(name)
        except KeyError:
            raise ValidationError({"items": _("%(crf)s has no item “%(item)s”.") % {"crf": schema.code, "item": name}}) from None
    critical = set(sdv_critical_items(entry))
    missing = [t.item for t in sdv_review_items(entry) if t.blocking and not t.row_id and t.item in critical and t.item not in items]
    if missing:
        raise ValidationError({"items": _("Verify the critical items of %(crf)s one by one: %(items)s.") % {
            "crf": schema.code, "items": ", ".join(missing)}})
    mark = SdvMark.objects.select_for_update().filter(entry=entry).first() or SdvMark(entry=entry)
    mark.state, mark.items, mark.entry_revision = SdvState.VERIFIED, items, entry.revision
    mark.verified_by, mark.verified_at, mark.reset_at, mark.reset_by = user, timezone.now(), None, None
    return audited_save(mark, user=user, reason=_("Source data verified (revision %(n)s)") % {"n": entry.revision})




@dataclass(frozen=True)
class PlannedTick:
    """One tick the SDV plan asks for on an entry: an item, in one row for a repeating group.
    `blocking`: shown by branching and answered, so the form is verified only once it is ticked
    (an item hidden by branching, or left empty / answered with a missing-data code, has no value to
    compare with the source and never blocks)."""

    item: str
    row_id: str
    label: str
    row_number: int | None
    blocking: bool

    @property
    def key(self) -> str:
        return f"{self.item}@{self.row_id}" if self.row_id else self.item


def _answered(value: object) -> bool:
    return value not in (None, "", [], {})


def sdv_review_items(entry: CrfEntry, plan: SdvPlan | None = None) -> list[PlannedTick]:
    """The items a monitor ticks one by one on the form-view review: the plan's critical items of
    this CRF when it names some (a partial SDV plan, e.g. critical items only; a repeating group's
    name stands for every input item of its rows), else every required input item, the items of
    every row of a repeating group included (full SDV)."""
    schema = schema_for(entry.crf)
    critical = set(sdv_critical_items(entry, plan))
    answers, missing = entry.answers or {}, entry.missing or {}
    outcome = CrfSubmission(schema, answers=answers, missing=missing, context=entry_context(entry.visit, schema)).evaluate_stored(answers, missing)
    ticks: list[PlannedTick] = []
    for item in schema.items:
        if item.type == "repeating_group":
            children = [c for c in item.children if c.is_input and (
                item.name in critical or c.name in critical if critical else c.required)]
            if not children:
                continue
            rows = answers.get(item.name) or []
            hidden_rows = outcome.hidden_in_rows.get(item.name) or {}
            for index, row in enumerate(rows):
                for child in children:
                    shown = item.name not in outcome.hidden and child.name not in hidden_rows.get(index, set())
                    ticks.append(PlannedTick(child.name, row.get(ROW_ID, ""), child.label, index + 1, shown and _answered(row.get(child.name))))
        elif item.is_input and (item.name in critical if critical else item.required):
            shown = item.name not in outcome.hidden
            ticks.append(PlannedTick(item.name, "", item.label, None, shown and _answered(answers.get(item.name))))
    return ticks


def sdv_planned_items(entry: CrfEntry, plan: SdvPlan | None = None, *, shown: set[str] | None = None) -> list[str]:
    """The names of the top-level items that block the form's verification (see sdv_review_items)."""
    return [t.item for t in sdv_review_items(entry, plan) if t.blocking and not t.row_id]


def sdv_ticks(entry: CrfEntry) -> dict[str, SdvItemTick]:
    """The entry's saved ticks by key (`item` or `item@row_id`), ticked or not."""
    return {(f"{t.item}@{t.row_id}" if t.row_id else t.item): t for t in SdvItemTick.objects.filter(entry=entry).select_related("ticked_by", "reset_by")}


def _locked_entry(entry: CrfEntry, user) -> CrfEntry:  # noqa: ANN001
    entry = (
        CrfEntry.objects.select_for_update(of=("self",))
        .select_related("crf", "visit__definition", "participant__trial", "participant__site").get(pk=entry.pk)
    )
    if not user_verifies_at(user, entry.participant):
        raise PermissionDenied(_("Only the monitors of this site verify source data."))
    if entry.status != EntryStatus.COMPLETE:
        raise ValidationError(_("Only a complete entry can be verified."))
    return entry


@transaction.atomic
def sdv_item_tick(*, entry: CrfEntry, user, item: str, row_id: str = "", ticked: bool = True, plan: SdvPlan | None = None) -> SdvItemTick:  # noqa: ANN001
    """Tick (or untick) one item of the SDV plan against the source, saved at once and audited;
    then the form is verified when every blocking item is ticked (`sdv_entry_sync`), and an
    untick withdraws a verification of the current revision."""
    entry = _locked_entry(entry, user)
    item, row_id = (item or "").strip(), (row_id or "").strip()
    planned = {t.key: t for t in sdv_review_items(entry, plan)}
    key = f"{item}@{row_id}" if row_id else item
    if key not in planned or not planned[key].blocking:
        raise ValidationError({"item": _("“%(item)s” is not an item of the SDV plan with a value to verify on this form.") % {"item": item}})
    tick = SdvItemTick.objects.select_for_update().filter(entry=entry, item=item, row_id=row_id).first()
    if tick is not None and tick.ticked == ticked:
        return tick  # a second click of the same state (a double post): nothing to record
    if tick is None:
        if not ticked:
            raise ValidationError({"item": _("This item is not ticked.")})
        tick = SdvItemTick(entry=entry, item=item, row_id=row_id)
    tick.ticked, tick.ticked_by, tick.ticked_at, tick.entry_revision = ticked, user, timezone.now(), entry.revision
    tick.value = stored_value(entry, item, row_id)
    tick.reset_at = tick.reset_by = None
    label = planned[key].label + (f" ({_('row %(n)s') % {'n': planned[key].row_number}})" if row_id else "")
    reason = (_("SDV: %(item)s ticked against the source") if ticked else _("SDV: tick of %(item)s withdrawn")) % {"item": label}
    audited_save(tick, user=user, reason=reason)
    sdv_entry_sync(entry=entry, user=user, plan=plan, strict=False)
    return tick


@transaction.atomic
def sdv_entry_sync(*, entry: CrfEntry, user, plan: SdvPlan | None = None, strict: bool = True) -> SdvMark | None:  # noqa: ANN001
    """The form's verification from its ticks: every blocking planned item ticked → verified at the
    current revision (audited); else a verification of the current revision is withdrawn.
    `strict`: say which items are still to tick (ValidationError) instead of returning None."""
    entry = _locked_entry(entry, user)
    blocking = [t for t in sdv_review_items(entry, plan) if t.blocking]
    ticks = sdv_ticks(entry)
    unticked = [t for t in blocking if not (ticks.get(t.key) and ticks[t.key].ticked)]
    mark = SdvMark.objects.select_for_update().filter(entry=entry).first()
    current = mark is not None and mark.state == SdvState.VERIFIED and mark.entry_revision == entry.revision
    if unticked:
        if current:
            mark.state, mark.reset_at, mark.reset_by = SdvState.WITHDRAWN, timezone.now(), user
            audited_save(mark, user=user, reason=_("SDV withdrawn: %(items)s no longer ticked") % {"items": ", ".join(t.label for t in unticked)})
        if strict:
            raise ValidationError({"items": _("Tick every planned item against the source first: %(items)s.") % {
                "items": ", ".join(t.label + (f" ({_('row %(n)s') % {'n': t.row_number}})" if t.row_id else "") for t in unticked)}})
        return None
    if current:
        return mark
    mark = mark or SdvMark(entry=entry)
    mark.state, mark.items, mark.entry_revision = SdvState.VERIFIED, [t.key for t in blocking], entry.revision
    mark.verified_by, mark.verified_at, mark.reset_at, mark.reset_by = user, timezone.now(), None, None
    return audited_save(mark, user=user, reason=_("Source data verified: every planned item ticked (revision %(n)s)") % {"n": entry.revision})


@transaction.atomic
def sdv_verify_items(*, entry: CrfEntry, user, items, plan: SdvPlan | None = None) -> SdvMark:  # noqa: ANN001
    """Tick several planned items at once and verify the form (the review page's "record" button
    without JavaScript): all or nothing, every blocking item ticked now or before."""
    entry = _locked_entry(entry, user)
    keys = list(dict.fromkeys(str(i) for i in items or ()))
    planned = {t.key: t for t in sdv_review_items(entry, plan) if t.blocking}
    untickable = [k for k in keys if k not in planned]
    if untickable:
        raise ValidationError({"items": _("Not items of the SDV plan for this CRF: %(items)s.") % {"items": ", ".join(untickable)}})
    ticks = sdv_ticks(entry)
    missing = [t for k, t in planned.items() if k not in keys and not (ticks.get(k) and ticks[k].ticked)]
    if missing:
        raise ValidationError({"items": _("Tick every planned item against the source before recording: %(items)s.") % {
            "items": ", ".join(t.key for t in missing)}})
    for key in keys:
        tick = planned[key]
        sdv_item_tick(entry=entry, user=user, item=tick.item, row_id=tick.row_id, ticked=True, plan=plan)
    return sdv_entry_sync(entry=entry, user=user, plan=plan)


def sdv_status_text(mark: SdvMark | None, entry: CrfEntry | None = None) -> str:
    """What the CRF page and the admin say about an entry's verification."""
    if mark is None:
        return _("Not verified")
    if mark.state == SdvState.WITHDRAWN:
        who = mark.reset_by.get_full_name() or mark.reset_by.username if mark.reset_by else "?"
        return _("SDV withdrawn on %(date)s by %(user)s (an item unticked)") % {
            "date": timefmt.utc_text(mark.reset_at), "user": who}
    if mark.state == SdvState.RESET or (entry is not None and mark.entry_revision != entry.revision):
        if mark.reset_at is None:
            return _("Verified at revision %(n)s; changed since") % {"n": mark.entry_revision}
        who = mark.reset_by.get_full_name() or mark.reset_by.username if mark.reset_by else "?"
        return _("SDV reset by the change on %(date)s by %(user)s") % {
            "date": timefmt.utc_text(mark.reset_at), "user": who}
    who = mark.verified_by.get_full_name() or mark.verified_by.username
    return _("Source data verified on %(date)s by %(user)s (revision %(n)s)") % {
        "date": timefmt.utc_text(mark.verified_at), "user": who, "n": mark.entry_revision}


def _plan_filter(trial_id: int, plan: SdvPlan | None) -> Q:
    """The entries of one trial that its SDV plan puts in scope."""
    in_trial = Q(participant__trial_id=trial_id)
    if plan is None or plan.scope == SdvScope.ALL:
        return in_trial
    if plan.scope == SdvScope.CRITICAL:
        return in_trial & Q(crf_code__in=list(plan.critical_crfs or []))
    # FIRST_N: the first N participants enrolled at each site, by enrolment date (ties by number).
    first = (
        Participant.objects.filter(trial_id=trial_id, enrolment_date__isnull=False)
        .annotate(rank=Window(RowNumber(), partition_by=[F("site_id")], order_by=[F("enrolment_date").asc(), F("pk").asc()]))
        .filter(rank__lte=plan.first_n or 0)
        .values("pk")
    )
    return in_trial & Q(participant_id__in=first)


def sdv_backlog(user, trial: Trial | None = None) -> QuerySet[CrfEntry]:  # noqa: ANN001
    """Complete entries the user may see that the trial's SDV plan asks to verify and that are not
    verified at their current revision (never verified, reset, or changed since). One SQL query;
    a trial without a plan verifies everything."""
    trials = reviewer_trials(user)
    if trial is not None:
        trials = trials.filter(pk=trial.pk)
    trial_ids = list(trials.values_list("pk", flat=True))
    plans = {plan.trial_id: plan for plan in SdvPlan.objects.filter(trial_id__in=trial_ids)}
    scope = Q(pk__in=[])
    for trial_id in trial_ids:
        scope |= _plan_filter(trial_id, plans.get(trial_id))
    return (
        CrfEntry.objects.filter(scope, status=EntryStatus.COMPLETE, participant__in=participants_for_user(user))
        .exclude(sdv__state=SdvState.VERIFIED, sdv__entry_revision=F("revision"))
        .select_related("participant__site", "participant__trial", "visit")
        .order_by("participant__site__code", "participant__screening_number", "visit__order", "crf_code")
    )


def sdv_plan_errors(trial: Trial, scope: str, critical_crfs: list, critical_items: dict, first_n) -> dict:  # noqa: ANN001
    """What is wrong with a plan (field -> message): for the admin form and the service alike."""
    errors: dict[str, str] = {}
    if scope not in SdvScope.values:
        errors["scope"] = _("Choose a scope.")
    codes = set(VisitCrf.objects.filter(visit_definition__trial=trial, is_active=True).values_list("crf_code", flat=True))
    if not isinstance(critical_crfs, list) or not all(isinstance(c, str) for c in critical_crfs):
        errors["critical_crfs"] = _("A list of CRF codes, e.g. [\"DU_ASSESS\", \"VITALS\"].")
    elif unknown := sorted(set(critical_crfs) - codes):
        errors["critical_crfs"] = _("Not CRFs of this trial: %(codes)s.") % {"codes": ", ".join(unknown)}
    elif scope == SdvScope.CRITICAL and not critical_crfs:
        errors["critical_crfs"] = _("Name the critical CRFs.")
    if not isinstance(critical_items, dict) or not all(isinstance(v, list) for v in critical_items.values()):
        errors["critical_items"] = _("A mapping of CRF code to item names, e.g. {\"VITALS\": [\"systolic_bp\"]}.")
    else:
        from trials.protocol.models import CrfDefinition

        for code, names in critical_items.items():
            if code not in codes:
                errors["critical_items"] = _("Not a CRF of this trial: %(code)s.") % {"code": code}
                break
            crf = CrfDefinition.objects.filter(code=code).order_by("-version").first()
            schema = schema_for(crf)
            unknown = [name for name in names if not _has_item(schema, name)]
            if unknown:
                errors["critical_items"] = _("%(code)s has no item %(items)s.") % {"code": code, "items": ", ".join(unknown)}
                break
    if scope == SdvScope.FIRST_N and not first_n:
        errors["first_n"] = _("Give the number of participants per site.")
    return errors


def _has_item(schema, name: str) -> bool:  # noqa: ANN001
    try:
        schema.item(name)
    except KeyError:
        return False
    return True


@transaction.atomic
def sdv_plan_save(
    *, trial: Trial, user, scope: str, critical_crfs: list | None = None, critical_items: dict | None = None,  # noqa: ANN001
    first_n: int | None = None, reason: str,
) -> SdvPlan:
    """Set what the trial's monitors must verify (data managers of the trial), with a reason."""
    if not study_roles_for_user(user).filter(trial=trial, role=Role.DATA_MANAGER).exists():
        raise PermissionDenied(_("Only the trial's data managers set its SDV plan."))
    if not (reason or "").strip():
        raise ValidationError({"reason": _("Give a reason for the change.")})
    critical_crfs, critical_items = critical_crfs or [], critical_items or {}
    errors = sdv_plan_errors(trial, scope, critical_crfs, critical_items, first_n)
    if errors:
        raise ValidationError(errors)
    plan = SdvPlan.objects.select_for_update().filter(trial=trial).first() or SdvPlan(trial=trial)
    plan.scope, plan.critical_crfs, plan.critical_items = scope, critical_crfs, critical_items
    plan.first_n = first_n if scope == SdvScope.FIRST_N else None
    return audited_save(plan, user=user, reason=reason)
