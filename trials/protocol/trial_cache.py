"""The trial's settings cached across requests (issue 22: "cache the trial's settings per version").

Every coordinator request needs its trial (masking, numbering, randomisation, safety reporting,
score settings, quality rules: nine JSON columns decoded per row). Its row changes only when the
trial file is loaded again, amended, or edited in the admin, so the pages that look up one visit or
participant read it from Django's cache (Redis in production: shared by every web node) instead of
joining it. The entry is keyed by the trial's id and the version of the cache layout, holds the
whole Trial instance (its `source_sha256` names the trial file version it came from), and is deleted
whenever the Trial row is saved (load, amendment, admin): at the save, and again once the
transaction commits, so a request that read the old row meanwhile cannot keep it cached."""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_save

from trials.protocol.models import Trial

LAYOUT = 1  # bump when Trial's fields change shape: entries of the old layout are never read
TIMEOUT = 3600  # an hour at most, whatever happens to an invalidation


def _key(trial_id: int) -> str:
    return f"edc:trial:{LAYOUT}:{trial_id}"


_cached_here: set[int] = set()  # the ids this process cached (trial_cache_clear: the tests)


def trial_cached(trial_id: int) -> Trial:
    """The trial, from the cache when it holds it (no query), else read and cached."""
    trial = cache.get(_key(trial_id))
    if trial is None:
        trial = Trial.objects.get(pk=trial_id)
        cache.set(_key(trial_id), trial, TIMEOUT)
        _cached_here.add(trial_id)
    return trial


def trial_forget(trial_id: int) -> None:
    cache.delete(_key(trial_id))


def trial_cache_clear() -> None:
    """Forget every trial this process cached. The tests call it after each test: a rolled-back
    test's trial id is given again to the next test's trial on SQLite, and no signal says so."""
    for trial_id in list(_cached_here):
        trial_forget(trial_id)
    _cached_here.clear()


def attach_trial(obj):  # noqa: ANN001, ANN201
    """Give `obj` (a participant, or anything with trial_id) its cached trial; returns obj."""
    if obj is not None:
        obj.trial = trial_cached(obj.trial_id)
    return obj


def _forget_on_save(sender, instance: Trial, **kwargs) -> None:  # noqa: ANN001, ANN003
    trial_forget(instance.pk)
    transaction.on_commit(lambda: trial_forget(instance.pk))


post_save.connect(_forget_on_save, sender=Trial, dispatch_uid="edc_trial_cache_forget")
