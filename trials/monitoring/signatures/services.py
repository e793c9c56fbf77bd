"""Electronic signatures (21 CFR Part 11 §11.50, §11.200): an investigator of the participant's
site signs a visit or the whole casebook by re-entering her password. The signature records the
printed name, the date-time and the meaning; a later change to the signed data breaks it
(`signatures_break`, called by `trials.records.services.data_changed` from every write
service), visibly and audited.

What may be signed follows OpenClinica's event sign-off: only data that are complete. A visit is
signed once it took place (a visit date) and every CRF due at it is complete, with no entry left
in progress; the casebook once every visit is done, missed or not done and each done visit could
be signed. Signing under a lock is refused (the data are final: sign before the data manager
locks); a freeze allows it, signing changes no data.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import SYSTEM_USERNAME, audited_save
from trials.records.locks import assert_queries_allowed
from trials.monitoring.models import SignatureFailure
from trials.records.models import SIGNATURE_MEANING, Signature, SignatureState
from trials.participants.models import Participant
from trials.protocol.models import Role, VisitCrf
from trials.protocol.selectors import study_roles_for_user
from trials.visits.models import CALENDAR_STATES, CrfEntry, EntryStatus, Visit

logger = logging.getLogger("edc.security")

# Wrong passwords tolerated before signing is blocked, and for how long (21 CFR 11.300(d)).
MAX_FAILURES = 3
FAILURE_WINDOW = timedelta(minutes=15)


def user_signs_for(user, participant: Participant) -> bool:  # noqa: ANN001
    """An investigator of the participant's site (or of all sites of the trial). Never the system
    user: a signature is a person's act."""
    if not user.is_authenticated or not user.is_active or user.username == SYSTEM_USERNAME:
        return False
    return (
        study_roles_for_user(user)
        .filter(Q(site__isnull=True) | Q(site=participant.site_id), trial=participant.trial_id, role=Role.INVESTIGATOR)
        .exists()
    )


def _visit_blockers(visit: Visit, entries: dict[str, str], required: list[str]) -> list[str]:
    if visit.visit_date is None:
        return [_("%(visit)s has no visit date: only a visit that took place is signed.") % {"visit": visit.label}]
    missing = [code for code in required if entries.get(code) != EntryStatus.COMPLETE]
    in_progress = [code for code, status in entries.items() if status != EntryStatus.COMPLETE and code not in required]
    problems = []
    if missing:
        problems.append(_("%(visit)s: %(crfs)s not complete.") % {"visit": visit.label, "crfs": ", ".join(missing)})
    if in_progress:
        problems.append(
            _("%(visit)s: %(crfs)s still in progress.") % {"visit": visit.label, "crfs": ", ".join(in_progress)}
        )
    return problems


def signature_blockers(participant: Participant, visit: Visit | None = None) -> list[str]:
    """Why the visit (or, with no visit, the casebook) cannot be signed yet; empty when it can."""
    visits = (
        [visit]
        if visit is not None
        else list(Visit.objects.filter(participant=participant).order_by("order", "sequence"))
    )
    entries: dict[int, dict[str, str]] = {}
    for visit_id, code, status in CrfEntry.objects.filter(visit__in=[v.pk for v in visits]).values_list(
        "visit_id", "crf_code", "status"
    ):
        entries.setdefault(visit_id, {})[code] = status
    required: dict[int, list[str]] = {}
    for definition_id, code in (
        VisitCrf.objects.filter(
            visit_definition__in={v.definition_id for v in visits if v.definition_id}, is_active=True, required=True
        )
        .order_by("order")
        .values_list("visit_definition_id", "crf_code")
    ):
        required.setdefault(definition_id, []).append(code)
    problems: list[str] = []
    pending = [v.label for v in visits if v.status in CALENDAR_STATES] if visit is None else []
    if pending:
        problems.append(_("Visits still to do: %(visits)s.") % {"visits": ", ".join(pending)})
    for item in visits:
        if visit is None and item.visit_date is None:
            continue  # missed, not done, or pending (listed above)
        problems += _visit_blockers(item, entries.get(item.pk, {}), required.get(item.definition_id, []))
    return problems


def _blocked_until(user) -> object | None:  # noqa: ANN001
    since = timezone.now() - FAILURE_WINDOW
    failures = list(
        SignatureFailure.objects.filter(user=user, at__gte=since)
        .order_by("-at")
        .values_list("at", flat=True)[:MAX_FAILURES]
    )
    if len(failures) < MAX_FAILURES:
        return None
    return failures[0] + FAILURE_WINDOW


def _record_failure(*, user, participant: Participant, visit: Visit | None) -> None:  # noqa: ANN001
    """The refused attempt, committed on its own (the caller then raises and rolls back)."""
    with transaction.atomic():
        audited_save(
            SignatureFailure(user=user, participant=participant, visit=visit, at=timezone.now()),
            user=user,
            reason=_("Signature refused: wrong password"),
        )
    logger.warning(
        "Signature refused (wrong password): user=%s participant=%s visit=%s",
        user.username,
        participant.pk,
        visit.pk if visit else "-",
    )


def signature_sign(*, participant: Participant, visit: Visit | None = None, user, password: str) -> Signature:  # noqa: ANN001
    """Sign a visit (or, with no visit, the casebook) as the investigator of the site, re-entering
    the password. Refused while the data are incomplete, under a lock, or already signed."""
    participant = Participant.objects.select_related("trial", "site").get(pk=participant.pk)
    if visit is not None and visit.participant_id != participant.pk:
        raise ValidationError(_("This visit is not one of %(number)s's visits.") % {"number": participant.number})
    if not user_signs_for(user, participant):
        raise PermissionDenied(_("Only an investigator of site %(site)s signs.") % {"site": participant.site.code})
    blocked = _blocked_until(user)
    if blocked is not None:
        raise ValidationError(
            {
                "password": _("Too many wrong passwords: signing is blocked until %(time)s UTC.")
                % {"time": f"{blocked:%H:%M}"}
            }
        )
    if not user.check_password(password or ""):
        if transaction.get_connection().in_atomic_block:
            # Inside a caller's transaction the record would roll back with the refusal: log it at least.
            logger.warning("Signature refused (wrong password): user=%s participant=%s", user.username, participant.pk)
        _record_failure(user=user, participant=participant, visit=visit)
        raise ValidationError({"password": _("The password is not correct.")})
    return _sign(participant=participant, visit=visit, user=user)


@transaction.atomic
def _sign(*, participant: Participant, visit: Visit | None, user) -> Signature:  # noqa: ANN001
    # One signing at a time per participant; decisions on current rows.
    Participant.objects.select_for_update(of=("self",)).filter(pk=participant.pk).exists()
    if visit is not None:
        visit = Visit.objects.get(pk=visit.pk)  # judged on the visit as saved, not as the page had it
    assert_queries_allowed(trial=participant.trial_id, participant=participant, visit=visit)
    problems = signature_blockers(participant, visit)
    if problems:
        raise ValidationError(problems)
    current = Signature.objects.filter(participant=participant, visit=visit, state=SignatureState.VALID).first()
    if current is not None:
        raise ValidationError(
            _("Already signed by %(name)s on %(when)s UTC.")
            % {"name": current.printed_name, "when": timefmt.utc_moment(current.signed_at)}
        )
    signature = Signature(
        participant=participant,
        visit=visit,
        signer=user,
        printed_name=user.get_full_name() or user.username,
        meaning=str(SIGNATURE_MEANING),
        signed_at=timezone.now(),
        state=SignatureState.VALID,
    )
    what = visit.label if visit is not None else _("casebook")
    return audited_save(
        signature, user=user, reason=_("Signed (%(what)s): %(meaning)s") % {"what": what, "meaning": signature.meaning}
    )


@transaction.atomic(savepoint=False)  # inside the write service's transaction: no savepoint needed




def participant_signatures(participant: Participant) -> dict:
    """For the pages, in one query: the newest casebook signature and each visit's newest
    signature (valid or broken), and all of them, newest first."""
    signatures = list(
        Signature.objects.filter(participant=participant).select_related("visit").order_by("-signed_at", "-pk")
    )
    visits: dict[int, Signature] = {}
    casebook = None
    for signature in signatures:
        if signature.visit_id is None:
            casebook = casebook or signature
        else:
            visits.setdefault(signature.visit_id, signature)
    return {"casebook": casebook, "visits": visits, "all": signatures}


def participant_review_state(participant: Participant) -> dict:
    """Everything the participant's dashboard shows about signatures and locks, in ONE query (the
    dashboard's query count is bounded, tests/visits): the newest signature of the casebook and of
    each visit, and the active locks and freezes concerning her (`locks.participant_locks` gives
    the same locks on their own).

    The two tables are read as one UNION of rows of the same shape, turned back into unsaved
    Signature and Lock objects (enough for `lock_message` and the templates)."""
    from django.contrib.auth import get_user_model
    from django.db.models import CharField, DateTimeField, IntegerField, Value

    from trials.records.models import Lock, LockKind, LockLevel

    def text(value: str = "") -> Value:
        return Value(value, output_field=CharField())

    columns = ("tag", "pk", "visit_id", "entry_id", "a", "b", "c", "at", "at2", "name1", "name2", "name3")
    signatures = (
        Signature.objects.filter(participant=participant)
        .annotate(
            tag=text("s"),
            entry=Value(None, output_field=IntegerField()),
            n2=text(),
            n3=text(),
        )
        .order_by()
        .values_list(
            "tag",
            "pk",
            "visit_id",
            "entry",
            "state",
            "meaning",
            "broken_reason",
            "signed_at",
            "broken_at",
            "printed_name",
            "n2",
            "n3",
        )
    )
    locks = (
        Lock.objects.filter(
            Q(level=LockLevel.TRIAL) | Q(participant_id=participant.pk),
            trial_id=participant.trial_id,
            released_at__isnull=True,
        )
        .annotate(tag=text("l"), no_at=Value(None, output_field=DateTimeField()))
        .order_by()
        .values_list(
            "tag",
            "pk",
            "visit_id",
            "entry_id",
            "level",
            "kind",
            "reason",
            "locked_at",
            "no_at",
            "locked_by__first_name",
            "locked_by__last_name",
            "locked_by__username",
        )
    )
    rows = [dict(zip(columns, row, strict=True)) for row in signatures.union(locks, all=True)]
    state: dict = {
        "casebook_signature": None,
        "visit_signatures": {},
        "casebook_lock": None,
        "visit_locks": {},
        "entry_locks": {},
    }
    sigs = sorted((r for r in rows if r["tag"] == "s"), key=lambda r: (r["at"], r["pk"]), reverse=True)
    for row in sigs:
        signature = Signature(
            pk=row["pk"],
            participant=participant,
            visit_id=row["visit_id"],
            state=row["a"],
            meaning=row["b"],
            broken_reason=row["c"],
            signed_at=row["at"],
            broken_at=row["at2"],
            printed_name=row["name1"],
        )
        if row["visit_id"] is None:
            state["casebook_signature"] = state["casebook_signature"] or signature
        else:
            state["visit_signatures"].setdefault(row["visit_id"], signature)
    # The strongest first, as locks.covering_locks orders them: locks before freezes, the broadest level.
    rank = {LockLevel.TRIAL: 0, LockLevel.PARTICIPANT: 1, LockLevel.VISIT: 2, LockLevel.ENTRY: 3}
    locks_rows = sorted(
        (r for r in rows if r["tag"] == "l"), key=lambda r: (r["b"] != LockKind.LOCK, rank.get(r["a"], 9), r["at"])
    )
    for row in locks_rows:
        lock = Lock(
            pk=row["pk"],
            trial_id=participant.trial_id,
            level=row["a"],
            kind=row["b"],
            reason=row["c"],
            locked_at=row["at"],
            visit_id=row["visit_id"],
            entry_id=row["entry_id"],
            locked_by=get_user_model()(first_name=row["name1"], last_name=row["name2"], username=row["name3"]),
        )
        if lock.level in (LockLevel.TRIAL, LockLevel.PARTICIPANT):
            state["casebook_lock"] = state["casebook_lock"] or lock
        elif lock.level == LockLevel.VISIT:
            state["visit_locks"].setdefault(lock.visit_id, lock)
        else:
            state["entry_locks"].setdefault(lock.entry_id, lock)
    return state
