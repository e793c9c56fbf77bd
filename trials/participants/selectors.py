"""Reads of participants, scoped to the user's sites."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils.translation import gettext

from edc.audit import SYSTEM_USERNAME
from trials.participants.models import Allocation, AllocationList, Participant, ParticipantStatus, Unblinding
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import sites_for_user, user_holds_role, user_role_grants, user_sees_allocation, user_sees_cohort_placebo

DATA_ENTRY_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR})


def participants_for_user(user) -> QuerySet[Participant]:  # noqa: ANN001
    """Participants at the sites the user may see."""
    return Participant.objects.filter(site__in=sites_for_user(user)).select_related("trial", "site")


def user_enters_data_at(user, participant: Participant) -> bool:  # noqa: ANN001
    """Coordinators and investigators of the participant's site (or of all sites) enter CRF data;
    so does the system user (imports, synthetic demo data), audited as itself."""
    if user.username == SYSTEM_USERNAME:
        return True
    return user_holds_role(user, trial_id=participant.trial_id, site_id=participant.site_id, roles=DATA_ENTRY_ROLES)


def data_entry_annotations(user, participant: Participant) -> dict:  # noqa: ANN001
    """The two checks of every CRF save as annotations, so the save reads them in the same query as
    the CRF it saves: `may_enter` (user_enters_data_at) and `newer_consent` (a consent version the
    participant must re-consent to exists)."""
    from django.db.models import BooleanField, Exists, Value

    from trials.protocol.models import ConsentDocument, StudyRole

    if user.username == SYSTEM_USERNAME:
        may_enter = Value(True, output_field=BooleanField())
    elif not user.is_authenticated:
        may_enter = Value(False, output_field=BooleanField())
    else:
        may_enter = Exists(StudyRole.objects.filter(
            Q(site__isnull=True) | Q(site=participant.site_id, site__is_active=True),
            user=user, is_active=True, trial=participant.trial_id, role__in=DATA_ENTRY_ROLES,
        ))
    if participant.consent_document_id is None:
        newer = Value(False, output_field=BooleanField())
    else:
        newer = Exists(ConsentDocument.objects.filter(
            trial=participant.trial_id, is_active=True, requires_reconsent=True,
            approved_on__gt=ConsentDocument.objects.filter(pk=participant.consent_document_id).values("approved_on")[:1],
        ))
    return {"may_enter": may_enter, "newer_consent": newer}


@dataclass(frozen=True)
class AllocationView:
    """What a user may see of a participant's allocation: the arm, or only the kit code."""

    allocated: bool
    text: str
    reveals_arm: bool
    method: str = ""
    # A placebo inside the dose cohort is concealed from this user (the cohort is shown, not the treatment).
    conceals_placebo: bool = False


_UNREAD = object()


def allocation_for_user(user, participant: Participant, allocation=_UNREAD) -> AllocationView:  # noqa: ANN001
    """The allocation as this user may see it. A blinded user gets the kit code (or "allocated")
    and never the arm; the investigator who unblinded the participant sees the arm she was shown.
    `allocation`: her Allocation (with its arm and slot) or None, when the page read it already
    (the dashboard reads it with the participant, casebook.dashboard)."""
    if allocation is _UNREAD:
        allocation = Allocation.objects.filter(participant=participant).select_related("arm", "slot").first()
    if allocation is None:
        return AllocationView(False, "", False)
    trial = participant.trial
    def unblinded_by_user() -> bool:
        return Unblinding.objects.filter(participant=participant, requested_by=user).exists()

    sees = user_sees_allocation(user, trial) or unblinded_by_user()
    if sees:
        label = allocation.arm.label
        # A placebo inside the cohort: said only to who may see it (or the investigator who unblinded her).
        conceals = False
        if allocation.slot is not None and allocation.method == "cohort":
            if user_sees_cohort_placebo(user, trial) or unblinded_by_user():
                label = (gettext("%(cohort)s – placebo") if allocation.slot.placebo else gettext("%(cohort)s – active")) % {"cohort": label}
            else:
                conceals = True
        if allocation.kit_code:
            label = f"{label} ({allocation.kit_code})"
        return AllocationView(True, label, True, allocation.method, conceals)
    text = allocation.kit_code or gettext("Allocated (blinded)")
    return AllocationView(True, text, False, allocation.method)


def screening_log(user, trial: Trial) -> dict:  # noqa: ANN001
    """CONSORT-style counts per site the user may see: screened, screen failures by reason,
    enrolled, and by arm only for users who may see arms."""
    participants = participants_for_user(user).filter(trial=trial)
    sites = list(sites_for_user(user, trial=trial, include_inactive=True).order_by("code"))
    counts = {
        (row["site_id"], row["status"]): row["n"]
        for row in participants.values("site_id", "status").annotate(n=Count("id"))
    }
    failure_reasons: dict[str, int] = {}
    for reason in participants.filter(status=ParticipantStatus.SCREEN_FAILURE).values_list("status_reason", flat=True):
        for part in (reason or gettext("no reason given")).split(";"):
            key = part.strip().removeprefix(gettext("Not eligible:")).strip() or gettext("no reason given")
            failure_reasons[key] = failure_reasons.get(key, 0) + 1
    by_arm: list[tuple[str, int]] = []
    if user_sees_allocation(user, trial):
        by_arm = [
            (row["arm__label"], row["n"])
            for row in Allocation.objects.filter(participant__in=participants).values("arm__label").annotate(n=Count("id")).order_by("arm__label")
        ]
    elif trial.arms.exists():
        by_arm = [(gettext("Allocated (arms blinded)"), Allocation.objects.filter(participant__in=participants).count())]
    statuses = list(ParticipantStatus)
    rows = []
    for site in sites:
        per = {s.value: counts.get((site.pk, s.value), 0) for s in statuses}
        rows.append({"site": site, "screened": sum(per.values()), "per": per})
    totals = {s.value: sum(r["per"][s.value] for r in rows) for s in statuses}
    return {
        "rows": rows,
        "statuses": statuses,
        "totals": totals,
        "screened": sum(totals.values()),
        "enrolled_ever": sum(v for k, v in totals.items() if k not in (ParticipantStatus.SCREENING, ParticipantStatus.SCREEN_FAILURE)),
        "failure_reasons": sorted(failure_reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        "by_arm": by_arm,
    }


def participant_summary(user, participant: Participant, *, next_visit, allocation=_UNREAD) -> dict:  # noqa: ANN001
    """The head of the participant dashboard: allocation as the user may see it, the next visit
    (given by the page, trials.visits.selectors.next_visit), what is missing before the next step,
    and the actions the user may take now. `allocation`: as allocation_for_user takes it."""
    from trials.participants import services

    S = ParticipantStatus
    trial = participant.trial
    if user.username == SYSTEM_USERNAME:
        site_roles = set(DATA_ENTRY_ROLES)
    else:
        site_roles = {  # from the request's memo of her roles (protocol.selectors.user_role_grants)
            grant.role for grant in user_role_grants(user)
            if grant.trial_id == participant.trial_id and grant.site_id in (None, participant.site_id)
        }
    acts = bool(site_roles & DATA_ENTRY_ROLES)
    investigator = Role.INVESTIGATOR in site_roles
    allocation = allocation_for_user(user, participant, allocation)
    consent_problem = services.consent_problem(participant)

    actions: list[tuple[str, str, str]] = []
    status = participant.status
    if acts and status not in (S.SCREEN_FAILURE, S.COMPLETED, S.WITHDRAWN, S.DIED):
        if consent_problem:
            actions.append(("participant_consent", gettext("Record consent"), "primary"))
        if status == S.SCREENING:
            actions.append(("participant_eligibility", gettext("Eligibility checklist"), "outline-primary"))
            actions.append(("participant_enrol", gettext("Enrol"), "primary"))
            actions.append(("participant_screen_fail", gettext("Screen failure"), "outline-secondary"))
        if status in (S.ENROLLED, S.ON_TREATMENT) and not allocation.allocated:
            if trial.design == "randomized":
                actions.append(("participant_allocate", gettext("Randomize"), "primary"))
            elif trial.design == "open_label" and investigator:
                actions.append(("participant_allocate", gettext("Assign an arm"), "primary"))
        if status == S.ENROLLED and (allocation.allocated or trial.design == "registry"):
            actions.append(("participant_treatment", gettext("Record the first treatment"), "outline-primary"))
        if status in (S.ENROLLED, S.ON_TREATMENT):
            actions.append(("participant_anchor", gettext("Correct a date"), "outline-secondary"))
        if status in (S.ENROLLED, S.ON_TREATMENT, S.LOST_TO_FOLLOW_UP):
            actions.append(("participant_status", gettext("End of participation"), "outline-secondary"))
    if status not in (S.SCREENING, S.SCREEN_FAILURE) or participant.consent_date:
        actions.append(("participant_aes", gettext("Adverse events"), "outline-primary"))
    if investigator and allocation.allocated and ((trial.is_blinded and not allocation.reveals_arm) or allocation.conceals_placebo):
        actions.append(("participant_unblind", gettext("Emergency unblinding"), "outline-danger"))
    return {"allocation": allocation, "next_visit": next_visit, "actions": actions, "can_act": acts, "consent_problem": consent_problem}


def allocation_list_usage(allocation_list: AllocationList) -> list[dict]:
    """Slots and used slots per stratum of an allocation list: never an arm, a kit code or the seed
    (the allocation-list page shows it to the blinded data manager)."""
    return list(
        allocation_list.slots.values("stratum").annotate(total=Count("id"), used=Count("id", filter=Q(allocation__isnull=False))).order_by("stratum")
    )
