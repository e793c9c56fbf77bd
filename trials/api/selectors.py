"""What an API call may read: the pages' selectors (sites, participants, queries), narrowed to
the trials the token names. Nothing here widens a page's scope: an object outside it is absent,
so the API answers 404 as the pages do."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from django.db.models import Q, QuerySet

from trials.api.models import ApiToken
from trials.exports.selectors import BLINDED_WORD
from trials.monitoring.models import Query
from trials.monitoring.queries.selectors import queries_for_user
from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Arm, CrfDefinition, Site, Trial, TrialCrf, VisitCrf, VisitDefinition
from trials.protocol.selectors import sites_for_user, trials_for_user, user_sees_allocation
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, Visit


def api_trials(user, token: ApiToken | None) -> QuerySet[Trial]:
    """The user's trials (trials_for_user), only those the token names."""
    trials = trials_for_user(user)
    if token is not None:
        trials = trials.filter(pk__in=token.trials.values("pk"))
    return trials


def api_sites(user, token: ApiToken | None) -> QuerySet[Site]:
    return sites_for_user(user).filter(trial__in=api_trials(user, token))


SCOPE_COLUMNS = ("pk", "code", "trial_id", "trial__code", "trial__masked_roles")
# (database alias, user id, superuser, token id) -> the scope query's SQL, parameters and column order.
_scope_sql: dict[tuple, tuple[str, tuple, list[int]]] = {}
SCOPE_SQL_KEPT = 1000


def api_scope_sites(user, token: ApiToken | None) -> list[Site]:
    """api_sites(user, token) as a list with their trials, in one query: the user's sites
    (sites_for_user: of her active roles' trials, hence of trials_for_user's) in the trials the
    token names, without trials_for_user's second reading of her roles. Only the columns the scope
    and the arm masks read (Trial.is_blinded: masked_roles; any other field is deferred and read
    if asked for, as with only()).

    The ORM builds and compiles this query (sites_for_user's nested role rules) once per user,
    superuser flag and token in a process, then only runs its SQL: building it cost more than
    running it on every API call (docs/benchmarks.md, the API). What is kept is SQL text whose
    parameters are that user's and token's ids, never a result: every call reads the roles,
    sites and token trials as they are now."""
    alias = router.db_for_read(Site)
    key = (alias, user.pk, user.is_superuser, token.pk if token is not None else None)
    compiled = _scope_sql.get(key)
    if compiled is None:
        sites = sites_for_user(user)
        if token is not None:
            sites = sites.filter(trial__in=token.trials.values("pk"))
        query = sites.order_by("pk").values_list(*SCOPE_COLUMNS).query
        names = [*query.extra_select, *query.values_select, *query.annotation_select]  # the SELECT's order
        try:
            compiled = (*query.get_compiler(using=alias).as_sql(), [names.index(name) for name in SCOPE_COLUMNS])
        except EmptyResultSet:  # a query Django knows to be empty (no user): no SQL to run
            compiled = ("", (), [])
        if len(_scope_sql) >= SCOPE_SQL_KEPT:
            _scope_sql.clear()
        _scope_sql[key] = compiled
    connection = connections[alias]
    masked_roles = Trial._meta.get_field("masked_roles")
    sql, params, order = compiled
    if not sql:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    trials: dict[int, Trial] = {}
    out = []
    for row in rows:
        pk, code, trial_id, trial_code, roles = (row[i] for i in order)
        trial = trials.get(trial_id)
        if trial is None:
            roles = masked_roles.from_db_value(roles, None, connection)
            trial = trials[trial_id] = _partial(Trial, alias, {"id": trial_id, "code": trial_code, "masked_roles": roles})
        site = _partial(Site, alias, {"id": pk, "code": code, "trial_id": trial_id})
        site.trial = trial
        out.append(site)
    return out


def _partial(model, alias: str, values: dict):  # noqa: ANN001, ANN202
    """An instance of `model` as only() reads it: these attributes set, every other field deferred
    (read from the database if asked for)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]  # from_db takes them in this order
    return model.from_db(alias, names, [values[name] for name in names])


def api_visit_definitions(user, token: ApiToken | None) -> QuerySet[VisitDefinition]:
    return VisitDefinition.objects.filter(trial__in=api_trials(user, token), is_active=True).select_related("trial")


def api_crfs(user, token: ApiToken | None) -> QuerySet[CrfDefinition]:
    """Every version of the CRFs the user's trials use (at a visit, as a log or unscheduled)."""
    trials = api_trials(user, token)
    return CrfDefinition.objects.filter(
        Q(code__in=VisitCrf.objects.filter(visit_definition__trial__in=trials).values("crf_code"))
        | Q(code__in=TrialCrf.objects.filter(trial__in=trials).values("crf_code"))
    )


def api_participants(user, token: ApiToken | None) -> QuerySet[Participant]:
    return participants_for_user(user).filter(trial__in=api_trials(user, token))


def api_visits(user, token: ApiToken | None) -> QuerySet[Visit]:
    return Visit.objects.filter(participant__in=api_participants(user, token)).select_related(
        "participant__trial", "participant__site", "definition"
    )


def api_entries(user, token: ApiToken | None, sites: list[Site] | None = None) -> QuerySet[CrfEntry]:
    """The entries of api_participants, scoped by the ids of the user's sites and trials read first:
    the nested subqueries of the role rules cost PostgreSQL ~35 ms of planning on every page of a
    large trial (tests/bench/bench_api.py), api_scope_sites' plain query does not. `sites`: api_sites(user,
    token) already read in this request (the view's scope), so they are not read again."""
    if sites is None:
        sites = api_scope_sites(user, token)
    site_ids = [site.pk for site in sites]
    trial_ids = sorted({site.trial_id for site in sites})
    return CrfEntry.objects.filter(participant__site_id__in=site_ids, participant__trial_id__in=trial_ids).select_related(
        "participant__trial", "participant__site", "visit__definition", "crf"
    ).defer("crf__definition")


def api_adverse_events(user, token: ApiToken | None) -> QuerySet[AdverseEvent]:
    return AdverseEvent.objects.filter(participant__in=api_participants(user, token)).select_related(
        "participant__trial", "participant__site", "coded_term"
    )


def api_queries(user, token: ApiToken | None) -> QuerySet[Query]:
    return queries_for_user(user).filter(trial__in=api_trials(user, token))


def arm_masks(user, trials: QuerySet[Trial] | list[Trial]) -> dict[int, Callable[[str], str]]:
    """Trial id -> a function replacing every arm code and label in a text by "[blinded]", for the
    masked trials whose arms this user may not see: the exports' rule (protocol texts name the arms,
    free text written after an emergency unblinding could name one)."""
    masks: dict[int, Callable[[str], str]] = {}
    for trial in trials:
        if not trial.is_blinded or user_sees_allocation(user, trial):
            continue
        words = {w.strip() for pair in Arm.objects.filter(trial=trial).values_list("code", "label") for w in pair}
        words = sorted((w for w in words if w), key=len, reverse=True)
        if not words:
            continue
        pattern = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])", re.IGNORECASE)
        masks[trial.pk] = lambda text, p=pattern: p.sub(BLINDED_WORD, text) if text else text
    return masks


def masked(value, mask: Callable[[str], str] | None):
    """`value` (a JSON-like structure) with every string passed through `mask`."""
    if mask is None:
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [masked(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: masked(v, mask) for k, v in value.items()}
    return value

