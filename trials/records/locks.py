"""Locks and freezes of trial data: a CRF entry, a visit, a participant or a whole trial
(database lock).

Both stop every change of the data they cover; a freeze still lets reviewers raise and answer
queries, a lock does not (the data are final). Every write service of trial data calls
`assert_writable` first (the CRF first save reads the same check inside its one query, see
`covering_lock_sql`), so no page, admin action, import or task can change locked data. Only a
data manager of the trial applies or releases a lock, with a reason; both are audited.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import audited_save
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import study_roles_for_user
from trials.records.models import Lock, LockKind, LockLevel

# The broadest lock first: its message says the most about why nothing can be changed.
_LEVEL_ORDER = {LockLevel.TRIAL: 0, LockLevel.PARTICIPANT: 1, LockLevel.VISIT: 2, LockLevel.ENTRY: 3}


def _pk(value) -> int | None:  # noqa: ANN001
    return getattr(value, "pk", value)


def _covering_q(*, participant=None, visit=None, entry=None) -> Q:  # noqa: ANN001
    condition = Q(level=LockLevel.TRIAL)
    if _pk(participant) is not None:
        condition |= Q(level=LockLevel.PARTICIPANT, participant_id=_pk(participant))
    if _pk(visit) is not None:
        condition |= Q(level=LockLevel.VISIT, visit_id=_pk(visit))
    if _pk(entry) is not None:
        condition |= Q(level=LockLevel.ENTRY, entry_id=_pk(entry))
    return condition


def _strongest_first(locks: QuerySet[Lock]) -> QuerySet[Lock]:
    """Locks before freezes (a lock also stops queries), then the broadest level."""
    return locks.annotate(
        _kind_rank=Case(When(kind=LockKind.LOCK, then=Value(0)), default=Value(1), output_field=IntegerField()),
        _level_rank=Case(
            *[When(level=level, then=Value(rank)) for level, rank in _LEVEL_ORDER.items()], output_field=IntegerField()
        ),
    ).order_by("_kind_rank", "_level_rank", "locked_at")


def _resolve(trial, participant, visit, entry, adverse_event) -> tuple:  # noqa: ANN001
    """(trial id, participant id, visit id, entry id) from whatever the caller has: an entry knows
    its visit and participant, an AE its participant, a participant her trial."""
    if entry is not None and not isinstance(entry, int):
        visit = visit if visit is not None else entry.visit_id
        participant = participant if participant is not None else entry.participant
    if adverse_event is not None and participant is None:
        participant = adverse_event.participant
    if visit is not None and participant is None and not isinstance(visit, int):
        participant = visit.participant
    if trial is None:
        if participant is None or isinstance(participant, int):
            raise TypeError("the trial (or a participant object) is needed to find the locks covering the data")
        trial = participant.trial_id
    return _pk(trial), _pk(participant), _pk(visit), _pk(entry)


def covering_locks(*, trial=None, participant=None, visit=None, entry=None, adverse_event=None) -> QuerySet[Lock]:  # noqa: ANN001
    """The active locks and freezes that cover the target (the trial, the participant, the visit
    or the entry given; pass what the data belong to), the strongest first. An adverse event
    belongs to its participant (AEs are not recorded at a visit)."""
    trial_id, participant_id, visit_id, entry_id = _resolve(trial, participant, visit, entry, adverse_event)
    return _strongest_first(
        Lock.objects.filter(
            _covering_q(participant=participant_id, visit=visit_id, entry=entry_id),
            trial_id=trial_id,
            released_at__isnull=True,
        ).select_related("locked_by")
    )


def lock_message(lock: Lock) -> str:
    """ "This visit is locked by Sophie Laurent on 2 May 2026 09:15 UTC: final analysis." for the
    pages. The moment in UTC, labelled: a lock has no site of its own (a trial's spans zones), and
    its UTC date alone read as the site's day was a day off around midnight."""
    who = lock.locked_by.get_full_name() or lock.locked_by.username
    values = {"who": who, "date": timefmt.utc_text(lock.locked_at), "reason": lock.reason}
    lock_texts = {
        LockLevel.TRIAL: _("This trial is locked (database lock) by %(who)s on %(date)s: %(reason)s"),
        LockLevel.PARTICIPANT: _("This participant is locked by %(who)s on %(date)s: %(reason)s"),
        LockLevel.VISIT: _("This visit is locked by %(who)s on %(date)s: %(reason)s"),
        LockLevel.ENTRY: _("This CRF entry is locked by %(who)s on %(date)s: %(reason)s"),
    }
    freeze_texts = {
        LockLevel.TRIAL: _(
            "This trial is frozen by %(who)s on %(date)s: %(reason)s (no data changes; queries remain possible)"
        ),
        LockLevel.PARTICIPANT: _(
            "This participant is frozen by %(who)s on %(date)s: %(reason)s (no data changes; queries remain possible)"
        ),
        LockLevel.VISIT: _(
            "This visit is frozen by %(who)s on %(date)s: %(reason)s (no data changes; queries remain possible)"
        ),
        LockLevel.ENTRY: _(
            "This CRF entry is frozen by %(who)s on %(date)s: %(reason)s (no data changes; queries remain possible)"
        ),
    }
    texts = lock_texts if lock.kind == LockKind.LOCK else freeze_texts
    return texts[lock.level] % values


def lock_covering(*, trial=None, participant=None, visit=None, entry=None, adverse_event=None) -> Lock | None:  # noqa: ANN001
    """The strongest active lock or freeze covering the target, or None (one query)."""
    return covering_locks(
        trial=trial, participant=participant, visit=visit, entry=entry, adverse_event=adverse_event
    ).first()


def assert_writable(*, trial=None, participant=None, visit=None, entry=None, adverse_event=None) -> None:  # noqa: ANN001
    """Refuse (ValidationError with the lock's who, when and why) any change of data that an
    active lock or freeze covers. Called first by every write service of trial data."""
    lock = lock_covering(trial=trial, participant=participant, visit=visit, entry=entry, adverse_event=adverse_event)
    if lock is not None:
        raise ValidationError(lock_message(lock), code="locked")


def assert_queries_allowed(*, trial=None, participant=None, visit=None, entry=None, adverse_event=None) -> None:  # noqa: ANN001
    """Refuse queries (and other review actions: signing, deviations) on data under a lock; a
    freeze allows them."""
    lock = (
        covering_locks(trial=trial, participant=participant, visit=visit, entry=entry, adverse_event=adverse_event)
        .filter(kind=LockKind.LOCK)
        .first()
    )
    if lock is not None:
        raise ValidationError(lock_message(lock), code="locked")


def raise_for_lock_id(lock_id: int | None) -> None:
    """For saves that read the id of a covering lock inside their own query: refuse with its message."""
    if lock_id is not None:
        raise ValidationError(lock_message(Lock.objects.select_related("locked_by").get(pk=lock_id)), code="locked")


def covering_lock_sql(*, trial_id: int, participant_id: int, visit_id: int | None) -> tuple[str, list]:
    """A scalar SQL subquery giving the id of an active lock or freeze covering a new entry of the
    visit (trial, participant or visit level; a new entry has no entry-level lock), else NULL.

    For `trials.visits.services._new_entry_checked`, which reads the CRF and every check of a
    first save in one statement (the coordinator's most frequent write, docs/benchmarks.md)."""
    table = Lock._meta.db_table
    sql = (
        f"(SELECT l.id FROM {table} l WHERE l.trial_id = %s AND l.released_at IS NULL"
        " AND (l.level = %s OR (l.level = %s AND l.participant_id = %s) OR (l.level = %s AND l.visit_id = %s))"
        " ORDER BY l.id LIMIT 1)"
    )
    return sql, [trial_id, LockLevel.TRIAL, LockLevel.PARTICIPANT, participant_id, LockLevel.VISIT, visit_id or 0]


def covering_lock_annotation(*, trial_id: int, participant_id: int, visit_id: int) -> Subquery:
    """The same check as an annotation of a CrfEntry query (the entry is the outer row): the id of
    an active lock or freeze covering the entry, its visit, its participant or the trial."""
    condition = (
        Q(level=LockLevel.TRIAL)
        | Q(level=LockLevel.PARTICIPANT, participant_id=participant_id)
        | Q(level=LockLevel.VISIT, visit_id=visit_id)
        | Q(level=LockLevel.ENTRY, entry_id=OuterRef("pk"))
    )
    return Subquery(
        Lock.objects.filter(condition, trial_id=trial_id, released_at__isnull=True).order_by("pk").values("pk")[:1]
    )


def strongest_lock_sql(*, trial_id: int, participant_id: int, visit_id: int, entry_column: str) -> tuple[str, list]:
    """`lock_covering`'s choice for an entry (locks before freezes, then the broadest level, then the
    oldest) as a scalar SQL subquery, NULL when none covers it; `entry_column` is the outer query's
    entry id column. The CRF page reads it with its entry, in the same statement, and reads the lock
    itself only when there is one (docs/architecture.md "Light requests")."""
    table = Lock._meta.db_table
    ranks = " ".join(f"WHEN '{level.value}' THEN {rank}" for level, rank in _LEVEL_ORDER.items())  # constants, not input
    sql = (
        f"(SELECT l.id FROM {table} l WHERE l.trial_id = %s AND l.released_at IS NULL"
        " AND (l.level = %s OR (l.level = %s AND l.participant_id = %s) OR (l.level = %s AND l.visit_id = %s)"
        f" OR (l.level = %s AND l.entry_id = {entry_column}))"
        f" ORDER BY CASE WHEN l.kind = %s THEN 0 ELSE 1 END, CASE l.level {ranks} END, l.locked_at LIMIT 1)"
    )
    params = [trial_id, LockLevel.TRIAL, LockLevel.PARTICIPANT, participant_id, LockLevel.VISIT, visit_id, LockLevel.ENTRY, LockKind.LOCK]
    return sql, params


def covering_lock_exists(*, trial, participant=None, visit=None, entry=None) -> Exists:  # noqa: ANN001
    """`Exists` of an active lock or freeze covering the target, to annotate a query the caller
    runs anyway (the schedule reads its visit definitions with it: no extra query)."""
    trial_id, participant_id, visit_id, entry_id = _resolve(trial, participant, visit, entry, None)
    return Exists(
        Lock.objects.filter(
            _covering_q(participant=participant_id, visit=visit_id, entry=entry_id),
            trial_id=trial_id,
            released_at__isnull=True,
        )
    )


# --- Reads for pages -----------------------------------------------------------------------


def participant_locks(participant) -> dict:  # noqa: ANN001
    """The active locks and freezes that concern a participant's pages, in one query:
    `casebook` (the strongest trial- or participant-level one), `visits` and `entries` (by id)."""
    locks = list(
        _strongest_first(
            Lock.objects.filter(
                Q(level=LockLevel.TRIAL) | Q(participant_id=participant.pk),
                trial_id=participant.trial_id,
                released_at__isnull=True,
            ).select_related("locked_by")
        )
    )
    result: dict = {"casebook": None, "visits": {}, "entries": {}}
    for lock in locks:
        if lock.level in (LockLevel.TRIAL, LockLevel.PARTICIPANT):
            result["casebook"] = result["casebook"] or lock
        elif lock.level == LockLevel.VISIT:
            result["visits"].setdefault(lock.visit_id, lock)
        else:
            result["entries"].setdefault(lock.entry_id, lock)
    return result


# --- Writes (data managers) ----------------------------------------------------------------


def user_manages_data(user, trial_id: int, site_id: int | None = None) -> bool:  # noqa: ANN001
    """A data manager of the trial (all sites, or the given site for a site-bound role)."""
    where = Q(site__isnull=True) if site_id is None else Q(site__isnull=True) | Q(site_id=site_id)
    return study_roles_for_user(user).filter(where, trial_id=trial_id, role=Role.DATA_MANAGER).exists()


def _target(level: str, target) -> dict:  # noqa: ANN001
    """The Lock fields for a target of the level: trial, and participant/visit/entry below it."""
    # The models a Lock points at, read from its own foreign keys (records imports no upper app).
    expected = {
        LockLevel.TRIAL: Trial,
        LockLevel.PARTICIPANT: Lock._meta.get_field("participant").related_model,
        LockLevel.VISIT: Lock._meta.get_field("visit").related_model,
        LockLevel.ENTRY: Lock._meta.get_field("entry").related_model,
    }
    if level not in expected:
        raise ValidationError({"level": _("Choose the entry, visit, participant or trial level.")})
    if not isinstance(target, expected[level]) or target.pk is None:
        raise ValidationError(
            _("A %(level)s lock needs a saved %(model)s.")
            % {"level": LockLevel(level).label, "model": expected[level]._meta.verbose_name}
        )
    if level == LockLevel.TRIAL:
        return {"trial_id": target.pk}
    if level == LockLevel.PARTICIPANT:
        return {"trial_id": target.trial_id, "participant_id": target.pk, "site_id": target.site_id}
    if level == LockLevel.VISIT:
        participant = target.participant
        return {
            "trial_id": participant.trial_id,
            "participant_id": participant.pk,
            "visit_id": target.pk,
            "site_id": participant.site_id,
        }
    participant = target.participant
    return {
        "trial_id": participant.trial_id,
        "participant_id": participant.pk,
        "visit_id": target.visit_id,
        "entry_id": target.pk,
        "site_id": participant.site_id,
    }


@transaction.atomic
def lock_apply(*, level: str, target, kind: str, user, reason: str) -> Lock:  # noqa: ANN001
    """Lock or freeze an entry, a visit, a participant or a trial (a data manager of the trial,
    with a reason). A visit or entry lock also records the participant, so a participant's locks
    are read in one query."""
    fields = _target(level, target)
    site_id = fields.pop("site_id", None)
    if not user_manages_data(user, fields["trial_id"], site_id):
        raise PermissionDenied(_("Only a data manager of the trial locks or freezes its data."))
    if kind not in LockKind.values:
        raise ValidationError({"kind": _("Choose a lock or a freeze.")})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the lock.")})
    # One lock operation at a time per trial: two data managers cannot lock the same target twice.
    Trial.objects.select_for_update().filter(pk=fields["trial_id"]).exists()
    same = (
        Lock.objects.filter(level=level, kind=kind, released_at__isnull=True, **fields)
        .select_related("locked_by")
        .first()
    )
    if same is not None:
        raise ValidationError(_("Already done. %(lock)s") % {"lock": lock_message(same)})
    lock = Lock(level=level, kind=kind, reason=reason, locked_by=user, locked_at=timezone.now(), **fields)
    verb = _("Locked") if kind == LockKind.LOCK else _("Frozen")
    return audited_save(lock, user=user, reason=f"{verb}: {reason}")


@transaction.atomic
def lock_release(*, lock: Lock, user, reason: str) -> Lock:  # noqa: ANN001
    """Release a lock or freeze (a data manager of the trial, with a reason, audited)."""
    lock = Lock.objects.select_for_update(of=("self",)).select_related("participant").get(pk=lock.pk)
    site_id = lock.participant.site_id if lock.participant_id else None
    if not user_manages_data(user, lock.trial_id, site_id):
        raise PermissionDenied(_("Only a data manager of the trial releases a lock."))
    if lock.released_at is not None:
        raise ValidationError(
            _("This lock was already released on %(date)s.") % {"date": timefmt.date_text(lock.released_at.date())}
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for releasing the lock.")})
    lock.released_by, lock.released_at, lock.release_reason = user, timezone.now(), reason
    return audited_save(lock, user=user, reason=_("Released: %(reason)s") % {"reason": reason})
