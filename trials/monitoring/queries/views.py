"""The site's side of queries: a site's query list, answering, and the query threads on the CRF page.

Reviewers (monitors, data managers) raise, close, re-open and cancel queries in the admin
(queries/admin.py); coordinators and investigators see and answer them here.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from trials.monitoring.queries import selectors
from trials.monitoring.queries.forms import QueryAnswerForm, QueryFilterForm
from trials.monitoring.models import OPEN_QUERY_STATES, QueryMessage
from trials.records.models import SdvMark
from trials.monitoring.queries.services import query_answer as query_answer_service
from trials.monitoring.sdv.services import sdv_status_text
from trials.participants.selectors import user_enters_data_at
from trials.protocol.selectors import sites_for_user
from trials.protocol.engine import ROW_ID, schema_for


def query_url(query) -> str:  # noqa: ANN001
    """Where the queried data is shown to the site: the item on the CRF page, or the AE."""
    if query.entry_id:
        return reverse("crf_entry", args=[query.entry.visit_id, query.entry.crf_code]) + f"#query-{query.pk}"
    return reverse("ae_edit", args=[query.participant_id, query.adverse_event.number]) + f"#query-{query.pk}"


def _with_threads(queryset):  # noqa: ANN001, ANN202
    return queryset.prefetch_related(Prefetch("messages", queryset=QueryMessage.objects.select_related("author").order_by("at", "pk")))


def crf_query_context(user, entry, *, hidden: set[str] | frozenset = frozenset()) -> dict:  # noqa: ANN001
    """What the CRF page shows of monitoring: the queries of the entry by (row, item) for the
    threads beside each item, those that belong to no shown item (the whole entry, an item hidden
    by branching, an item or row no longer there) for the top of the page, and the SDV status."""
    if entry.pk is None:
        return {"queries_by_item": {}, "open_queries_by_item": {}, "entry_queries": [], "open_query_count": 0, "can_answer": False, "sdv_text": ""}
    queries = selectors.entry_page_queries(user, entry)
    schema = schema_for(entry.crf)
    names = {i.name for i in schema.items} | {c.name for g in schema.groups for c in g.children}
    rows = {r.get(ROW_ID) for g in schema.groups for r in entry.answers.get(g.name) or []}
    by_item: dict[tuple[str, str], list] = {}
    top: list = []
    for query in queries:
        query.target = selectors.query_target_label(query)
        placed = query.item in names and query.item not in hidden and (not query.row_id or query.row_id in rows)
        if placed:
            by_item.setdefault((query.row_id, query.item), []).append(query)
        else:
            top.append(query)  # the whole entry, or an item / row that is no longer there
    # An entry read with `page_sdv_mark_id` (the CRF page's query) reads its mark only when it has one.
    no_mark = "page_sdv_mark_id" in entry.__dict__ and entry.page_sdv_mark_id is None
    mark = None if no_mark else SdvMark.objects.select_related("verified_by", "reset_by").filter(entry=entry).first()
    return {
        "queries_by_item": by_item,
        # The badge beside each item (visits.item_html): its open or answered queries.
        "open_queries_by_item": {key: n for key, placed in by_item.items() if (n := sum(1 for q in placed if q.state in OPEN_QUERY_STATES))},
        "entry_queries": top,
        "open_query_count": sum(1 for q in queries if q.state in OPEN_QUERY_STATES),
        "can_answer": user_enters_data_at(user, entry.participant),
        "all_queries": queries,
        "sdv_text": sdv_status_text(mark, entry) if mark else "",
        "sdv_mark": mark,
    }


@login_required
def site_queries(request: HttpRequest, code: str, site_code: str) -> HttpResponse:
    """A site's queries (open and answered by default), filterable, each linking to its item."""
    site = sites_for_user(request.user).filter(trial__code=code, code=site_code).first()
    if site is None:
        raise Http404(_("No such site in your studies."))
    form = QueryFilterForm(request.GET or None)
    queries = selectors.queries_for_user(request.user).filter(site=site)
    filters = form.cleaned_data if form.is_valid() else {}
    state = filters.get("state") or "unresolved"
    if state == "unresolved":
        queries = queries.filter(state__in=OPEN_QUERY_STATES)
    elif state != "all":
        queries = queries.filter(state=state)
    if filters.get("participant"):
        number = filters["participant"].strip()
        queries = queries.filter(Q(participant__screening_number__icontains=number) | Q(participant__subject_number__icontains=number))
    if filters.get("crf"):
        queries = queries.filter(entry__crf_code__iexact=filters["crf"].strip())
    if filters.get("origin"):
        queries = queries.filter(origin=filters["origin"])
    page = Paginator(_with_threads(queries.order_by("raised_at", "pk")), 50).get_page(request.GET.get("page"))
    for query in page:
        query.url = query_url(query)
        query.target = selectors.query_target_label(query)
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(request, "monitoring/query_list.html", {
        "site": site, "form": form, "page": page, "state": state, "filter_query": f"{kept.urlencode()}&" if kept else "",
        "can_answer": selectors.user_answers_at_site(request.user, site),
        "counts": selectors.open_query_counts(request.user, by="site", site=site),
    })


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


@login_required
@require_POST
def query_answer(request: HttpRequest, pk: int) -> HttpResponse:
    """The site answers an open query (htmx: the thread is replaced in place)."""
    query = selectors.query_for_user(request.user, pk)
    if query is None:
        raise Http404(_("No such query in your sites."))
    form = QueryAnswerForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            query = query_answer_service(query=query, user=request.user, text=form.cleaned_data["text"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = " ".join(e for errors in form.errors.values() for e in errors)
    if request.headers.get("HX-Request") == "true":
        query = _with_threads(selectors.queries_for_user(request.user)).get(pk=query.pk)
        return render(request, "monitoring/query_thread.html", {
            "query": query, "can_answer": True, "answer_error": error, "answer_text": "" if not error else request.POST.get("text", ""),
        })
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _("Your answer was sent to the monitor."))
    return redirect(_safe_next(request, query_url(query)))
