"""The participant dashboard's visit × CRF grid (the rows of its table), written in Python instead
of the template engine.

Why (issue 22, docs/benchmarks.md "Third pass: participant page"): the grid's loop (a row per
visit, a chip per CRF, two badge templates included per row, ~25 variable lookups and two `{% url %}`
per chip) was about 40 % of the page's CPU, almost all of it the engine's own work. The markup is
the markup `visits/participant_dashboard.html` wrote, whitespace aside; every text from the
database (visit labels, reasons, names, codes) is escaped with `conditional_escape`, every date
formatted as the `date:"DATE_FORMAT"` filter formats it (localised, datetimes in the current time
zone), every translated text escaped as `{% translate %}` escapes it. The URLs are Django's own
(`reverse` once per URL name, the keys put in their place: they are numbers and CRF codes, quoted
as `reverse` quotes them). tests/monitoring/test_dashboard_grid.py compares the output with the
template's on rows with locks, signatures, queries, unscheduled visits and hostile texts.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from django.urls import reverse
from django.utils import dateformat, formats
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from edc.timefmt import utc_moment
from trials.visits.models import EntryStatus, VisitStatus



def _e(value) -> str:  # noqa: ANN001
    """`conditional_escape`, without its lazy-string wrapper for the plain texts and numbers the grid
    holds (Django's `escape` is `html.escape(str(value))`); a safe string is kept as it is."""
    if hasattr(value, "__html__"):
        return conditional_escape(value)
    return html.escape(str(value))

_KEY = 987654321  # a number no visit has in a URL reversed once and filled in
_CODE = "ZZCRFCODEZZ"
_SAFE = "!$&'()*+,;=/~:@"  # what reverse leaves unquoted (RFC 3986 sub-delimiters and "/~:@")


class _Urls:
    """The URLs the grid links to, reversed once per page."""

    def __init__(self) -> None:
        self.crf = reverse("crf_entry", args=[_KEY, _CODE])
        self.date = reverse("visit_date", args=[_KEY])
        self.mark = reverse("visit_mark", args=[_KEY])
        self.epro = reverse("epro_visit", args=[_KEY])
        self.signature = reverse("signature_visit", args=[_KEY])

    @staticmethod
    def of(pattern: str, pk: int, code: str = "") -> str:
        url = pattern.replace(str(_KEY), str(int(pk)))
        return url.replace(_CODE, quote(code, safe=_SAFE)) if code else url


class _Dates:
    """`{{ value|date:"DATE_FORMAT" }}`: "" when empty, a datetime in the current time zone; the
    format looked up once per page (the filter's `formats.date_format` looks it up per call)."""

    def __init__(self) -> None:
        self.format = formats.get_format("DATE_FORMAT")
        self.seen: dict = {}

    def __call__(self, value) -> str:  # noqa: ANN001
        if value in (None, ""):
            return ""
        if hasattr(value, "tzinfo"):
            value = template_localtime(value)
        text = self.seen.get(value)
        if text is None:
            text = self.seen[value] = _e(dateformat.format(value, self.format))
        return text


def _date(value) -> str:  # noqa: ANN001
    return _Dates()(value)


def _count(n: int) -> str:
    """A count as `{{ n }}` writes it (localised)."""
    return _e(formats.localize(n))


def lock_badge(lock, testid: str) -> str:  # noqa: ANN001
    """monitoring/lock_badge.html: a lock or freeze as a small badge, who, when and why in its title."""
    if not lock:
        return ""
    user = lock.locked_by
    who = user.get_full_name() or user.username
    title = f"{_e(who)} · {_date(lock.locked_at)}: {_e(lock.reason)}"
    if lock.kind == "lock":
        style, text = "text-bg-dark", _e(_("locked"))
    else:
        style, text = "text-bg-info", "❄ " + _e(_("frozen"))
    return f'<span class="badge {style}" title="{title}" data-testid="{_e(testid)}">{text}</span>'


def sign_badge(visit, signature, signature_url: str) -> str:  # noqa: ANN001
    """monitoring/sign_badge.html: a visit's signature state, linking to its signature page."""
    url = _e(_Urls.of(signature_url, visit.pk))
    testid = f"signature-{_e(visit.pk)}"
    state = signature.state if signature else ""
    if state == "valid":
        # blocktranslate: the variables escaped, the translated text as it is.
        title = _("Signed by %(name)s on %(when)s UTC") % {"name": _e(signature.printed_name), "when": _e(utc_moment(signature.signed_at))}
        signed = _e(_("signed"))
        return f'<a class="badge text-bg-success text-decoration-none" href="{url}" data-testid="{testid}" title="{title}">✍ {signed}</a>'
    if state == "broken":
        broken = _e(_("signature broken"))
        return (
            f'<a class="badge text-bg-danger text-decoration-none" href="{url}" data-testid="{testid}" '
            f'title="{_e(signature.broken_reason)}">✍ {broken}</a>'
        )
    if visit.visit_date:
        not_signed = _e(_("not signed"))
        return f'<a class="small" href="{url}" data-testid="{testid}">{not_signed}</a>'
    return ""


def grid_rows_html(grid: list[dict], *, can_act: bool, casebook_lock) -> SafeString:  # noqa: ANN001
    """The grid's `<tr>` rows (or its "No visits yet." row), each as the template wrote it."""
    if not grid:
        nothing = _e(_("No visits yet."))
        return mark_safe(f' <tr><td colspan="5" class="text-muted">{nothing}</td></tr> ')  # noqa: S308
    urls = _Urls()
    _date = _Dates()
    planned_label = _e(_("Planned"))
    window_label = _e(_("Window"))
    state_label = _e(_("State"))
    crfs_label = _e(_("CRFs"))
    out_title = _e(_("Done outside its window: a possible protocol deviation"))
    out_text = _e(_("out of window"))
    change_date = _e(_("change date"))
    visit_date_text = _e(_("visit date"))
    missed_text = _e(_("missed / not done"))
    questionnaires = _e(_("participant questionnaires"))
    not_started = _e(_("Not started"))
    optional = " · " + _e(_("optional"))
    locked = " · " + _e(_("locked"))
    frozen = " · " + _e(_("frozen"))
    query_title = _e(_("Open queries on this CRF"))
    visit_states = {value: _e(str(label)) for value, label in VisitStatus.choices}
    entry_states = {value: _e(str(label)) for value, label in EntryStatus.choices}
    closed = (VisitStatus.MISSED, VisitStatus.NOT_DONE)
    out = []
    for row in grid:
        visit = row["visit"]
        lock = row.get("lock")
        signature = row.get("signature")
        code = _e(visit.code or "")
        key = code or _e(visit.pk)
        pk = visit.pk
        window = (
            f'<span class="text-nowrap">{_date(visit.window_start)} –</span> <span class="text-nowrap">{_date(visit.window_end)}</span>'
            if visit.window_start else "—"
        )
        state = [f'<span class="badge edc-visit edc-visit-{_e(visit.status)}" data-testid="state-{key}">{visit_states.get(visit.status, _e(visit.status))}</span>']
        if visit.visit_date:
            late = f' <span class="badge text-bg-warning" title="{out_title}">{out_text}</span>' if visit.out_of_window else ""
            state.append(f'<div class="small">{_date(visit.visit_date)}{late}</div>')
        if lock or signature or visit.visit_date:
            state.append(f'<div class="small">{lock_badge(lock, "lock-visit")} {sign_badge(visit, signature, urls.signature)} </div>')
        if visit.status_reason and visit.status != VisitStatus.DONE:
            state.append(f'<div class="small text-muted">{_e(visit.status_reason)}</div>')
        if can_act and not lock and not casebook_lock and visit.status not in closed:
            if visit.visit_date:
                dates = f'<a href="{_e(urls.of(urls.date, pk))}">{change_date}</a>'
            else:
                dates = f'<a href="{_e(urls.of(urls.date, pk))}">{visit_date_text}</a> · <a href="{_e(urls.of(urls.mark, pk))}">{missed_text}</a>'
            state.append(f'<div class="small">{dates}</div>')
        # The template's last line of the cell ends with `</td>`: a space only when it is empty.
        if row.get("participant_reported") and can_act and visit.status not in closed:
            state.append(f'<div class="small"><a href="{_e(urls.of(urls.epro, pk))}" data-testid="epro-{key}">{questionnaires}</a></div>')
        else:
            state.append("")
        chips = []
        for cell in row["cells"]:
            link, entry = cell["link"], cell["entry"]
            status = (entry.status if entry is not None else "") or EntryStatus.NOT_STARTED
            href = _e(urls.of(urls.crf, pk, link.crf_code))
            crf_code = _e(link.crf_code)
            title = (entry_states.get(entry.status, _e(entry.status)) if entry is not None else not_started) + ("" if link.required else optional)
            mark = " ✓" if status == EntryStatus.COMPLETE else " …" if status == EntryStatus.IN_PROGRESS else ""
            cell_lock = cell.get("lock")
            if cell_lock:
                mark += locked if cell_lock.kind == "lock" else frozen
            chip = (
                f'<a class="badge rounded-pill me-1 mb-1 text-decoration-none edc-chip edc-chip-{_e(status)}" href="{href}" '
                f'data-testid="chip-{code}-{crf_code}" title="{title}">{crf_code}{mark}</a>'
            )
            n = entry.open_queries if entry is not None else 0
            if n:
                count = ngettext("%(n)s query open", "%(n)s queries open", n) % {"n": _count(n)}
                chip += (
                    f'<a class="badge rounded-pill text-bg-danger me-1 mb-1 text-decoration-none" href="{href}" '
                    f'data-testid="query-chip-{code}-{crf_code}" title="{query_title}">{count}</a>'
                )
            chips.append(chip)
        cells = "".join(f" {chip} " for chip in chips)
        out.append(
            f' <tr data-visit="{code or "unscheduled"}"><td class="edc-reflow-title">{_e(visit.label)}</td>'
            f'<td class="text-nowrap" data-label="{planned_label}">{_date(visit.planned_date) or "—"}</td> '
            f'<td class="small" data-label="{window_label}">{window}</td> '
            f'<td class="text-nowrap" data-label="{state_label}">{" ".join(state)}</td> '
            f'<td data-label="{crfs_label}">{cells}</td></tr>'
        )
    out.append(" ")
    return mark_safe("".join(out))  # noqa: S308 - every part above is escaped
