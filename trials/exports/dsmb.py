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

Counts are as of the end of the cut-off day (dates on or before it), from the current records:
enrolment by enrolment date, disposition by the status and its date (a participant whose end
of study is dated after the cut-off is counted on study), AEs by onset date.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time
from typing import Any

from django.db.models import Count, F
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.exports.casebook_pdf import trial_arm_mask
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


def cutoff_end(cutoff: date) -> datetime:
    """The end of the cut-off day in the server's time zone (the day the summary counts up to)."""
    return timezone.make_aware(datetime.combine(cutoff, time(23, 59, 59)))


def _enrolled(trial: Trial, cutoff: date):
    return Participant.objects.filter(trial=trial, enrolment_date__lte=cutoff).exclude(status__in=NOT_ENROLLED)


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
    if cutoff > timezone.localdate():
        raise ValueError(_("The cut-off date cannot be in the future."))
    groups = _arm_groups(trial) if closed else [("all", _("All participants"))]
    enrolled = _enrolled(trial, cutoff)
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
    ended = enrolled.filter(status__in=ENDED, status_date__lte=cutoff)
    by_status = _by(ended.values("status", **arm_field).annotate(n=Count("pk")).order_by(), closed, "status", groups)
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
    summary = compute_summary(trial, cutoff_at=cutoff_end(cutoff), blinded=not closed)
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


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != "-":
        return "'" + value
    return value
