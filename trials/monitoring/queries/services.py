"""Data clarification queries: every write of a query and of its thread.

A query is raised by a monitor or a data manager (or by the system when a coordinator overrides a
soft edit check), answered by the site, then closed by a reviewer, re-opened or cancelled. Each
step appends a message to the thread and is audited (who, when, why). Closing requires that the
queried value changed since the query was raised, or a written justification: a query cannot be
made to disappear by closing it without an answer on record.
"""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save, system_user
from trials.monitoring.models import OPEN_QUERY_STATES, Query, QueryMessage, QueryMessageKind, QueryOrigin, QueryState
from trials.monitoring.queries.selectors import user_reviews_at
from trials.participants.selectors import user_enters_data_at
from trials.safety.models import AdverseEvent
from trials.protocol.engine import ROW_ID, CrfSchema, Item, schema_for
from trials.visits.models import CrfEntry, EntryStatus

MAX_TEXT = 4000
# Fields of an adverse event a query may name (the others are identity and bookkeeping).
AE_QUERY_ITEMS = (
    "verbatim_term", "coded_term", "onset_date", "end_date", "ongoing", "grade", "seriousness", "serious",
    "related_product", "procedure", "related_procedure", "expected", "action_taken", "outcome",
    "treatment_given", "aware_at", "is_dlt", "leads_to_withdrawal",
)


# --- What a query points at -----------------------------------------------------------------


def _group_of(schema: CrfSchema, name: str) -> Item | None:
    """The repeating group holding item `name` (None for a top-level item)."""
    for group in schema.groups:
        if any(child.name == name for child in group.children):
            return group
    return None


def _plain(value):  # noqa: ANN001, ANN202
    """A value as JSON stores it (dates as ISO strings), so that comparisons are like for like."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _digest(*values) -> str:  # noqa: ANN002
    return hashlib.sha256(json.dumps(values, cls=DjangoJSONEncoder, sort_keys=True).encode()).hexdigest()


def _entry_value(entry: CrfEntry, item: str, row_id: str) -> dict:
    """The queried data of an entry as it is now: one item (in one row), one row, or the whole entry."""
    if not item:
        return {"entry": _digest(entry.answers, entry.missing)}
    schema = schema_for(entry.crf)
    group = _group_of(schema, item)
    if group is None and any(g.name == item for g in schema.groups):
        rows = entry.answers.get(item) or []
        if not row_id:
            return {"rows": _digest(rows, entry.missing.get(item))}
        row = next((r for r in rows if r.get(ROW_ID) == row_id), None)
        return {"row": row} if row is not None else {"row_removed": True}
    if group is None:
        return {"value": entry.answers.get(item), "missing": entry.missing.get(item)}
    row = next((r for r in entry.answers.get(group.name) or [] if r.get(ROW_ID) == row_id), None)
    if row is None:
        return {"row_removed": True}
    missing = ((entry.missing.get(group.name) or {}).get(row_id) or {}).get(item)
    return {"value": row.get(item), "missing": missing}


def _ae_value(ae: AdverseEvent, item: str) -> dict:
    if item:
        return {"value": _plain(getattr(ae, f"{item}_id" if item == "coded_term" else item))}
    return {"ae": _digest({name: getattr(ae, f"{name}_id" if name == "coded_term" else name) for name in AE_QUERY_ITEMS})}


def query_current_value(query: Query) -> dict:
    """The queried data as stored now, in the form `value_at_raise` recorded it."""
    if query.adverse_event_id:
        return _ae_value(AdverseEvent.objects.get(pk=query.adverse_event_id), query.item)
    entry = CrfEntry.objects.select_related("crf").get(pk=query.entry_id)
    return _entry_value(entry, query.item, query.row_id)


def query_value_changed(query: Query) -> bool:
    """Whether the queried data changed since the query was raised."""
    return query_current_value(query) != query.value_at_raise


def _check_target(entry: CrfEntry | None, item: str, row_id: str, adverse_event: AdverseEvent | None) -> None:
    """The item must exist in the entry's CRF version (or be a field of the AE); a row must exist."""
    if (entry is None) == (adverse_event is None):
        raise ValidationError(_("A query is about a CRF entry or an adverse event."))
    if adverse_event is not None:
        if row_id:
            raise ValidationError({"row_id": _("An adverse event has no rows.")})
        if item and item not in AE_QUERY_ITEMS:
            raise ValidationError({"item": _("An adverse event has no item “%(item)s”.") % {"item": item}})
        return
    if entry.pk is None or entry.status == EntryStatus.NOT_STARTED:
        raise ValidationError(_("This CRF has no data yet: there is nothing to query."))
    if not item:
        if row_id:
            raise ValidationError({"row_id": _("Name the item of the row.")})
        return
    schema = schema_for(entry.crf)
    is_group = any(g.name == item for g in schema.groups)
    try:
        definition = schema.item(item)
    except KeyError:
        raise ValidationError(
            {"item": _("%(crf)s version %(version)s has no item “%(item)s”.") % {"crf": schema.code, "version": schema.version, "item": item}}
        ) from None
    if definition.type == "descriptive":
        raise ValidationError({"item": _("“%(item)s” is a text, not a question.") % {"item": item}})
    group = _group_of(schema, item)
    if group is None and not is_group:
        if row_id:
            raise ValidationError({"row_id": _("“%(item)s” is not in a repeating group.") % {"item": item}})
        return
    group_name = item if is_group else group.name
    if not row_id:
        if is_group:
            return  # the whole group (e.g. a row seems to be missing)
        raise ValidationError({"row_id": _("“%(item)s” is in the rows of %(group)s: say which row.") % {"item": item, "group": group_name}})
    if not any(r.get(ROW_ID) == row_id for r in entry.answers.get(group_name) or []):
        raise ValidationError({"row_id": _("This entry has no such row in %(group)s.") % {"group": group_name}})


def _text(text: str, *, required: bool, field: str = "text") -> str:
    text = (text or "").strip()
    if required and not text:
        raise ValidationError({field: _("Write the message.")})
    if "\x00" in text:
        raise ValidationError({field: _("The text contains a character that cannot be stored.")})
    if len(text) > MAX_TEXT:
        raise ValidationError({field: _("Keep it under %(n)s characters.") % {"n": MAX_TEXT}})
    return text


def _assert_queries_allowed(query: Query) -> None:
    """A lock (not a freeze) on the data stops its queries too (trials.records.locks)."""
    from trials.records.locks import assert_queries_allowed

    assert_queries_allowed(participant=query.participant, entry=query.entry, adverse_event=query.adverse_event)


def _message(query: Query, *, kind: str, user, text: str, at) -> QueryMessage:  # noqa: ANN001
    return audited_save(
        QueryMessage(query=query, kind=kind, text=text, author=user, at=at), user=user,
        reason=_("Query %(kind)s") % {"kind": QueryMessageKind(kind).label.lower()},
    )


def _locked(query: Query) -> Query:
    """The query re-read under a row lock: two reviewers acting at once act one after the other."""
    return Query.objects.select_for_update(of=("self",)).select_related("participant__site", "participant__trial", "entry", "adverse_event").get(pk=query.pk)


# --- Services -------------------------------------------------------------------------------


@transaction.atomic
def query_raise(
    *, user, entry: CrfEntry | None = None, item: str = "", row_id: str = "",  # noqa: ANN001
    adverse_event: AdverseEvent | None = None, text: str,
) -> Query:
    """Raise a query on an item (optionally of one row), a whole CRF entry, or an adverse event.

    Monitors and data managers of the participant's trial and site only; the value at the time is
    recorded so that closing can tell whether it changed."""
    item, row_id = (item or "").strip(), (row_id or "").strip()
    if entry is not None:
        entry = CrfEntry.objects.select_related("crf", "participant__site", "participant__trial").get(pk=entry.pk)
    participant = entry.participant if entry is not None else (adverse_event.participant if adverse_event else None)
    if participant is None:
        raise ValidationError(_("A query is about a CRF entry or an adverse event."))
    if not user_reviews_at(user, participant):
        raise PermissionDenied(_("Only the monitors and data managers of this site raise queries."))
    _check_target(entry, item, row_id, adverse_event)
    text = _text(text, required=True)
    now = timezone.now()
    query = Query(
        trial_id=participant.trial_id, site_id=participant.site_id, participant=participant, entry=entry, item=item,
        row_id=row_id, adverse_event=adverse_event, origin=QueryOrigin.MANUAL, text=text, raised_by=user, raised_at=now,
        value_at_raise=_entry_value(entry, item, row_id) if entry is not None else _ae_value(adverse_event, item),
    )
    _assert_queries_allowed(query)
    audited_save(query, user=user, reason=_("Query raised"))
    _message(query, kind=QueryMessageKind.RAISE, user=user, text=text, at=now)
    return query


@transaction.atomic
def query_answer(*, query: Query, user, text: str) -> Query:  # noqa: ANN001
    """The site's answer to an open query (coordinators and investigators of the site)."""
    query = _locked(query)
    if not user_enters_data_at(user, query.participant):
        raise PermissionDenied(_("Only the coordinators and investigators of this site answer queries."))
    if query.state != QueryState.OPEN:
        raise ValidationError(_("This query is %(state)s: it takes no answer.") % {"state": query.get_state_display().lower()})
    text = _text(text, required=True)
    _assert_queries_allowed(query)
    now = timezone.now()
    query.state = QueryState.ANSWERED
    audited_save(query, user=user, reason=_("Query answered"))
    _message(query, kind=QueryMessageKind.ANSWER, user=user, text=text, at=now)
    return query


def _reviewer_only(query: Query, user, action: str) -> None:  # noqa: ANN001
    if not user_reviews_at(user, query.participant):
        raise PermissionDenied(_("Only the monitors and data managers of this site %(action)s queries.") % {"action": action})


@transaction.atomic
def query_close(*, query: Query, user, justification: str = "") -> Query:  # noqa: ANN001
    """Close a query (monitors and data managers; never the site that answers it). The queried
    value must have changed since the query was raised, or the reviewer writes why it stands."""
    query = _locked(query)
    _reviewer_only(query, user, _("close"))
    if query.state not in OPEN_QUERY_STATES:
        raise ValidationError(_("This query is already %(state)s.") % {"state": query.get_state_display().lower()})
    justification = _text(justification, required=False, field="justification")
    changed = query_value_changed(query)
    if not changed and not justification:
        raise ValidationError({"justification": _(
            "The value has not changed since the query was raised: write why the query can be closed."
        )})
    _assert_queries_allowed(query)
    now = timezone.now()
    query.state, query.closed_by, query.closed_at = QueryState.CLOSED, user, now
    audited_save(query, user=user, reason=_("Query closed") + ("" if justification else _(" (value changed)")))
    _message(query, kind=QueryMessageKind.CLOSE, user=user, text=justification or _("Closed: the value was changed."), at=now)
    return query


@transaction.atomic
def query_reopen(*, query: Query, user, text: str) -> Query:  # noqa: ANN001
    """Send an answered or closed query back to the site, saying why."""
    query = _locked(query)
    _reviewer_only(query, user, _("re-open"))
    if query.state not in (QueryState.ANSWERED, QueryState.CLOSED):
        raise ValidationError(_("Only an answered or closed query can be re-opened."))
    text = _text(text, required=True)
    _assert_queries_allowed(query)
    now = timezone.now()
    query.state, query.closed_by, query.closed_at = QueryState.OPEN, None, None
    audited_save(query, user=user, reason=_("Query re-opened"))
    _message(query, kind=QueryMessageKind.REOPEN, user=user, text=text, at=now)
    return query


@transaction.atomic
def query_cancel(*, query: Query, user, text: str) -> Query:  # noqa: ANN001
    """End a query raised in error, without an answer (with the reason)."""
    query = _locked(query)
    _reviewer_only(query, user, _("cancel"))
    if query.state not in OPEN_QUERY_STATES:
        raise ValidationError(_("This query is already %(state)s.") % {"state": query.get_state_display().lower()})
    text = _text(text, required=True)
    _assert_queries_allowed(query)
    now = timezone.now()
    query.state, query.closed_by, query.closed_at = QueryState.CANCELLED, user, now
    audited_save(query, user=user, reason=_("Query cancelled"))
    _message(query, kind=QueryMessageKind.CANCEL, user=user, text=text, at=now)
    return query


@transaction.atomic
def query_comment(*, query: Query, user, text: str) -> QueryMessage:  # noqa: ANN001
    """Add to the thread of an open or answered query without changing its state (site or reviewer)."""
    query = _locked(query)
    if not (user_reviews_at(user, query.participant) or user_enters_data_at(user, query.participant)):
        raise PermissionDenied(_("You do not work on the data of this site."))
    if query.state not in OPEN_QUERY_STATES:
        raise ValidationError(_("This query is %(state)s: re-open it to continue.") % {"state": query.get_state_display().lower()})
    text = _text(text, required=True)
    _assert_queries_allowed(query)
    return _message(query, kind=QueryMessageKind.COMMENT, user=user, text=text, at=timezone.now())


def _warning_key(warning: dict) -> tuple:
    return warning.get("field") or "__all__", warning.get("expression") or warning.get("message")


def edit_check_queries_raise(*, entry: CrfEntry, previous_warnings: list[dict]) -> list[Query]:
    """Raise one query per soft edit check the coordinator newly overrode in this save.

    Called by trials.visits.services after a CRF save, inside its transaction. A check already
    overridden at the previous save, or with an open query, raises nothing (a second save is not a
    second query). A check inside a repeating group is queried on the group: the stored warning
    does not say which row fired it."""
    before = {_warning_key(w) for w in previous_warnings or []}
    new: dict[tuple, dict] = {}
    for warning in entry.warnings or []:
        key = _warning_key(warning)
        if key not in before:
            new.setdefault(key, warning)
    if not new:
        return []
    schema = schema_for(entry.crf)
    open_queries = set(
        Query.objects.filter(entry=entry, origin=QueryOrigin.EDIT_CHECK, state__in=OPEN_QUERY_STATES).values_list("item", "text")
    )
    robot = system_user()
    now = timezone.now()
    raised = []
    for (field, _expression), warning in new.items():
        item = "" if field == "__all__" else field
        group = _group_of(schema, item) if item else None
        if group is not None:
            item = group.name
        text = str(warning.get("message") or _expression)
        if (item, text) in open_queries:
            continue
        query = Query(
            trial_id=entry.participant.trial_id, site_id=entry.participant.site_id, participant_id=entry.participant_id,
            entry=entry, item=item, origin=QueryOrigin.EDIT_CHECK, text=text, raised_by=robot, raised_at=now,
            value_at_raise=_entry_value(entry, item, ""),
        )
        audited_save(query, user=robot, reason=_("Query raised: soft edit check overridden"))
        confirmed = warning.get("confirmed_by") or "?"
        _message(
            query, kind=QueryMessageKind.RAISE, user=robot, at=now,
            text=_("%(user)s confirmed this value against a soft edit check: “%(message)s”. Please review.")
            % {"user": confirmed, "message": text},
        )
        open_queries.add((item, text))
        raised.append(query)
    return raised


def rule_query_raise(
    *, entry: CrfEntry | None = None, adverse_event: AdverseEvent | None = None, item: str, text: str, rule_code: str, user,  # noqa: ANN001
) -> Query:
    """Raise the query of a data-quality rule hit (trials.monitoring.quality) on a CRF entry or an
    adverse event, under the system user. The caller decides that it is not a duplicate; a lock on
    the data refuses it (ValidationError)."""
    now = timezone.now()
    participant = entry.participant if entry is not None else adverse_event.participant
    query = Query(
        trial_id=participant.trial_id, site_id=participant.site_id, participant_id=participant.pk,
        entry=entry, adverse_event=adverse_event, item=item, origin=QueryOrigin.QUALITY_RULE, rule_code=rule_code,
        text=text, raised_by=user, raised_at=now,
        value_at_raise=_entry_value(entry, item, "") if entry is not None else _ae_value(adverse_event, item),
    )
    _assert_queries_allowed(query)
    audited_save(query, user=user, reason=_("Query raised: data-quality rule %(code)s") % {"code": rule_code})
    _message(query, kind=QueryMessageKind.RAISE, user=user, text=text, at=now)
    return query


def rule_query_close(*, query: Query, user) -> Query:  # noqa: ANN001
    """Close a data-quality rule's query because the data no longer hit the rule (audited, with the
    reason in the thread). A lock on the data refuses it (ValidationError): it closes at a later run."""
    query = _locked(query)
    if query.state not in OPEN_QUERY_STATES:
        return query
    _assert_queries_allowed(query)
    now = timezone.now()
    reason = _("Closed automatically: the data no longer hit data-quality rule %(code)s.") % {"code": query.rule_code}
    query.state, query.closed_by, query.closed_at = QueryState.CLOSED, user, now
    audited_save(query, user=user, reason=reason)
    _message(query, kind=QueryMessageKind.CLOSE, user=user, text=reason, at=now)
    return query
