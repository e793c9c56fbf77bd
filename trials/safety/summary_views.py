"""The safety summary page: the latest stored summary as the user may see it (by arm for the DSMB /
unblinded statistician, pooled for everybody else in a blinded trial), tables and two charts drawn
on the server as inline SVG (no JavaScript: the CSP allows no inline script); the same numbers as a
CSV file, with the definitions they follow."""

from __future__ import annotations

import csv
from datetime import date
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from trials.protocol.selectors import trials_for_user, user_sees_allocation, user_sees_cohort_placebo
from trials.safety.summary import DEFINITIONS, GRADES, latest_summary, summary_store

# Sequential colours from grade 1 (mild) to grade 5 (death); series colours for the SAE lines.
GRADE_COLOURS = {1: "#ffe69c", 2: "#ffc107", 3: "#fd7e14", 4: "#dc3545", 5: "#58151c"}
SERIES_COLOURS = ["#0d6efd", "#d63384", "#198754", "#6f42c1", "#fd7e14", "#20c997", "#6c757d"]
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 48


def _label(group: dict[str, Any]) -> str:
    if group["kind"] == "pooled":
        return _("All participants")
    if group["kind"] == "unallocated":
        return _("Not allocated")
    if group.get("treatment") == "placebo":
        return _("%(cohort)s – placebo") % {"cohort": group["label"]}
    if group.get("treatment") == "active":
        return _("%(cohort)s – active") % {"cohort": group["label"]}
    return group["label"]


def _nice_max(value: int) -> int:
    """The axis maximum: 1, 2, 5 × 10ⁿ at or above `value`."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return max(step * factor, 1)
        step *= 10


def _ticks(top: int) -> list[int]:
    step = max(1, _nice_max(max(1, top // 5)))
    return list(range(0, top + 1, step))


def grade_chart(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars: participants by worst grade, one bar per group."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max([g["counts"]["with_ae"] for g in groups] + [1]))
    slot = plot_w / max(len(groups), 1)
    bar_w = min(80.0, slot * 0.6)
    bars = []
    for i, group in enumerate(groups):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h
        segments = []
        for grade in GRADES:
            n = group["counts"]["grades"][str(grade)]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            segments.append({"grade": grade, "n": n, "y": round(y, 1), "h": round(h, 1), "colour": GRADE_COLOURS[grade]})
        bars.append({
            "label": group["display"], "x": round(x, 1), "w": round(bar_w, 1), "cx": round(x + bar_w / 2, 1),
            "segments": segments, "total": group["counts"]["with_ae"], "total_y": round(y - 4, 1),
        })
    ticks = [{"value": v, "y": round(TOP + plot_h - plot_h * v / top, 1)} for v in _ticks(top)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": TOP + plot_h,
        "label_y": TOP + plot_h + 18, "bars": bars, "ticks": ticks,
        "legend": [{"grade": g, "colour": GRADE_COLOURS[g], "x": LEFT + (g - 1) * 90} for g in GRADES],
        "legend_y": HEIGHT - 12,
    }


def sae_chart(content: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Steps: cumulative serious AEs by onset date, one line per group, up to the cut-off."""
    timeline = content["sae_timeline"]
    if not timeline:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first = parse_date(timeline[0]["date"])
    last = max(parse_date(content["cutoff_date"]), parse_date(timeline[-1]["date"]))
    span = max((last - first).days, 1)
    top = _nice_max(max(max(point["groups"].values(), default=0) for point in timeline))

    def x(day: date) -> float:
        return round(LEFT + plot_w * (day - first).days / span, 1)

    def y(n: int) -> float:
        return round(TOP + plot_h - plot_h * n / top, 1)

    series = []
    for i, group in enumerate(groups):
        points, previous = [(x(first), y(0))], 0
        for point in timeline:
            day, n = parse_date(point["date"]), point["groups"].get(group["key"], 0)
            points += [(x(day), y(previous)), (x(day), y(n))]
            previous = n
        points.append((x(last), y(previous)))
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        series.append({
            "label": group["display"], "colour": colour, "total": previous,
            "points": " ".join(f"{px},{py}" for px, py in points),
            "legend_x": LEFT + i * 160,
        })
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": TOP + plot_h,
        "ticks": [{"value": v, "y": y(v)} for v in _ticks(top)],
        "first": first, "last": last, "label_y": TOP + plot_h + 16, "series": series, "legend_y": HEIGHT - 10,
    }


def _csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula (a verbatim term typed "=...") is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _cells(columns: list[dict[str, Any]], participants: str, events: str | None, pct: bool) -> list[tuple]:
    """(participants, percentage or None, events or None) per column."""
    return [(c[participants], c.get(f"{participants}_pct") if pct else None, c[events] if events else None) for c in columns]


def _display(content: dict[str, Any]) -> dict[str, Any]:
    """The stored content with translated group labels, table rows and chart geometry."""
    groups = [{**g, "display": _label(g)} for g in content["groups"]]
    keys = [g["key"] for g in groups]
    show_total = len(groups) > 1
    columns = [g["counts"] for g in groups] + ([content["total"]] if show_total else [])
    population = [
        (_("Enrolled"), "enrolled"),
        (_("Enrolled, not treated by the cut-off"), "not_treated"),
        (_("Safety population (received any dose)"), "safety_population"),
    ]
    rows = [
        (_("Participants with ≥ 1 treatment-emergent AE"), "with_ae", "events"),
        (_("Participants with ≥ 1 serious TEAE"), "with_sae", "sae_events"),
        (_("Participants with ≥ 1 related TEAE"), "with_related", "related_events"),
        (_("Participants with ≥ 1 TEAE of grade ≥ 3"), "with_severe", "severe_events"),
        (_("Participants with a TEAE leading to withdrawal"), "with_withdrawal", "withdrawal_events"),
        (_("Deaths (events: fatal TEAEs)"), "deaths", "fatal_events"),
    ]
    if content["grouping"] == "cohort":
        rows.append((_("Participants with a dose-limiting toxicity"), "with_dlt", "dlt_events"))
    overview = [{"label": label, "cells": _cells(columns, name, None, False)} for label, name in population]
    overview += [{"label": label, "cells": _cells(columns, name, events, True)} for label, name, events in rows]
    grade_rows = [
        {"grade": g, "cells": [(c["grades"][str(g)], c["grades_pct"][str(g)], c["grade_events"][str(g)]) for c in columns]}
        for g in GRADES
    ]
    exposure = [
        {"label": _("Follow-up from the first dose (participant-years)"), "cells": [c["followup_years"] for c in columns]},
        {"label": _("TEAEs per 100 participant-years"), "cells": [c["incidence_per_100py"] for c in columns]},
    ]
    pre_treatment = [
        {"label": _("Enrolled"), "cells": _cells(columns, "enrolled", None, False)},
        {"label": _("Participants with ≥ 1 pre-treatment AE"), "cells": _cells(columns, "pre_with_ae", "pre_events", True)},
        {"label": _("Participants with ≥ 1 serious pre-treatment AE"), "cells": _cells(columns, "pre_with_sae", "pre_sae_events", True)},
        {"label": _("Participants with ≥ 1 pre-treatment AE of grade ≥ 3"),
         "cells": _cells(columns, "pre_with_severe", "pre_severe_events", True)},
    ]
    soc = []
    for entry in content["soc"]:
        soc.append({
            "soc": entry["soc"] or _("Not coded (verbatim terms)"),
            "cells": [entry["groups"][k] for k in keys] + ([entry["total"]] if show_total else []),
            "terms": [
                {"term": t["term"], "cells": [t["groups"][k] for k in keys] + ([t["total"]] if show_total else [])}
                for t in entry["terms"]
            ],
        })
    return {
        "groups": groups, "show_total": show_total, "colspan": 1 + 2 * len(columns), "overview": overview, "grade_rows": grade_rows,
        "exposure": exposure, "pre_treatment": pre_treatment, "soc": soc, "definitions": DEFINITIONS,
        "grade_chart": grade_chart(groups), "sae_chart": sae_chart(content, groups),
        "cutoff_at": parse_datetime(content["cutoff_at"]), "cutoff_date": parse_date(content["cutoff_date"]),
    }


def _summary_for(request: HttpRequest, code: str) -> tuple[Any, Any]:
    """The trial (of the user's studies) and the summary version she may see, computed now when none
    is stored yet in the current format."""
    trial = trials_for_user(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial in your studies."))
    blinded = not user_sees_allocation(request.user, trial) or not user_sees_cohort_placebo(request.user, trial)
    summary = latest_summary(trial, blinded=blinded)
    if summary is None:
        summary = summary_store(trial, cutoff_at=timezone.now(), blinded=blinded)
    return trial, summary


@login_required
def safety_summary(request: HttpRequest, code: str) -> HttpResponse:
    """The trial's latest safety summary: by arm / cohort for users who may see allocations, pooled
    for everybody else; computed now when none is stored yet."""
    trial, summary = _summary_for(request, code)
    return render(request, "safety/summary.html", {
        "trial": trial, "summary": summary, "view": _display(summary.content), "grades": GRADES,
    })


@login_required
def safety_summary_csv(request: HttpRequest, code: str) -> HttpResponse:
    """The same summary as a CSV file: the definitions first (as # lines), then one line per row and
    column with participants, percentage and events."""
    trial, summary = _summary_for(request, code)
    view = _display(summary.content)
    names = [g["display"] for g in view["groups"]] + ([_("Total")] if view["show_total"] else [])
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    cutoff = summary.content["cutoff_date"]
    response["Content-Disposition"] = f'attachment; filename="{trial.code}-safety-summary-{cutoff}.csv"'
    out = csv.writer(response)
    out.writerow([f"# {trial.code}: " + _("safety summary, data cut-off %(at)s") % {"at": summary.content["cutoff_at"]}])
    if summary.blinded and summary.content["grouping"] == "cohort":
        out.writerow(["# " + _("Blinded summary: by dose cohort, active and placebo pooled.")])
    elif summary.blinded:
        out.writerow(["# " + _("Blinded summary: all participants pooled, arms not shown.")])
    for term, definition in view["definitions"]:
        out.writerow([f"# {term}: {definition}"])
    out.writerow([_("section"), _("row"), _("group"), _("participants"), _("percent"), _("events")])
    sections = [
        (_("Treatment-emergent AEs"), [(r["label"], r["cells"]) for r in view["overview"]]),
        (_("By worst CTCAE grade (participants) and grade (events)"),
         [(_("Grade %(grade)s") % {"grade": r["grade"]}, r["cells"]) for r in view["grade_rows"]]),
        (_("Pre-treatment AEs"), [(r["label"], r["cells"]) for r in view["pre_treatment"]]),
    ]
    for section, rows in sections:
        for label, cells in rows:
            for name, (n, pct, events) in zip(names, cells, strict=True):
                out.writerow([section, label, _csv_safe(name), n, "" if pct is None else pct, "" if events is None else events])
    for row in view["exposure"]:
        for name, value in zip(names, row["cells"], strict=True):
            out.writerow([_("Exposure"), row["label"], name, "" if value is None else value, "", ""])
    for entry in view["soc"]:
        for label, cells in [(entry["soc"], entry["cells"])] + [(f"{entry['soc']} / {t['term']}", t["cells"]) for t in entry["terms"]]:
            for name, cell in zip(names, cells, strict=True):
                out.writerow([_("TEAEs by system organ class and term"), _csv_safe(label), _csv_safe(name), cell["participants"], "",
                              cell["events"]])
    return response
