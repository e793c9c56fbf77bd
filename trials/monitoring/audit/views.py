"""The audit trail pages in the admin (a participant's, a CRF entry's), their CSV download for
inspectors, and the monitor's dashboard. The admin's participant and CRF entry pages route here
(trials.monitoring.casebook.admin get_urls), so the object is read through that admin's scoped queryset: out
of scope is a 404."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date

from django.contrib import admin
from django.contrib.admin.options import ModelAdmin
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.monitoring.audit.dashboard import monitor_dashboard
from trials.monitoring.audit.trail import AuditRow, csv_rows, entry_trail, hides_allocation, participant_trail
from trials.monitoring.quality.selectors import quality_trials
from trials.monitoring.queries.selectors import reviewer_trials
from trials.participants.models import Participant
from trials.visits.models import CrfEntry


def _scoped(request: HttpRequest, model_admin: ModelAdmin, object_id: str):  # noqa: ANN202
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        obj = model_admin.get_queryset(request).filter(pk=object_id).first()
    except (ValueError, TypeError):
        obj = None
    if obj is None:
        raise Http404(_("No such record in your studies."))
    return obj


def _record_urls(trail: Iterable[AuditRow]) -> dict[str, str]:
    """The admin change URL pattern of each kind of record in the trail (if it has an admin page)."""
    urls = {}
    for model in {row.model for row in trail}:
        app_label, model_name = model.split(".")
        try:
            urls[model] = reverse(f"admin:{app_label}_{model_name}_change", args=[0]).replace("/0/", "/{}/")
        except NoReverseMatch:
            continue
    return urls


class _Echo:
    """csv.writer writes into this and gets the line back, so each line can be streamed."""

    def write(self, value: str) -> str:
        return value


def _stream(rows: Iterator[tuple[str, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff"  # a byte-order mark, so that spreadsheets read UTF-8 (accents in names and answers)
    for row in rows:
        yield writer.writerow(row)


def _csv_response(trail: list[AuditRow], time_zone: str, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_stream(csv_rows(trail, time_zone)), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{name}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


AUDIT_PAGE_SIZE = 50


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def audit_filter(trail: list[AuditRow], params) -> tuple[list[AuditRow], dict]:  # noqa: ANN001
    """The saves of `trail` matching the page's filters: record kind, CRF (its code in the record's
    name), item (a changed field or CRF item of that name, also inside a repeating group), user,
    local date range (the site's dates, inclusive) and words of the reason. Returns the rows and the
    filter values as understood (a malformed date is ignored, and shown empty)."""
    kinds = sorted({row.kind for row in trail})
    users = sorted({row.user for row in trail if row.user})
    kind = params.get("kind", "") if params.get("kind", "") in kinds else ""
    user = params.get("user", "") if params.get("user", "") in users else ""
    crf = (params.get("crf", "") or "").strip().upper()
    item = (params.get("item", "") or "").strip()
    reason = (params.get("reason", "") or "").strip().lower()
    start, end = _date(params.get("from", "") or ""), _date(params.get("to", "") or "")
    rows = []
    for row in trail:
        if kind and row.kind != kind or user and row.user != user:
            continue
        if crf and crf not in row.record.upper():
            continue
        if item and not any(c.field == item or c.field.endswith(f".{item}") for c in row.changes):
            continue
        if reason and reason not in (row.reason or "").lower():
            continue
        day = row.local.date()
        if start and day < start or end and day > end:
            continue
        rows.append(row)
    values = {"kind": kind, "user": user, "crf": crf, "item": item, "reason": params.get("reason", "").strip(),
              "from": start.isoformat() if start else "", "to": end.isoformat() if end else ""}
    return rows, {"kinds": kinds, "users": users, "values": values}


def _page(request: HttpRequest, model_admin: ModelAdmin, *, obj, participant: Participant, trail: list[AuditRow],
          title: str, csv_url: str) -> TemplateResponse:
    shown, filters = audit_filter(trail, request.GET)
    kinds, kind = filters["kinds"], filters["values"]["kind"]
    page = Paginator(list(reversed(shown)), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    urls = _record_urls(trail)
    context = {
        **admin.site.each_context(request),
        "title": title,
        "subtitle": str(participant),
        "opts": model_admin.model._meta,
        "original": obj,
        "participant": participant,
        "rows": [(row, urls.get(row.model, "").format(row.object_id) if row.model in urls else "") for row in page.object_list],
        "count": len(shown),
        "page": page,
        "page_query": query.urlencode(),
        "kinds": kinds,
        "kind": kind,
        "users": filters["users"],
        "filters": filters["values"],
        "time_zone": participant.site.time_zone,
        "csv_url": csv_url,
        "hides_allocation": hides_allocation(request.user, participant.trial),
        "change_url": reverse(f"admin:{model_admin.model._meta.app_label}_{model_admin.model._meta.model_name}_change", args=[obj.pk]),
    }
    return TemplateResponse(request, "monitoring/audit_trail.html", context)


def participant_audit(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    """The participant's whole audit trail, newest first."""
    participant: Participant = _scoped(request, model_admin, object_id)
    trail = participant_trail(request.user, participant)
    return _page(
        request, model_admin, obj=participant, participant=participant, trail=trail,
        title=_("Audit trail of %(participant)s") % {"participant": participant.number},
        csv_url=reverse("admin:participants_participant_audit_csv", args=[participant.pk]),
    )


def participant_audit_csv(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> StreamingHttpResponse:
    """The same trail as CSV, one line per changed field, oldest first."""
    participant: Participant = _scoped(request, model_admin, object_id)
    trail = participant_trail(request.user, participant)
    return _csv_response(trail, participant.site.time_zone, f"{participant.trial.code}-{participant.number}")


def entry_audit(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    """One CRF entry's audit trail: its answers item by item, its queries, SDV, signatures and locks."""
    entry: CrfEntry = _scoped(request, model_admin, object_id)
    participant = entry.participant
    trail = entry_trail(request.user, entry)
    return _page(
        request, model_admin, obj=entry, participant=participant, trail=trail,
        title=_("Audit trail of %(entry)s") % {"entry": f"{entry.visit.label} – {entry.crf_code}"},
        csv_url=reverse("admin:visits_crfentry_audit_csv", args=[entry.pk]),
    )


def entry_audit_csv(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> StreamingHttpResponse:
    entry: CrfEntry = _scoped(request, model_admin, object_id)
    participant = entry.participant
    trail = entry_trail(request.user, entry)
    return _csv_response(trail, participant.site.time_zone, f"{participant.trial.code}-{participant.number}-{entry.crf_code}-{entry.pk}")


@login_required
def monitoring_dashboard(request: HttpRequest) -> HttpResponse:
    """The monitor's dashboard (monitors and data managers): what waits for review, per site."""
    if not (request.user.is_superuser or reviewer_trials(request.user).exists()):
        raise PermissionDenied(_("The monitoring dashboard is for monitors and data managers."))
    return render(request, "monitoring/dashboard_monitor.html", {
        "panels": monitor_dashboard(request.user), "runs_quality_rules": quality_trials(request.user).exists(),
    })
