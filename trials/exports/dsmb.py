"""The DSMB package for a data cut-off: the open report and the closed report, as PDF and CSV.

The convention (FDA guidance "Establishment and Operation of Clinical Trial Data Monitoring
Committees", 2006, §6.4; DAMOCLES charter template, Lancet 2005): the *open* report is seen by
the sponsor and the trial team at the DSMB's open session and gives pooled data only (enrolment,
disposition, exposure, adverse events, serious AEs); the *closed* report, by arm, is for the DSMB
and its unblinded statistician alone.

Here:
- open report: every export role of the trial (sponsor, data manager, DSMB); pooled: the
  safety summary's blinded version (`compute_summary(blinded=True)`), enrolment and
  disposition by site without any grouping by arm, the SAE listing without arm; and the whole
  rendered text passes through the trial's arm mask (a verbatim term naming an arm is masked).
- closed report: only a user holding the DSMB role in the trial (`UNBLINDED_ROLES`); anyone
  else gets `ClosedReportRefused` (the page answers 404: the closed report does not exist for a
  blinded role, as in the blinded crawl), even the sponsor and even in an open-label trial.

Counts are as of the end of the cut-off day in the trial's time zone (the day ends when it has
ended at every site of the trial; never the server's UTC date): enrolment by enrolment date,
disposition by each participant's status *as recorded at that moment* in the audit history (a
withdrawal entered after the cut-off, or dated after it, counts the participant on study), AEs by
onset date.

A report, once generated for a cut-off, is stored (`DsmbPackage`: the bytes, their SHA-256, who
generated it and when); a later download for the same cut-off gives the identical file.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, time
from typing import Any

from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.exports.casebook_pdf import trial_arm_mask
from trials.exports.models import DsmbPackage, DsmbReport
from trials.exports.pdf import render_pdf
from trials.exports.selectors import exportable_trials
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import UNBLINDED_ROLES, Trial
from trials.protocol.selectors import study_roles_for_user
from trials.safety.models import AdverseEvent
from trials.safety.summary import ENDED, NOT_ENROLLED, compute_summary
from trials.safety.summary_views import _display

TEMPLATE = "exports/pdf/dsmb.html"
NO_ARM = "-"  # the group key of participants without an allocation (closed report)


class ClosedReportRefused(Exception):
    """The user may not see the closed (by-arm) report of this trial."""


def dsmb_trials(user):
    """Trials whose open DSMB report the user may produce: those she may export."""
    return exportable_trials(user)


def may_see_closed(user, trial: Trial) -> bool:
    """Only the trial's DSMB / unblinded statistician (never the sponsor, never a blinded role)."""
    return study_roles_for_user(user).filter(trial=trial, role__in=UNBLINDED_ROLES).exists()


def _zones(trial: Trial) -> list[ZoneInfo]:
    zones = sorted(set(trial.sites.values_list("time_zone", flat=True))) or [settings.TIME_ZONE]
    return [ZoneInfo(z) for z in zones]


def trial_today(trial: Trial) -> date:
    """Today for the trial: the latest local date among its sites (a cut-off is in the future only
    if no site has reached that day)."""
    return max(timezone.localdate(timezone=zone) for zone in _zones(trial))


def cutoff_end(cutoff: date, trial: Trial | None = None) -> datetime:
    """The end of the cut-off day: its last second in the trial's site time zones (the latest of
    them when the sites span several), not in the server's time zone."""
    zones = _zones(trial) if trial is not None else [timezone.get_current_timezone()]
    return max(datetime.combine(cutoff, time(23, 59, 59), tzinfo=zone) for zone in zones)


def statuses_at(trial: Trial, end: datetime) -> dict[int, tuple[str, date | None]]:
    """Participant id → (status, status date) as recorded at `end`, from the audit history (the
    last historical row at or before it); a participant registered after `end` is absent."""
    rows = (
        Participant.history.filter(trial_id=trial.pk, history_date__lte=end)
        .order_by("id", "-history_date", "-history_id").values_list("id", "status", "status_date")
    )
    found: dict[int, tuple[str, date | None]] = {}
    for pk, status, status_date in rows.iterator():
        found.setdefault(pk, (status, status_date))
    return found


def _enrolled(trial: Trial, cutoff: date, statuses: dict[int, tuple[str, date | None]]):
    ids = [pk for pk, (status, _d) in statuses.items() if status not in NOT_ENROLLED]
    return Participant.objects.filter(trial=trial, enrolment_date__lte=cutoff, pk__in=ids)


def _arm_groups(trial: Trial) -> list[tuple[str, str]]:
    arms = [(a.code, a.label) for a in trial.arms.order_by(F("order").asc(nulls_last=True), "code")]
    return arms + [(NO_ARM, _("Not allocated"))]


def _by(rows, closed: bool, key: str, groups: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{row key: {group code: n}} from .values(key, 'arm').annotate(n)."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        group = (row.get("arm") or NO_ARM) if closed else "all"
        cells = table.setdefault(row[key], {})
        cells[group] = cells.get(group, 0) + row["n"]
    return table


def _table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def _fmt(n: int, pct: float | None = None, events: int | None = None) -> str:
    text = str(n)
    if pct is not None:
        text += f" ({pct:.1f}%)"
    if events is not None:
        text += f" [{events}]"
    return text


def dsmb_report(trial: Trial, *, cutoff: date, closed: bool) -> dict[str, Any]:
    """The report's content: a list of tables (title, column headers, rows of text cells), the same
    for the PDF and the CSV. `closed`: by arm (the caller has checked `may_see_closed`)."""
    if cutoff > trial_today(trial):
        raise ValueError(_("The cut-off date cannot be in the future."))
    end = cutoff_end(cutoff, trial)
    statuses = statuses_at(trial, end)
    groups = _arm_groups(trial) if closed else [("all", _("All participants"))]
    enrolled = _enrolled(trial, cutoff, statuses)
    arm_field = {"arm": F("allocation__arm__code")} if closed else {}
    group_names = [label for _code, label in groups]
    total = [_("Total")] if closed else []

    def cells(per_group: dict[str, int]) -> list[int]:
        values = [per_group.get(code, 0) for code, _label in groups]
        return values + ([sum(values)] if closed else [])

    # Enrolment by site.
    screened = dict(
        Participant.objects.filter(trial=trial, screening_date__lte=cutoff).values_list("site__code")
        .annotate(n=Count("pk")).order_by()
    )
    by_site = _by(enrolled.values("site__code", **arm_field).annotate(n=Count("pk")).order_by(), closed, "site__code", groups)
    sites = list(trial.sites.order_by("code").values_list("code", "name"))
    enrolment = [[f"{code} – {name}", screened.get(code, 0), *cells(by_site.get(code, {}))] for code, name in sites]
    enrolment.append([_("All sites"), sum(screened.values()), *cells({
        g: sum(row.get(g, 0) for row in by_site.values()) for g, _label in groups})])

    # Disposition of the enrolled participants at the cut-off.
    ended_ids: dict[str, list[int]] = {}
    for pk, (status, status_date) in statuses.items():
        if status in ENDED and (status_date is None or status_date <= cutoff):
            ended_ids.setdefault(status, []).append(pk)
    ended = enrolled.filter(pk__in=[pk for ids in ended_ids.values() for pk in ids])
    by_status: dict[str, dict[str, int]] = {}
    for status, ids in ended_ids.items():
        rows = enrolled.filter(pk__in=ids).values(**arm_field).annotate(n=Count("pk")).order_by() if closed else [{"n": enrolled.filter(pk__in=ids).count()}]
        by_status[status] = _by([{**row, "status": status} for row in rows], closed, "status", groups).get(status, {})
    on_rows = enrolled.exclude(pk__in=ended.values("pk"))
    on = {}
    if closed:
        for row in on_rows.values(**arm_field).annotate(n=Count("pk")).order_by():
            on[row["arm"] or NO_ARM] = on.get(row["arm"] or NO_ARM, 0) + row["n"]
    else:
        on = {"all": on_rows.count()}
    enrolled_cells = {g: 0 for g, _label in groups}
    for row in (enrolled.values(**arm_field).annotate(n=Count("pk")).order_by() if closed else [{"n": enrolled.count()}]):
        key = (row.get("arm") or NO_ARM) if closed else "all"
        enrolled_cells[key] += row["n"]
    disposition = [[_("Enrolled"), *cells(enrolled_cells)], [_("On study at the cut-off"), *cells(on)]]
    labels = dict(ParticipantStatus.choices)
    for status in ENDED:
        disposition.append([str(labels[status]), *cells(by_status.get(status, {}))])

    # Exposure and AE tables: the safety summary at the cut-off (pooled for the open report).
    summary = compute_summary(trial, cutoff_at=end, blinded=not closed)
    view = _display(summary)
    ae_columns = [g["display"] for g in view["groups"]] + ([_("Total")] if view["show_total"] else [])
    overview = [[row["label"], *[_fmt(n, pct, ev) for n, pct, ev in row["cells"]]] for row in view["overview"]]
    grades = [[_("Grade %(grade)s") % {"grade": row["grade"]}, *[_fmt(n, pct, ev) for n, pct, ev in row["cells"]]]
              for row in view["grade_rows"]]
    exposure = [[row["label"], *["–" if v is None else v for v in row["cells"]]] for row in view["exposure"]]
    soc = []
    for entry in view["soc"]:
        soc.append([entry["soc"], *[_fmt(c["participants"], None, c["events"]) for c in entry["cells"]]])
        soc += [["    " + t["term"], *[_fmt(c["participants"], None, c["events"]) for c in t["cells"]]] for t in entry["terms"]]

    # Serious AEs, listed.
    saes = (
        AdverseEvent.objects.filter(participant__trial=trial, serious=True, onset_date__lte=cutoff)
        .select_related("participant__site", "coded_term").order_by("onset_date", "participant__site__code", "number")
    )
    if closed:
        saes = saes.annotate(arm=F("participant__allocation__arm__label"))
    sae_rows = [
        [ae.participant.site.code, str(ae.participant), ae.number, ae.coded_term.pt if ae.coded_term_id else ae.verbatim_term,
         ae.onset_date.isoformat(), ae.grade or "–", ae.get_related_product_display() if ae.related_product else "–",
         ae.get_outcome_display() if ae.outcome else "–", *([ae.arm or _("Not allocated")] if closed else [])]
        for ae in saes
    ]
    n_ae = _("n (%) [events]")
    tables = [
        _table(_("Enrolment by site"), [_("Site"), _("Screened"), *[f"{_('Enrolled')}: {g}" for g in group_names], *total], enrolment),
        _table(_("Disposition"), ["", *group_names, *total], disposition),
        _table(_("Exposure"), ["", *ae_columns], overview[:3] + exposure),
        _table(_("Treatment-emergent adverse events"), ["", *ae_columns], overview[3:], n_ae),
        _table(_("By worst CTCAE grade"), ["", *ae_columns], grades, n_ae),
        _table(_("TEAEs by system organ class and term"), ["", *ae_columns], soc, _("participants [events]")),
        _table(_("Serious adverse events"), [
            _("Site"), _("Participant"), _("AE"), _("Term"), _("Onset"), _("Grade"), _("Related"), _("Outcome"),
            *([_("Arm")] if closed else []),
        ], sae_rows),
    ]
    return {
        "trial": trial, "cutoff": cutoff, "closed": closed, "tables": tables, "definitions": view["definitions"],
        "generated_at": timezone.now(),
    }


def _mask(trial: Trial, closed: bool):
    return None if closed else trial_arm_mask(trial)


def dsmb_pdf(user, trial: Trial, *, cutoff: date, closed: bool) -> bytes:
    """The report as PDF; the closed one only for `may_see_closed`."""
    if closed and not may_see_closed(user, trial):
        raise ClosedReportRefused
    return render_pdf(TEMPLATE, dsmb_report(trial, cutoff=cutoff, closed=closed), mask=_mask(trial, closed))


def dsmb_csv(user, trial: Trial, *, cutoff: date, closed: bool) -> str:
    """The same tables as one CSV: a `# table` line before each table's header and rows."""
    if closed and not may_see_closed(user, trial):
        raise ClosedReportRefused
    report = dsmb_report(trial, cutoff=cutoff, closed=closed)
    out = io.StringIO()
    writer = csv.writer(out)
    kind = _("closed report (by arm)") if closed else _("open report (pooled)")
    writer.writerow([f"# {trial.code}: DSMB {kind}, " + _("data cut-off %(date)s") % {"date": cutoff.isoformat()}])
    for term, definition in report["definitions"]:
        writer.writerow([f"# {term}: {definition}"])
    for table in report["tables"]:
        writer.writerow([])
        writer.writerow([f"# {table['title']}" + (f" – {table['note']}" if table["note"] else "")])
        writer.writerow(table["columns"])
        for row in table["rows"]:
            writer.writerow([_csv_safe(v) for v in row])
    text = out.getvalue()
    mask = _mask(trial, closed)
    return mask(text) if mask else text


def dsmb_package_file(user, trial: Trial, *, cutoff: date, closed: bool, file_format: str) -> DsmbPackage:
    """The stored report of this cut-off, generated and stored (audited: who, when, SHA-256) the
    first time it is asked for; the closed one only for `may_see_closed`."""
    if closed and not may_see_closed(user, trial):
        raise ClosedReportRefused
    report = DsmbReport.CLOSED if closed else DsmbReport.OPEN
    stored = DsmbPackage.objects.filter(trial=trial, cutoff=cutoff, report=report, file_format=file_format).first()
    if stored is not None:
        return stored
    content = dsmb_pdf(user, trial, cutoff=cutoff, closed=closed) if file_format == "pdf" else dsmb_csv(user, trial, cutoff=cutoff, closed=closed).encode("utf-8")
    package = DsmbPackage(
        trial=trial, cutoff=cutoff, report=report, file_format=file_format, content=content, size=len(content),
        sha256=hashlib.sha256(content).hexdigest(), generated_by=user, generated_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            audited_save(package, user=user, reason=f"DSMB {report} report generated for the cut-off {cutoff.isoformat()}")
    except IntegrityError:  # generated at the same moment by another request: theirs is the stored one
        return DsmbPackage.objects.get(trial=trial, cutoff=cutoff, report=report, file_format=file_format)
    return package


def dsmb_packages(user, trial: Trial):
    """The stored reports of a trial the user may download (no closed one for a blinded role)."""
    packages = DsmbPackage.objects.filter(trial=trial).select_related("generated_by").defer("content")
    if not may_see_closed(user, trial):
        packages = packages.exclude(report=DsmbReport.CLOSED)
    return packages.order_by("-cutoff", "report", "file_format")


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != "-":
        return "'" + value
    return value
