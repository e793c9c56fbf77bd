"""Coalesced background runs per trial: many requests, one run at a time, never a change missed.

A state row per trial (a model with `trial` one-to-one, `queued`, `dirty` and `runs`; optionally
`queued_at`) decides, not the Celery message:

- `coalesced_request` marks the row dirty and enqueues a task (at the commit) only when none is
  queued or running; a request during a run only sets `dirty`.
- `coalesced_run` (the task's body) clears `dirty`, runs, then either releases the queue or, when a
  request came meanwhile, enqueues exactly one more run (so the data changed during a run are
  always read by a later one).

The state row is locked (select_for_update) only around those bookkeeping steps, never during the
run itself. Used by the safety summaries (trials.safety.summary) and the data-quality rules
(trials.monitoring.quality.services).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction
from django.utils import timezone

R = TypeVar("R")


def locked_state(model: type[models.Model], trial_id: int) -> Any:  # noqa: ANN401
    """The trial's state row, created if missing, locked until the end of the caller's transaction."""
    try:
        with transaction.atomic():
            state, _ = model.objects.select_for_update().get_or_create(trial_id=trial_id)
    except IntegrityError:  # created by a concurrent transaction between our get and create
        state = model.objects.select_for_update().get(trial_id=trial_id)
    return state


def _enqueue_at_commit(enqueue: Callable[[int], Any], trial_id: int) -> None:
    transaction.on_commit(lambda: enqueue(trial_id))


@transaction.atomic
def coalesced_request(
    model: type[models.Model], trial_id: int, enqueue: Callable[[int], Any], *, stale_after: timedelta | None = None,
) -> bool:
    """Ask for a run: enqueue one unless one is queued or running. With `stale_after` (a model with
    `queued_at`), a run queued longer than that is taken as lost (its message dropped with its
    worker) and a new one is enqueued. Returns whether a task was enqueued."""
    state = locked_state(model, trial_id)
    now = timezone.now()
    enqueue_now = not state.queued
    if stale_after is not None and state.queued and (state.queued_at is None or now - state.queued_at > stale_after):
        enqueue_now = True
    state.dirty, state.queued = True, True
    fields = ["dirty", "queued"]
    if enqueue_now and hasattr(state, "queued_at"):
        state.queued_at = now
        fields.append("queued_at")
    state.save(update_fields=fields)
    if enqueue_now:
        _enqueue_at_commit(enqueue, trial_id)
    return enqueue_now


def coalesced_run(
    model: type[models.Model], trial_id: int, run: Callable[[], R | None], enqueue: Callable[[int], Any],
    *, record: Callable[[Any, R | None], list[str]] | None = None,
) -> bool:
    """One coalesced run: `run()` (None when the trial is gone: nothing follows), then `record(state,
    result)` may store what the run found on the locked row (returns the fields it set). Returns
    whether another run follows."""
    with transaction.atomic():
        state = locked_state(model, trial_id)
        state.dirty = False
        state.save(update_fields=["dirty"])
    result = run()
    with transaction.atomic():
        state = locked_state(model, trial_id)
        again = state.dirty and result is not None
        state.queued = again
        state.runs += 1
        fields = ["queued", "runs", *(record(state, result) if record else [])]
        if again and hasattr(state, "queued_at"):
            state.queued_at = timezone.now()
            fields.append("queued_at")
        state.save(update_fields=fields)
        if again:
            _enqueue_at_commit(enqueue, trial_id)
    return again
