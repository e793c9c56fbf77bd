"""The operational reports, each a function of (user, trial) returning a `Report`: column names
and rows of plain values, read through the user's sites (participants_for_user), a fixed number of
grouped queries each. The page renders them and the CSV writes them, so both say the same."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median

from django.db.models import Count, Exists, F, Min, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trials.monitoring.queries.selectors import query_ageing
from trials.monitoring.sdv.services import sdv_backlog
from trials.participants.models import Allocation, ParticipantStatus
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Site, Trial
from trials.protocol.selectors import sites_for_user
from trials.records.models import SdvMark, SdvState
from trials.visits.models import CrfEntry, EntryStatus, RecordKind, Visit, VisitStatus


@dataclass
class Report:
    code: str
    title: object
    columns: list[tuple[str, object]]  # (CSV name, heading)
    rows: list[dict]
    note: object = ""


def _sites(user, trial: Trial) -> list[Site]:  # noqa: ANN001
    return list(sites_for_user(user, trial=trial, include_inactive=True).order_by("code"))


def _participants(user, trial: Trial):  # noqa: ANN001, ANN202
    return participants_for_user(user).filter(trial=trial)


def _total(rows: list[dict], label_key: str, keys: list[str]) -> dict:
    return {label_key: _("All your sites"), **{k: sum(r[k] or 0 for r in rows) for k in keys}}


def enrolment(user, trial: Trial) -> Report:  # noqa: ANN001
    """Enrolled per site against the trial's target (the protocol gives one target for the trial),
    and the cumulative enrolment by month (the chart's data)."""
    counts = dict(_participants(user, trial).filter(enrolment_date__isnull=False).values("site_id").annotate(n=Count("id")).values_list("site_id", "n"))
    rows = [{"site": s.code, "enrolled": counts.get(s.pk, 0)} for s in _sites(user, trial)]
    total = sum(r["enrolled"] for r in rows)
    for r in rows:
        r["share_of_target"] = round(100 * r["enrolled"] / trial.target_enrolment, 1) if trial.target_enrolment else None
    rows.append({"site": _("All your sites"), "enrolled": total,
                 "share_of_target": round(100 * total / trial.target_enrolment, 1) if trial.target_enrolment else None})
    return Report("enrolment", _("Enrolment against target"), [
        ("site", _("Site")), ("enrolled", _("Enrolled")), ("share_of_target", _("Share of the trial's target (%)"))], rows,
        _("Target enrolment of the trial: %(n)s.") % {"n": trial.target_enrolment})


def _month_range(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` ("YYYY-MM"), the empty ones included (a time axis)."""
    year, month = (int(x) for x in first.split("-"))
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def enrolment_by_month(user, trial: Trial) -> Report:  # noqa: ANN001
    """Enrolments per month and cumulative, for all the user's sites and per site (the chart's
    data and its text alternative), from the first enrolment to the current month (empty months
    included)."""
    sites = _sites(user, trial)
    per_site: dict[tuple[int, str], int] = defaultdict(int)
    months: dict[str, int] = defaultdict(int)
    for site_id, day in _participants(user, trial).filter(enrolment_date__isnull=False).values_list("site_id", "enrolment_date"):
        months[day.strftime("%Y-%m")] += 1
        per_site[(site_id, day.strftime("%Y-%m"))] += 1
    rows: list[dict] = []
    if months:
        today = max((s.today() for s in sites), default=timezone.localdate()).strftime("%Y-%m")
        running, site_running = 0, {s.pk: 0 for s in sites}
        for month in _month_range(min(months), max(max(months), today)):
            running += months.get(month, 0)
            row = {"month": month, "enrolled": months.get(month, 0), "cumulative": running, "target": trial.target_enrolment}
            for site in sites:
                site_running[site.pk] += per_site.get((site.pk, month), 0)
                row[f"cumulative_{site.code}"] = site_running[site.pk]
            rows.append(row)
    columns = [("month", _("Month")), ("enrolled", _("Enrolled")), ("cumulative", _("Cumulative"))]
    columns += [(f"cumulative_{s.code}", _("Cumulative at %(site)s") % {"site": s.code}) for s in sites]
    columns.append(("target", _("Target")))
    return Report("enrolment_by_month", _("Enrolment over time"), columns, rows)


def screening_funnel(user, trial: Trial) -> Report:  # noqa: ANN001
    """Screened → consented → enrolled → allocated, and the screen failures, per site."""
    people = _participants(user, trial)
    counts = {
        row["site_id"]: row for row in people.values("site_id").annotate(
            screened=Count("id"), consented=Count("id", filter=Q(consent_date__isnull=False)),
            screen_failures=Count("id", filter=Q(status=ParticipantStatus.SCREEN_FAILURE)),
            enrolled=Count("id", filter=Q(enrolment_date__isnull=False)),
            allocated=Count("id", filter=Q(Exists(Allocation.objects.filter(participant=OuterRef("pk"))))),
        )
    }
    keys = ["screened", "consented", "screen_failures", "enrolled", "allocated"]
    rows = [{"site": s.code, **{k: counts.get(s.pk, {}).get(k, 0) for k in keys}} for s in _sites(user, trial)]
    rows.append(_total(rows, "site", keys))
    return Report("screening_funnel", _("Screening funnel"), [
        ("site", _("Site")), ("screened", _("Screened")), ("consented", _("Consented")),
        ("screen_failures", _("Screen failures")), ("enrolled", _("Enrolled")), ("allocated", _("Allocated"))], rows)


def visit_compliance(user, trial: Trial) -> Report:  # noqa: ANN001
    """Scheduled visits per site: done in window, done out of window, missed, overdue (window closed
    at the site's today, no visit date), not done."""
    sites = _sites(user, trial)
    visits = Visit.objects.filter(participant__in=_participants(user, trial), record_kind=RecordKind.VISIT, definition__isnull=False)
    overdue = Q(pk__in=[])
    for site in sites:
        overdue |= Q(participant__site_id=site.pk, window_end__lt=site.today())
    overdue &= Q(visit_date__isnull=True) & ~Q(status__in=[VisitStatus.DONE, VisitStatus.MISSED, VisitStatus.NOT_DONE])
    counts = {
        row["participant__site_id"]: row for row in visits.values("participant__site_id").annotate(
            in_window=Count("id", filter=Q(status=VisitStatus.DONE, out_of_window=False)),
            out_of_window=Count("id", filter=Q(status=VisitStatus.DONE, out_of_window=True)),
            missed=Count("id", filter=Q(status=VisitStatus.MISSED)),
            overdue=Count("id", filter=overdue),
            not_done=Count("id", filter=Q(status=VisitStatus.NOT_DONE)),
        )
    }
    keys = ["in_window", "out_of_window", "missed", "overdue", "not_done"]
    rows = [{"site": s.code, **{k: counts.get(s.pk, {}).get(k, 0) for k in keys}} for s in sites]
    rows.append(_total(rows, "site", keys))
    return Report("visit_compliance", _("Visit compliance"), [
        ("site", _("Site")), ("in_window", _("Done in window")), ("out_of_window", _("Done out of window")),
        ("missed", _("Missed")), ("overdue", _("Overdue")), ("not_done", _("Not done"))], rows)


def query_ageing_report(user, trial: Trial) -> Report:  # noqa: ANN001
    rows = [{**{k: v for k, v in r.items() if k != "site"}, "site": r["site"].code} for r in query_ageing(user, trial)]
    return Report("query_ageing", _("Query ageing"), [
        ("site", _("Site")), ("total", _("Unresolved")), ("age_0_7", _("0–7 days")), ("age_8_30", _("8–30 days")),
        ("age_over_30", _("Over 30 days")), ("waiting_site", _("Waiting for the site")), ("waiting_review", _("Waiting for review")),
        ("closed", _("Closed")), ("median_age_days", _("Median age (days)")), ("oldest_days", _("Oldest (days)"))], rows)


def sdv_progress(user, trial: Trial) -> Report:  # noqa: ANN001
    """Complete entries per site, those verified at their current revision, and the backlog the
    trial's SDV plan leaves (sdv.services.sdv_backlog)."""
    entries = CrfEntry.objects.filter(participant__in=_participants(user, trial), status=EntryStatus.COMPLETE)
    verified = Exists(SdvMark.objects.filter(entry=OuterRef("pk"), state=SdvState.VERIFIED, entry_revision=OuterRef("revision")))
    counts = {
        row["participant__site_id"]: row for row in entries.annotate(v=verified).values("participant__site_id").annotate(
            complete=Count("id"), verified=Count("id", filter=Q(v=True)))
    }
    backlog = dict(sdv_backlog(user, trial).order_by().values("participant__site_id").annotate(n=Count("id")).values_list("participant__site_id", "n"))
    rows = []
    for s in _sites(user, trial):
        c = counts.get(s.pk, {})
        rows.append({"site": s.code, "complete": c.get("complete", 0), "verified": c.get("verified", 0), "backlog": backlog.get(s.pk, 0)})
    rows.append(_total(rows, "site", ["complete", "verified", "backlog"]))
    for r in rows:
        planned = r["verified"] + r["backlog"]
        r["percent_done"] = round(100 * r["verified"] / planned, 1) if planned else None
    return Report("sdv_progress", _("SDV progress"), [
        ("site", _("Site")), ("complete", _("Complete entries")), ("verified", _("Verified")),
        ("backlog", _("Backlog (per the SDV plan)")), ("percent_done", _("Share of the planned done (%)"))], rows)


def completion_lag(user, trial: Trial) -> Report:  # noqa: ANN001
    """Per CRF: days from the visit date to the entry's first save as complete (its audit
    history), median and maximum, over entries whose visit has a date."""
    history = CrfEntry.history.model.objects.filter(
        participant__in=_participants(user, trial), status=EntryStatus.COMPLETE, visit__record_kind=RecordKind.VISIT,
        visit__visit_date__isnull=False,
    ).values("id", "crf_code", visit_date=F("visit__visit_date")).annotate(first=Min("history_date"))
    lags: dict[str, list[int]] = defaultdict(list)
    for row in history:
        lags[row["crf_code"]].append(max(0, (row["first"].date() - row["visit_date"]).days))
    rows = [{"crf": code, "entries": len(days), "median_days": median(days), "max_days": max(days)} for code, days in sorted(lags.items())]
    return Report("completion_lag", _("CRF completion lag"), [
        ("crf", _("CRF")), ("entries", _("Entries")), ("median_days", _("Median days, visit → complete")),
        ("max_days", _("Longest (days)"))], rows,
        _("From the visit date to the first save of the entry as complete (UTC date), entries of dated visits only."))


REPORTS = {
    "enrolment": enrolment, "enrolment_by_month": enrolment_by_month, "screening_funnel": screening_funnel,
    "visit_compliance": visit_compliance, "query_ageing": query_ageing_report, "sdv_progress": sdv_progress,
    "completion_lag": completion_lag,
}
