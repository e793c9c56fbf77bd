"""The status grid of a trial: one row per participant, one column per (visit, CRF) of the protocol,
each cell a state a reviewer or a coordinator reads at a glance.

A fixed number of SQL queries whatever the number of participants (tested at 20 and 200): the
columns (visit definitions and their CRFs), the page of participants, then their visits, entries
(with open-query count and "verified at this revision" as annotations), valid signatures and active
locks, each one query over the page's participant ids. States are decided here, in Python, from
those rows; the rule for "overdue" is the protocol's window: a visit with no visit date, neither
missed nor not done, whose window closed before the site's today (Site.today()).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.core.paginator import Paginator
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.monitoring.queries.selectors import REVIEWER_ROLES
from trials.participants.models import Allocation, Participant
from trials.participants.selectors import DATA_ENTRY_ROLES, participants_for_user
from trials.protocol.models import Site, Trial, VisitCrf, VisitDefinition
from trials.protocol.selectors import sites_for_user, study_roles_for_user, user_sees_allocation
from trials.records.models import Lock, SdvMark, SdvState, Signature, SignatureState
from trials.visits.models import CrfEntry, EntryStatus, RecordKind, Visit, VisitStatus

PAGE_SIZE = 100


# The progress of one CRF at one visit (exactly one per cell) ...
NOT_STARTED, IN_PROGRESS, COMPLETE, NOT_EXPECTED = "not_started", "in_progress", "complete", "not_expected"
# ... and what the calendar and review say about it (any number per cell). Overdue is the visit's:
# its window closed with no visit date, so a complete entry at an overdue visit is both.
OVERDUE, OPEN_QUERY, SDV_DONE, SIGNED, LOCKED = "overdue", "open_query", "sdv_done", "signed", "locked"

# Order, icon (decorative: each is shown with its text) and label: the page's legend and its filter.
STATES: tuple[tuple[str, str, object], ...] = (
    (NOT_STARTED, "○", _("Not started")),
    (IN_PROGRESS, "◐", _("In progress")),
    (COMPLETE, "●", _("Complete")),
    (NOT_EXPECTED, "–", _("Not expected (visit missed or not done)")),
    (OVERDUE, "⚠", _("Overdue visit")),
    (OPEN_QUERY, "?", _("Open query")),
    (SDV_DONE, "✓", _("SDV done")),
    (SIGNED, "✍", _("Signed")),
    (LOCKED, "▣", _("Locked")),
)
STATE_CODES = frozenset(code for code, _icon, _label in STATES)
STATE_INFO = {code: (icon, label) for code, icon, label in STATES}


@dataclass
class Column:
    definition_id: int
    visit_label: str
    visit_code: str
    crf_code: str
    required: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> int:
        return self.counts.get(COMPLETE, 0)


@dataclass
class Cell:
    column: Column
    state: str | None = None  # None: the participant has no such visit (not scheduled)
    flags: tuple[str, ...] = ()
    open_queries: int = 0
    visit_id: int | None = None
    entry_id: int | None = None
    url: str = ""

    @property
    def states(self) -> tuple[str, ...]:
        return ((self.state,) if self.state else ()) + self.flags

    @property
    def badges(self) -> list[tuple[str, str, object]]:
        """(code, icon, label) of each state of the cell, for the page."""
        return [(code, *STATE_INFO[code]) for code in self.states]

    @property
    def text(self) -> str:
        """The cell's states in words (its accessible name and tooltip)."""
        words = []
        for code in self.states:
            label = str(STATE_INFO[code][1])
            words.append(f"{label} ({self.open_queries})" if code == OPEN_QUERY and self.open_queries > 1 else label)
        return ", ".join(words)


@dataclass
class Row:
    participant: Participant
    arm: str = ""
    cells: list[Cell] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Grid:
    trial: Trial
    sites: list[Site]
    site: Site | None
    state: str
    columns: list[Column]
    visits: list[tuple[str, str, int]]  # (visit code, label, number of CRF columns) for the header
    rows: list[Row]
    page: object
    shows_arm: bool
    legend: tuple = STATES


def grid_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """The trials of which the user may see a grid: those where she sees at least one site."""
    return Trial.objects.filter(pk__in=sites_for_user(user).values("trial_id"))


def _columns(trial: Trial) -> tuple[list[Column], list[tuple[str, str, int]]]:
    links = (
        VisitCrf.objects.filter(visit_definition__trial=trial, visit_definition__is_active=True, is_active=True)
        .select_related("visit_definition").order_by("visit_definition__order", "order")
    )
    columns, visits = [], []
    for link in links:
        definition: VisitDefinition = link.visit_definition
        columns.append(Column(definition.pk, definition.label, definition.code, link.crf_code, link.required))
        if visits and visits[-1][0] == definition.code:
            visits[-1] = (definition.code, definition.label, visits[-1][2] + 1)
        else:
            visits.append((definition.code, definition.label, 1))
    return columns, visits


def _progress(visit: Visit, entry: CrfEntry | None) -> str:
    if visit.status in (VisitStatus.MISSED, VisitStatus.NOT_DONE) and (entry is None or entry.status == EntryStatus.NOT_STARTED):
        return NOT_EXPECTED
    if entry is not None and entry.status == EntryStatus.COMPLETE:
        return COMPLETE
    if entry is not None and entry.status == EntryStatus.IN_PROGRESS:
        return IN_PROGRESS
    return NOT_STARTED


def visit_overdue(visit: Visit, today: date) -> bool:
    """The protocol's window rule (trials.visits.schedule): no visit date, neither missed nor not
    done, and the window closed before the site's today. Read from the window, not from the
    visit's stored calendar state, which the periodic refresh may not have moved yet."""
    return (
        visit.visit_date is None and visit.window_end is not None and visit.window_end < today
        and visit.status not in (VisitStatus.MISSED, VisitStatus.NOT_DONE, VisitStatus.DONE)
    )


def status_grid(user, trial: Trial, *, site_code: str = "", state: str = "", page: int | str = 1, link=None) -> Grid:  # noqa: ANN001, PLR0913
    """The grid of `trial` as `user` may see it (her sites only; the arm only if she sees
    allocation). `link(cell, participant, roles_at_site)` gives a cell its URL (the page's choice)."""
    sites = list(sites_for_user(user, trial=trial).order_by("code"))
    site = next((s for s in sites if s.code == site_code), None)
    state = state if state in STATE_CODES else ""
    columns, visit_heads = _columns(trial)
    participants = participants_for_user(user).filter(trial=trial).select_related("site")
    if site is not None:
        participants = participants.filter(site=site)
    if state:
        participants = participants.filter(pk__in=_participants_with(state, trial))
    paginator = Paginator(participants.order_by("site__code", "screening_number", "pk"), PAGE_SIZE)
    page_obj = paginator.get_page(page)
    people = list(page_obj.object_list)
    ids = [p.pk for p in people]
    shows_arm = user_sees_allocation(user, trial)
    arms = (
        dict(Allocation.objects.filter(participant_id__in=ids).values_list("participant_id", "arm__code")) if shows_arm and ids else {}
    )
    roles: dict[int | None, set[str]] = {}
    for site_id, role in study_roles_for_user(user).filter(trial=trial).values_list("site_id", "role"):
        roles.setdefault(site_id, set()).add(role)
    visits: dict[tuple[int, int], Visit] = {}
    entries: dict[tuple[int, str], CrfEntry] = {}
    signed_visits: set[int] = set()
    locks: list[Lock] = []
    if ids:
        for visit in Visit.objects.filter(participant_id__in=ids, record_kind=RecordKind.VISIT, definition__isnull=False).only(
            "id", "participant_id", "definition_id", "sequence", "status", "window_end", "visit_date"
        ).order_by("sequence"):
            visits.setdefault((visit.participant_id, visit.definition_id), visit)
        open_queries = Count("queries", filter=Q(queries__state__in=OPEN_QUERY_STATES), distinct=True)
        verified = Exists(SdvMark.objects.filter(entry=OuterRef("pk"), state=SdvState.VERIFIED, entry_revision=OuterRef("revision")))
        for entry in (
            CrfEntry.objects.filter(participant_id__in=ids, visit__record_kind=RecordKind.VISIT)
            .only("id", "visit_id", "crf_code", "status", "revision").annotate(open_queries=open_queries, verified=verified)
        ):
            entries[(entry.visit_id, entry.crf_code)] = entry
        signed_visits = set(
            Signature.objects.filter(participant_id__in=ids, visit__isnull=False, state=SignatureState.VALID).values_list("visit_id", flat=True)
        )
        locks = list(
            Lock.objects.filter(trial=trial, released_at__isnull=True)
            .filter(Q(participant__isnull=True) | Q(participant_id__in=ids)).only("id", "level", "participant_id", "visit_id", "entry_id")
        )
    trial_locked = any(lock.participant_id is None for lock in locks)
    locked_participants = {lock.participant_id for lock in locks if lock.visit_id is None and lock.entry_id is None}
    locked_visits = {lock.visit_id for lock in locks if lock.visit_id and not lock.entry_id}
    locked_entries = {lock.entry_id for lock in locks if lock.entry_id}
    rows = []
    todays: dict[str, date] = {}
    for participant in people:
        zone = participant.site.time_zone
        today = todays.setdefault(zone, participant.site.today())
        row = Row(participant, arms.get(participant.pk, ""))
        site_roles = roles.get(None, set()) | roles.get(participant.site_id, set())
        for column in columns:
            cell = Cell(column)
            visit = visits.get((participant.pk, column.definition_id))
            if visit is not None:
                entry = entries.get((visit.pk, column.crf_code))
                cell.visit_id, cell.entry_id = visit.pk, entry.pk if entry else None
                cell.state = _progress(visit, entry)
                flags = [OVERDUE] if visit_overdue(visit, today) else []
                if entry is not None and entry.open_queries:
                    flags.append(OPEN_QUERY)
                    cell.open_queries = entry.open_queries
                if entry is not None and entry.verified:
                    flags.append(SDV_DONE)
                if visit.pk in signed_visits:
                    flags.append(SIGNED)
                if trial_locked or participant.pk in locked_participants or visit.pk in locked_visits or (entry and entry.pk in locked_entries):
                    flags.append(LOCKED)
                cell.flags = tuple(flags)
                cell.url = link(cell, participant, site_roles) if link else ""
                for code in cell.states:
                    row.counts[code] = row.counts.get(code, 0) + 1
                    column.counts[code] = column.counts.get(code, 0) + 1
            row.cells.append(cell)
        rows.append(row)
    return Grid(trial, sites, site, state, columns, visit_heads, rows, page_obj, shows_arm)


def _participants_with(state: str, trial: Trial) -> QuerySet:
    """Ids of the trial's participants with at least one cell in `state` (the state filter), one
    subquery of the participants' query. Overdue uses each visit's window against the earliest
    possible site date; the grid then shows the exact cells."""
    entries = CrfEntry.objects.filter(participant__trial=trial, visit__record_kind=RecordKind.VISIT)
    visits = Visit.objects.filter(participant__trial=trial, record_kind=RecordKind.VISIT, definition__isnull=False)
    if state == COMPLETE:
        return entries.filter(status=EntryStatus.COMPLETE).values("participant_id")
    if state == IN_PROGRESS:
        return entries.filter(status=EntryStatus.IN_PROGRESS).values("participant_id")
    if state == OPEN_QUERY:
        return Query.objects.filter(trial=trial, state__in=OPEN_QUERY_STATES, entry__isnull=False).values("participant_id")
    if state == SDV_DONE:
        return SdvMark.objects.filter(
            entry__participant__trial=trial, state=SdvState.VERIFIED, entry_revision=F("entry__revision")
        ).values("entry__participant_id")
    if state == SIGNED:
        return Signature.objects.filter(participant__trial=trial, visit__isnull=False, state=SignatureState.VALID).values("participant_id")
    if state == LOCKED:
        if Lock.objects.filter(trial=trial, released_at__isnull=True, participant__isnull=True).exists():
            return Participant.objects.filter(trial=trial).values("pk")
        return Lock.objects.filter(trial=trial, released_at__isnull=True).values("participant_id")
    if state == NOT_EXPECTED:
        return visits.filter(status__in=[VisitStatus.MISSED, VisitStatus.NOT_DONE]).values("participant_id")
    if state == OVERDUE:
        closed = Q(pk__in=[])
        zones = {}
        for site_id, zone in Site.objects.filter(trial=trial).values_list("pk", "time_zone"):
            zones.setdefault(zone, []).append(site_id)
        for zone, site_ids in zones.items():
            today = Site(time_zone=zone).today()
            closed |= Q(participant__site_id__in=site_ids, window_end__lt=today)
        return (
            visits.filter(closed, visit_date__isnull=True)
            .exclude(status__in=[VisitStatus.MISSED, VisitStatus.NOT_DONE, VisitStatus.DONE]).values("participant_id")
        )
    # not started: a scheduled visit with a CRF column and no started entry; approximated by any
    # visit not done (the grid shows the exact cells)
    return visits.exclude(status__in=[VisitStatus.DONE, VisitStatus.MISSED, VisitStatus.NOT_DONE]).values("participant_id")


def reviews(site_roles: set[str]) -> bool:
    """Monitors and data managers open the form-view review from a cell."""
    return bool(site_roles & REVIEWER_ROLES)


def enters_data(site_roles: set[str]) -> bool:
    """Coordinators and investigators open the CRF page from a cell."""
    return bool(site_roles & DATA_ENTRY_ROLES)
