"""Source data verification: the monitor's marks, their reset by later edits, the trial's SDV
plan and the backlog it defines.

A mark records the entry's revision it verified. Any save raises the revision, so "verified at
its current revision" is the whole test; `sdv_entry_changed` (called by
trials.records.services.data_changed after every save of an entry) also turns the mark into a
visible, audited reset: "SDV reset by the change on <date> by <user>".
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.monitoring.models import SdvPlan, SdvScope
from trials.records.models import SdvMark, SdvState
from trials.monitoring.queries.selectors import reviewer_trials, user_verifies_at
from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Role, Trial, VisitCrf
from trials.protocol.selectors import study_roles_for_user
from trials.protocol.engine import schema_for
from trials.visits.models import CrfEntry, EntryStatus


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
    missing = [name for name in sdv_critical_items(entry) if name not in items]
    if missing:
        raise ValidationError({"items": _("Verify the critical items of %(crf)s one by one: %(items)s.") % {
            "crf": schema.code, "items": ", ".join(missing)}})
    mark = SdvMark.objects.select_for_update().filter(entry=entry).first() or SdvMark(entry=entry)
    mark.state, mark.items, mark.entry_revision = SdvState.VERIFIED, items, entry.revision
    mark.verified_by, mark.verified_at, mark.reset_at, mark.reset_by = user, timezone.now(), None, None
    return audited_save(mark, user=user, reason=_("Source data verified (revision %(n)s)") % {"n": entry.revision})




def sdv_planned_items(entry: CrfEntry, plan: SdvPlan | None = None, *, shown: set[str] | None = None) -> list[str]:
    """The items a monitor ticks one by one on the form-view review: the plan's critical items of
    this CRF when it names some (a partial SDV plan, e.g. critical items only), else every required
    input item of the CRF at the top level (full SDV). `shown` leaves out the items hidden by
    branching (nothing to compare with the source)."""
    critical = sdv_critical_items(entry, plan)
    if critical:
        return critical
    schema = schema_for(entry.crf)
    return [i.name for i in schema.items if i.is_input and i.required and i.type != "repeating_group" and (shown is None or i.name in shown)]


@transaction.atomic
def sdv_verify_items(*, entry: CrfEntry, user, items, plan: SdvPlan | None = None, shown: set[str] | None = None) -> SdvMark:  # noqa: ANN001
    """Verify an entry from the form-view review: every planned item (`sdv_planned_items`) must be
    ticked; then the same audited mark as `sdv_verify`, with the ticked items recorded."""
    ticked = list(dict.fromkeys(str(i) for i in items or ()))
    planned = sdv_planned_items(entry, plan, shown=shown)
    untickable = [name for name in ticked if name not in planned]
    if untickable:
        raise ValidationError({"items": _("Not items of the SDV plan for this CRF: %(items)s.") % {"items": ", ".join(untickable)}})
    missing = [name for name in planned if name not in ticked]
    if missing:
        raise ValidationError({"items": _("Tick every planned item against the source before recording: %(items)s.") % {"items": ", ".join(missing)}})
    return sdv_verify(entry=entry, user=user, items=ticked)


def sdv_status_text(mark: SdvMark | None, entry: CrfEntry | None = None) -> str:
    """What the CRF page and the admin say about an entry's verification."""
    if mark is None:
        return _("Not verified")
    if mark.state == SdvState.RESET or (entry is not None and mark.entry_revision != entry.revision):
        if mark.reset_at is None:
            return _("Verified at revision %(n)s; changed since") % {"n": mark.entry_revision}
        who = mark.reset_by.get_full_name() or mark.reset_by.username if mark.reset_by else "?"
        return _("SDV reset by the change on %(date)s by %(user)s") % {
            "date": date_format(timezone.localtime(mark.reset_at), "Y-m-d H:i"), "user": who}
    who = mark.verified_by.get_full_name() or mark.verified_by.username
    return _("Source data verified on %(date)s by %(user)s (revision %(n)s)") % {
        "date": date_format(timezone.localtime(mark.verified_at), "Y-m-d H:i"), "user": who, "n": mark.entry_revision}


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
