"""The participant list's page of rows (issue 22, third pass): read with its total in one query and
written as HTML in Python (every value through django.utils.html.escape), instead of a count
query, a page query and the template engine running its loop, `{% url %}` and `|date` per row.

The page number follows `Paginator.get_page` (tests/visits/test_participant_list.py): a number
that is not an integer shows the first page, one below 1 or past the end the last. The common
case (a page that exists) is one query; a page past the end costs two more (the count, then the
last page), as Paginator's count and page queries did on every request."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet, Window
from django.urls import reverse
from django.utils import dateformat
from django.utils.formats import get_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from trials.participants.models import Participant

PARTICIPANT_ROW_FIELDS = ("pk", "screening_number", "subject_number", "status", "consent_date")


def site_participant_rows(site, *, query: str = "", status: str = "") -> QuerySet:  # noqa: ANN001
    """The rows of one site the caller has checked the user may see (`site_visible_to`), as dicts
    of PARTICIPANT_ROW_FIELDS: no model instance, trial or site row per participant. `query`
    matches the screening or the subject number (contains, any case), `status` the status.
    Ordered by screening number (then pk, so the pages do not overlap)."""
    rows = Participant.objects.filter(site=site)
    if query:
        rows = rows.filter(Q(screening_number__icontains=query) | Q(subject_number__icontains=query))
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("screening_number", "pk").values(*PARTICIPANT_ROW_FIELDS)


def _page_number(raw) -> int | None:  # noqa: ANN001
    """Paginator.validate_number's reading of the page parameter: None when it is not an integer."""
    try:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        return None


def participant_page(rows: QuerySet, raw_number, per_page: int) -> Page:  # noqa: ANN001
    """The page `raw_number` of `rows` as Paginator.get_page gives it, its rows a list of dicts with
    the page's total counted by the same query (`COUNT(*) OVER ()`)."""
    paginator = Paginator(rows, per_page)
    number = _page_number(raw_number)
    if number is None:
        number = 1
    if number >= 1:
        offset = (number - 1) * per_page
        found = list(rows.annotate(edc_total=Window(Count("*")))[offset:offset + per_page])
        if found or number == 1:
            paginator.count = found[0]["edc_total"] if found else 0  # Paginator.count is a cached property
            for row in found:
                del row["edc_total"]
            return Page(found, number, paginator)
    # Below 1 or past the end: the last page (Paginator.get_page's EmptyPage case).
    number = paginator.num_pages
    offset = (number - 1) * per_page
    return Page(list(rows[offset:offset + per_page]), number, paginator)


# Kept as the template wrote it: a row ends with the line break and indent the `{% for %}` loop left.
_ROW_END = "</tr>\n  "
_PK_MARK = 987654321


def participant_rows_html(rows: list[dict], labels: dict, empty_text: str) -> SafeString:
    """The <tbody>'s content: one row per participant (screening number and subject number linked
    to the dashboard, status label, consent date in the language's DATE_FORMAT or "—"), or the
    one row saying there is none. Every value goes through `escape` (the labels and dates too)."""
    if not rows:
        return format_html('<tr><td colspan="4" class="text-muted">{}</td></tr>', empty_text)
    head, tail = reverse("participant_dashboard", args=[_PK_MARK]).split(str(_PK_MARK))
    date_format = get_format("DATE_FORMAT")  # what the `|date:"DATE_FORMAT"` filter used
    shown_labels = {value: escape(label) for value, label in labels.items()}  # each lazy label translated once
    dates: dict = {}
    out = []
    for row in rows:
        url = escape(f"{head}{int(row['pk'])}{tail}")
        subject = f'<a href="{url}">{escape(row["subject_number"])}</a>' if row["subject_number"] else "—"
        consent = row["consent_date"]
        if consent in (None, ""):
            shown = "—"
        else:
            if consent not in dates:
                dates[consent] = escape(dateformat.format(consent, date_format)) or "—"
            shown = dates[consent]
        label = shown_labels[row["status"]] if row["status"] in shown_labels else escape(row["status"])
        out.append(
            f'<tr><td class="text-nowrap"><a href="{url}">{escape(row["screening_number"])}</a></td>'
            f'<td class="text-nowrap">{subject}</td><td>{label}</td><td class="text-nowrap">{shown}</td>'
        )
    return mark_safe(_ROW_END.join(out) + _ROW_END)  # noqa: S308 - every value above escaped
