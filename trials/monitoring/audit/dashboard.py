"""The monitor's dashboard: per trial and site the user reviews, what waits for a monitor.

Open queries by age, the SDV backlog, overdue visits, casebooks waiting for the investigator's
signature and SAEs awaiting their report. Every number is an SQL aggregate grouped by site (a
fixed number of queries per trial, whatever the number of participants) and links to the admin
list that shows exactly those rows (the same filters: see `links`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from trials.monitoring.models import OPEN_QUERY_STATES
from trials.records.models import Signature, SignatureState
from trials.monitoring.sdv.services import sdv_backlog
from trials.monitoring.queries.selectors import query_ageing, reviewer_trials
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import Site, Trial
from trials.protocol.selectors import sites_for_user
from trials.safety.models import ReportingClock
from trials.visits.models import CrfEntry, EntryStatus, Visit, VisitStatus

# A casebook is ready for the investigator's signature once participation has ended and every CRF
# entry is complete (screen failures have no casebook to sign).
ENDED = (ParticipantStatus.COMPLETED, ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED)
COUNTS = ("queries", "queries_0_7", "queries_8_30", "queries_over_30", "sdv_backlog", "overdue_visits", "unsigned_casebooks",
          "saes_awaiting", "saes_overdue")


def _casebook_signed() -> Exists:
    return Exists(Signature.objects.filter(participant=OuterRef("pk"), visit__isnull=True, state=SignatureState.VALID))


def casebooks_complete(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    """Participants whose participation has ended and whose CRF entries are all complete."""
    entries = CrfEntry.objects.filter(participant=OuterRef("pk"))
    return participants.filter(Exists(entries), ~Exists(entries.exclude(status=EntryStatus.COMPLETE)), status__in=ENDED)


def casebooks_unsigned(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    """Complete casebooks without a valid casebook signature (never signed, or broken by a change)."""
    return casebooks_complete(participants).filter(~_casebook_signed())


def casebooks_signed(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    return participants.filter(_casebook_signed())


def casebooks_broken(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    """A casebook signature broken by a later change, and no valid one since."""
    broken = Exists(Signature.objects.filter(participant=OuterRef("pk"), visit__isnull=True, state=SignatureState.BROKEN))
    return participants.filter(broken).filter(~_casebook_signed())


def saes_awaiting(clocks: QuerySet[ReportingClock]) -> QuerySet[ReportingClock]:
    """Reporting clocks still running: neither reported nor cancelled."""
    return clocks.filter(reported_at__isnull=True, cancelled=False)


@dataclass
class SiteRow:
    site: Site | None  # None: the trial's total
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class TrialPanel:
    trial: Trial
    rows: list[SiteRow]
    total: SiteRow


def _url(name: str, **params: object) -> str:
    try:
        return reverse(name) + "?" + urlencode({k: v for k, v in params.items() if v is not None})
    except NoReverseMatch:  # that list is not in the admin (yet)
        return ""


def links(site: Site | None, trial: Trial) -> dict[str, str]:
    """The admin lists behind each number (a site's, or the trial's when `site` is None)."""
    now = timezone.now()
    by_site = {"site__id__exact": site.pk} if site else {"trial__id__exact": trial.pk}
    participant_site = {"participant__site__id__exact": site.pk} if site else {"participant__trial__id__exact": trial.pk}
    queries = {**by_site, "state__in": ",".join(sorted(OPEN_QUERY_STATES))}
    day7, day30 = (now - timedelta(days=d) for d in (8, 31))
    return {
        "queries": _url("admin:monitoring_query_changelist", **queries),
        "queries_0_7": _url("admin:monitoring_query_changelist", **queries, raised_at__gt=day7.isoformat()),
        "queries_8_30": _url("admin:monitoring_query_changelist", **queries, raised_at__lte=day7.isoformat(), raised_at__gt=day30.isoformat()),
        "queries_over_30": _url("admin:monitoring_query_changelist", **queries, raised_at__lte=day30.isoformat()),
        "sdv_backlog": _url("admin:visits_crfentry_changelist", **participant_site, sdv="backlog"),
        "overdue_visits": _url("admin:visits_visit_changelist", **participant_site, status__exact=VisitStatus.OVERDUE),
        "unsigned_casebooks": _url("admin:participants_participant_changelist", **by_site, casebook="unsigned"),
        "saes_awaiting": _url(
            "admin:safety_reportingclock_changelist",
            **({"adverse_event__participant__site__id__exact": site.pk} if site else {"adverse_event__participant__trial__id__exact": trial.pk}),
            report="awaiting",
        ),
    }


def _by_site(queryset: QuerySet, column: str, **aggregates: Count) -> dict[int, dict]:
    return {row[column]: row for row in queryset.order_by().values(column).annotate(**aggregates)}


def monitor_dashboard(user) -> list[TrialPanel]:  # noqa: ANN001
    """Per trial the user reviews (monitor or data manager), per site the user may see, the counts
    of what waits for review. A fixed number of queries per trial (tested)."""
    trials = list(reviewer_trials(user).order_by("code"))
    sites = list(sites_for_user(user).filter(trial__in=trials).order_by("trial__code", "code"))
    site_ids = [s.pk for s in sites]
    now = timezone.now()

    overdue = _by_site(Visit.objects.filter(participant__site__in=site_ids, status=VisitStatus.OVERDUE),
                       "participant__site", n=Count("pk"))
    backlog = _by_site(sdv_backlog(user).filter(participant__site__in=site_ids), "participant__site", n=Count("pk"))
    unsigned = _by_site(casebooks_unsigned(Participant.objects.filter(site__in=site_ids)), "site", n=Count("pk"))
    clocks = _by_site(
        saes_awaiting(ReportingClock.objects.filter(adverse_event__participant__site__in=site_ids)),
        "adverse_event__participant__site", n=Count("pk"), late=Count("pk", filter=Q(due_at__lt=now)),
    )
    panels = []
    for trial in trials:
        ageing = {row["site"].pk: row for row in query_ageing(user, trial)}
        rows = []
        for site in (s for s in sites if s.trial_id == trial.pk):
            row = SiteRow(site, links=links(site, trial))
            q = ageing.get(site.pk, {})
            row.counts.update({
                "queries": q.get("total", 0), "queries_0_7": q.get("age_0_7", 0), "queries_8_30": q.get("age_8_30", 0),
                "queries_over_30": q.get("age_over_30", 0),
                "sdv_backlog": backlog.get(site.pk, {}).get("n", 0),
                "overdue_visits": overdue.get(site.pk, {}).get("n", 0),
                "unsigned_casebooks": unsigned.get(site.pk, {}).get("n", 0),
                "saes_awaiting": clocks.get(site.pk, {}).get("n", 0),
                "saes_overdue": clocks.get(site.pk, {}).get("late", 0),
            })
            rows.append(row)
        total = SiteRow(None, links=links(None, trial) if len(rows) > 1 else {})
        for key in COUNTS:
            total.counts[key] = sum(r.counts[key] for r in rows)
        panels.append(TrialPanel(trial, rows, total))
    return panels
