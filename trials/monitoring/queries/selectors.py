"""Reads of queries and source data verification, always through what the user may see.

The monitor's dashboard (trials.monitoring, "audit" pages) imports `queries_for_user`,
`query_ageing` and `sdv_backlog` from here and from trials.monitoring.sdv.services.
"""

from __future__ import annotations

from datetime import timedelta
from statistics import median

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from trials.monitoring.models import OPEN_QUERY_STATES, Query, QueryState
from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import site_visible_to, sites_for_user, study_roles_for_user, user_holds_role

REVIEWER_ROLES = frozenset({Role.MONITOR, Role.DATA_MANAGER})
AGE_BUCKETS = ((0, 7), (8, 30), (31, None))  # days since the query was raised


def user_reviews_at(user, participant: Participant) -> bool:  # noqa: ANN001
    """Monitors and data managers of the participant's site (or of all sites of the trial) review
    its data: they raise, close, re-open and cancel queries."""
    return user_holds_role(user, trial_id=participant.trial_id, site_id=participant.site_id, roles=REVIEWER_ROLES)


def user_verifies_at(user, participant: Participant) -> bool:  # noqa: ANN001
    """Monitors of the participant's site verify source data."""
    return user_holds_role(user, trial_id=participant.trial_id, site_id=participant.site_id, roles={Role.MONITOR})


def user_answers_at_site(user, site) -> bool:  # noqa: ANN001
    """Coordinators and investigators of the site answer its queries."""
    from trials.participants.selectors import DATA_ENTRY_ROLES

    return user_holds_role(user, trial_id=site.trial_id, site_id=site.pk, roles=DATA_ENTRY_ROLES)


def reviewer_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials in which the user is a monitor or a data manager."""
    if user.is_authenticated and user.is_superuser:
        return Trial.objects.all()
    return Trial.objects.filter(pk__in=study_roles_for_user(user).filter(role__in=REVIEWER_ROLES).values("trial_id"))


def queries_for_user(user) -> QuerySet[Query]:  # noqa: ANN001
    """Queries on the participants the user may see (site scoping), newest first."""
    return Query.objects.filter(participant__in=participants_for_user(user)).select_related(
        "trial", "site", "participant", "entry__visit", "entry__crf", "adverse_event", "raised_by", "closed_by"
    ).defer("entry__crf__definition")


def query_for_user(user, pk: int) -> Query | None:  # noqa: ANN001
    """One query, if the user may see it."""
    return queries_for_user(user).filter(pk=pk).first()


def query_target_label(query: Query) -> str:
    """What a query is about, as people say it: "VITALS · Heart rate", "DU_ASSESS · Digital ulcers,
    row 2 · Finger", "AE 3 · grade", or the CRF code alone for the whole entry."""
    if query.adverse_event_id:
        label = f"AE {query.adverse_event.number}"
        return f"{label} · {query.item}" if query.item else label
    from trials.protocol.engine import ROW_ID, schema_for

    entry = query.entry
    if not query.item:
        return entry.crf_code
    schema = schema_for(entry.crf)
    try:
        label = schema.item(query.item).label
    except KeyError:
        label = query.item  # an item of another CRF version
    group = next((g for g in schema.groups if query.item == g.name or any(c.name == query.item for c in g.children)), None)
    if group is None:
        return f"{entry.crf_code} · {label}"
    where = group.label
    if query.row_id:
        ids = [r.get(ROW_ID) for r in entry.answers.get(group.name) or []]
        where += ", " + (gettext("row %(n)s") % {"n": ids.index(query.row_id) + 1} if query.row_id in ids else gettext("a removed row"))
    if query.item == group.name:
        return f"{entry.crf_code} · {where}"
    return f"{entry.crf_code} · {where} · {label}"


def open_query_counts(user, *, by: str = "participant", **filters) -> dict[int, int]:  # noqa: ANN001, ANN003
    """Open (not yet closed) queries the user may see, counted per `by` ("participant", "entry",
    "site" or "trial"), for badges: {id: count}. `filters` narrow the queries (e.g. participant=p)."""
    column = f"{by}_id"
    rows = (
        queries_for_user(user).filter(state__in=OPEN_QUERY_STATES, **filters).order_by()
        .values(column).annotate(n=Count("id")).values_list(column, "n")
    )
    return {key: n for key, n in rows if key is not None}


def ae_open_query_counts(user, participant: Participant) -> dict[int, int]:  # noqa: ANN001
    """Open queries per adverse event of the participant, for the AE log's badges (safety.hooks)."""
    return open_query_counts(user, by="adverse_event", participant=participant)


def _with_threads(user, **target) -> list[Query]:  # noqa: ANN001, ANN003
    """The user's queries on `target` (entry=… or adverse_event=…) with their threads, oldest first."""
    from django.db.models import Prefetch

    from trials.monitoring.models import QueryMessage

    return list(
        queries_for_user(user).filter(**target).select_related("raised_by").order_by("raised_at", "pk")
        .prefetch_related(Prefetch("messages", queryset=QueryMessage.objects.select_related("author").order_by("at", "pk")))
    )


def item_queries(user, entry) -> list[Query]:  # noqa: ANN001
    """The queries of one CRF entry with their threads (for the CRF page), oldest first."""
    return [] if entry.pk is None else _with_threads(user, entry=entry)


def entry_query_annotations(entry_column: str) -> dict:
    """visits.hooks.crf_page_annotations: `page_has_queries`, whether the entry (`entry_column`: the
    outer CrfEntry query's id column) has any query at all, whoever may see it; without one the CRF
    page reads none."""
    from django.db.models import BooleanField
    from django.db.models.expressions import RawSQL

    sql = f"EXISTS (SELECT 1 FROM {Query._meta.db_table} q WHERE q.entry_id = {entry_column})"
    return {"page_has_queries": RawSQL(sql, [], output_field=BooleanField())}


def entry_page_queries(user, entry) -> list[Query]:  # noqa: ANN001
    """item_queries for a page that has read the entry with its participant and site (the CRF
    page, the form review): the same queries and threads, without joining again the trial, site,
    participant, visit and CRF the page holds (issue 22: that lookup joined eight tables). The
    site is checked from the request's memo of the user's roles (sites_for_user's rule)."""
    if entry.pk is None or not site_visible_to(user, entry.participant.site):
        return []
    if not entry.__dict__.get("page_has_queries", True):
        return []  # read with the entry: it has no query (entry_query_annotations)
    from django.db.models import Prefetch

    from trials.monitoring.models import QueryMessage

    queries = list(
        Query.objects.filter(entry=entry).select_related("raised_by").order_by("raised_at", "pk")
        .prefetch_related(Prefetch("messages", queryset=QueryMessage.objects.select_related("author").order_by("at", "pk")))
    )
    participant = entry.participant
    for query in queries:  # what the page holds already; a query raised before a transfer keeps its own site
        query.entry = entry
        if query.participant_id == participant.pk:
            query.participant = participant
        if query.site_id == participant.site_id:
            query.site = participant.site
    return queries


def ae_queries(user, ae) -> list[Query]:  # noqa: ANN001
    """The queries of one adverse event with their threads (for the AE page), oldest first."""
    return [] if ae is None or ae.pk is None else _with_threads(user, adverse_event=ae)


def query_ageing(user, trial: Trial) -> list[dict]:  # noqa: ANN001
    """Per site of the trial the user may see: unresolved queries (open or answered) by age since
    raised (0–7, 8–30, over 30 days), how many wait for the site and for the reviewer, and the
    median age in days. Counts in one aggregate query; the median from the open queries' dates."""
    now = timezone.now()
    day7, day30 = now - timedelta(days=8), now - timedelta(days=31)  # age in whole days <= 7, <= 30
    unresolved = Q(state__in=OPEN_QUERY_STATES)
    sites = list(sites_for_user(user, trial=trial, include_inactive=True).order_by("code"))
    queries = queries_for_user(user).filter(trial=trial).order_by()
    counts = {
        row["site_id"]: row
        for row in queries.values("site_id").annotate(
            total=Count("id", filter=unresolved),
            age_0_7=Count("id", filter=unresolved & Q(raised_at__gt=day7)),
            age_8_30=Count("id", filter=unresolved & Q(raised_at__lte=day7, raised_at__gt=day30)),
            age_over_30=Count("id", filter=unresolved & Q(raised_at__lte=day30)),
            waiting_site=Count("id", filter=Q(state=QueryState.OPEN)),
            waiting_review=Count("id", filter=Q(state=QueryState.ANSWERED)),
            closed=Count("id", filter=Q(state=QueryState.CLOSED)),
        )
    }
    ages: dict[int, list[int]] = {}
    for site_id, raised_at in queries.filter(unresolved).values_list("site_id", "raised_at"):
        ages.setdefault(site_id, []).append((now - raised_at).days)
    rows = []
    for site in sites:
        row = counts.get(site.pk, {})
        rows.append({
            "site": site,
            **{key: row.get(key, 0) for key in ("total", "age_0_7", "age_8_30", "age_over_30", "waiting_site", "waiting_review", "closed")},
            "median_age_days": median(ages[site.pk]) if ages.get(site.pk) else None,
            "oldest_days": max(ages[site.pk]) if ages.get(site.pk) else None,
        })
    return rows
