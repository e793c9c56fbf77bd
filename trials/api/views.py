"""The API's views: reads through the pages' selectors, writes through the services.

Every view derives from `ApiView` (or `ApiViewSet`): token or session authentication, the token's
scope, a rate per token, and one `ApiCall` row per request, whatever its answer.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connections, router
from django.db.models import Prefetch, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder as DrfJSONEncoder
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from trials.api import selectors
from trials.api import serializers as s
from trials.api.answers import parse_answers
from trials.api.labs import ImportRefused, labs_import, rows_from_csv
from trials.api.models import ApiToken
from trials.api.services import call_log
from trials.exports.formats import FORMATS
from trials.exports.models import ExportJob, ExportState
from trials.exports.selectors import exportable_trials, jobs_for_user
from trials.exports.services import export_download, export_request, exports_stale_requeue
from trials.exports.views import export_file_response
from trials.monitoring.audit.trail import entry_trail, participant_trail
from trials.monitoring.queries.services import query_answer, query_close
from trials.participants.services import user_acts_at
from trials.protocol.engine import schema_for
from trials.participants.models import Participant
from trials.protocol.models import CrfDefinition, Site, VisitCrf, VisitDefinition
from trials.safety.models import AdverseEvent
from trials.safety.services import ae_save
from trials.visits.models import CrfEntry, Visit
from trials.visits.schedule import visit_record_date
from trials.visits.services import CrfEntryConflict, UnconfirmedWarnings, crf_entry_save_answers


class RawJSON(str):
    """A response body already encoded as JSON text (JSONRenderer sends it as it is)."""


class PassThroughJSONRenderer(JSONRenderer):
    """DRF's JSON renderer; a RawJSON body is sent as it is (with the same escapes of U+2028 and
    U+2029 as DRF's)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, RawJSON):
            return data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
        return super().render(data, accepted_media_type, renderer_context)


# DRF's JSONRenderer's encoding (compact, UTF-8 as is, no NaN), one encoder for every call.
_ENCODER = DrfJSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json(value) -> str:
    return _ENCODER.encode(value)


def _json_row(row: dict, keys, raw=()) -> str:
    """The object `row` (its `keys` in order) as JSON text; the keys in `raw` hold JSON text
    already (the database's) and are written as they are. One encoding per run of other keys."""
    parts, run = [], {}
    for key in keys:
        if key in raw:
            if run:
                parts.append(_json(run)[1:-1])
                run = {}
            parts.append(f'"{key}":' + (row[key] or "null"))
        else:
            run[key] = row[key]
    if run:
        parts.append(_json(run)[1:-1])
    return "{" + ",".join(parts) + "}"


class Cursor(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "id"

    def decode_cursor(self, request):
        """DRF's cursor (base64 of `p=<position>`), whose position, an id, any client can craft: one
        that is no whole number is an invalid cursor (404, DRF's answer), one beyond a bigint is
        held at the bigint's bounds (what it selects is the same), never a database error."""
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        try:
            position = int(cursor.position)
        except (TypeError, ValueError):
            raise NotFound(self.invalid_cursor_message) from None
        return cursor._replace(position=str(min(max(position, -MAX_ID - 1), MAX_ID)))


class LoggedMixin:
    """One ApiCall row per request (who, token, method, path, status), 401s and 429s included."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        token = getattr(request, "_auth", None)
        call_log(
            user=getattr(request, "_user", None), token=token if isinstance(token, ApiToken) else None,
            method=request.method, path=request.path, query=request.META.get("QUERY_STRING", ""), status=response.status_code,
        )
        return response

    @property
    def token(self) -> ApiToken | None:
        return self.request.auth if isinstance(self.request.auth, ApiToken) else None

    def scope_trials(self) -> list:
        """api_trials(user, token), read once per request: the scope and the arm masks share it."""
        if getattr(self, "_scope_trials", None) is None:
            self._scope_trials = list(selectors.api_trials(self.request.user, self.token))
        return self._scope_trials

    def masks(self) -> dict:
        if getattr(self, "_masks", None) is None:
            self._masks = selectors.arm_masks(self.request.user, self.scope_trials())
        return self._masks

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "masks": self.masks()}


class ApiView(LoggedMixin, APIView):
    def get_serializer_context(self) -> dict:
        return {"request": self.request, "view": self, "masks": self.masks()}


MAX_ID = 2**63 - 1  # a bigint: a larger number is no object (and would be a database error)


def _int(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValidationError({name: [_("Give a whole number.")]}) from None
    if not 0 <= number <= MAX_ID:
        raise ValidationError({name: [_("No such object.")]})
    return number


def _text(request, name: str) -> str | None:
    """A text filter; a NUL character (which no stored text holds) is a 400, not a database error."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if "\x00" in value:
        raise ValidationError({name: [_("This value contains a character that cannot be stored.")]})
    return value


class BoundedLookup:
    """An id in the path beyond a bigint answers 404 (the router's int converter takes any length)."""

    def get_object(self):
        if int(self.kwargs.get(self.lookup_field, 0)) > MAX_ID:
            raise NotFound
        return super().get_object()


class ServiceRefused(Exception):
    """A service's refusal, as the API answers it."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _service(call):
    """Run a write service; its refusals become answers: PermissionDenied 403, a lock or freeze
    409 (code "locked"), a ValidationError 400 naming the fields ("__all__" as non_field_errors)."""
    try:
        return call()
    except DjangoPermissionDenied as denied:
        raise ServiceRefused(Response({"detail": str(denied)}, status=status.HTTP_403_FORBIDDEN)) from None
    except DjangoValidationError as invalid:
        if getattr(invalid, "code", None) == "locked":
            raise ServiceRefused(Response({"detail": " ".join(invalid.messages), "code": "locked"}, status=status.HTTP_409_CONFLICT)) from None
        if hasattr(invalid, "error_dict"):
            body = {("non_field_errors" if k == "__all__" else k): v for k, v in invalid.message_dict.items()}
        else:
            body = {"non_field_errors": invalid.messages}
        raise ServiceRefused(Response(body, status=status.HTTP_400_BAD_REQUEST)) from None


class RefusalMixin:
    def handle_exception(self, exc):
        if isinstance(exc, ServiceRefused):
            return exc.response
        return super().handle_exception(exc)


FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description="Field name -> list of messages; `warnings` when soft checks need confirm_warnings.")
LOCKED = OpenApiResponse(OpenApiTypes.OBJECT, description="A lock or freeze covers the data (code: locked); nothing was written.")
REFUSED = OpenApiResponse(OpenApiTypes.OBJECT, description="Your role may not do this here (or the participant has not consented).")
ABSENT = OpenApiResponse(OpenApiTypes.OBJECT, description="No such object in your sites and trials.")


def _object_body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ValidationError({"non_field_errors": [_("Send a JSON object.")]})
    return request.data


TRIAL = OpenApiParameter("trial", str, description="Trial code")
SITE = OpenApiParameter("site", str, description="Site code")


class ReadViewSet(BoundedLookup, LoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    pagination_class = Cursor
    lookup_value_converter = "int"
    trial_field = "participant__trial__code"
    site_field = "participant__site__code"

    def filtered(self, qs):  # noqa: ANN001, ANN201
        """The list's filters (a detail, its audit or a save ignore them)."""
        if self.action != "list":
            return qs
        trial, site = _text(self.request, "trial"), _text(self.request, "site")
        if trial and self.trial_field:
            qs = qs.filter(**{self.trial_field: trial})
        if site and self.site_field:
            qs = qs.filter(**{self.site_field: site})
        return qs


@extend_schema(parameters=[])
class TrialViewSet(ReadViewSet):
    """Trials the token names and the user holds a role in."""

    serializer_class = s.TrialSerializer

    def get_queryset(self):
        return selectors.api_trials(self.request.user, self.token).order_by("id")


@extend_schema(parameters=[TRIAL])
class SiteViewSet(ReadViewSet):
    serializer_class = s.SiteSerializer
    trial_field, site_field = "trial__code", None

    def get_queryset(self):
        return self.filtered(selectors.api_sites(self.request.user, self.token)).order_by("id")


@extend_schema(parameters=[TRIAL])
class VisitDefinitionViewSet(ReadViewSet):
    """The visit plan: visits, their day offsets, windows and CRFs."""

    serializer_class = s.VisitDefinitionSerializer
    trial_field, site_field = "trial__code", None

    def get_queryset(self):
        links = VisitCrf.objects.select_related("crf").defer("crf__definition")
        return self.filtered(selectors.api_visit_definitions(self.request.user, self.token)).prefetch_related(
            Prefetch("visit_crfs", queryset=links)
        ).order_by("id")


@extend_schema(parameters=[OpenApiParameter("code", str, description="CRF code")])
class CrfDefinitionViewSet(ReadViewSet):
    """Every version of the CRFs the user's trials use, with the CRF file (items, types, checks)."""

    serializer_class = s.CrfDefinitionSerializer
    trial_field = site_field = None

    def get_queryset(self):
        qs = selectors.api_crfs(self.request.user, self.token)
        code = _text(self.request, "code") if self.action == "list" else None
        if code:
            qs = qs.filter(code=code)
        return qs.order_by("id")


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("status", str)])
class ParticipantViewSet(ReadViewSet):
    """Participants at the user's sites; the allocation as the pages show it to this user."""

    serializer_class = s.ParticipantSerializer
    trial_field, site_field = "trial__code", "site__code"

    def get_queryset(self):
        qs = self.filtered(selectors.api_participants(self.request.user, self.token))
        state = _text(self.request, "status") if self.action == "list" else None
        if state:
            qs = qs.filter(status=state)
        return qs.order_by("id")

    @extend_schema(responses=s.AuditRowSerializer(many=True), parameters=[])
    @action(detail=True, methods=["get"], pagination_class=None)
    def audit(self, request, pk=None):
        """The audit trail of the participant's data, as the audit page shows it to this user."""
        participant = self.get_object()
        return Response(_masked_trail(self, participant.trial_id, participant_trail(request.user, participant)))


def _masked_trail(view, trial_id: int, trail: list) -> list:
    mask = view.masks().get(trial_id)
    return [selectors.masked(s.AuditRowSerializer(row).data, mask) for row in trail]


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("participant", int)])
class VisitViewSet(RefusalMixin, ReadViewSet):
    serializer_class = s.VisitSerializer

    def get_queryset(self):
        qs = self.filtered(selectors.api_visits(self.request.user, self.token))
        participant = _int(self.request, "participant") if self.action == "list" else None
        if participant is not None:
            qs = qs.filter(participant_id=participant)
        return qs.order_by("id")

    @extend_schema(parameters=[], request=s.VisitDateSerializer, responses={200: s.VisitSerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    @action(detail=True, methods=["post"], url_path="date", pagination_class=None)
    def record_date(self, request, pk=None):
        """Record (or, with a reason, correct) the date the visit took place: the visit page's
        service (done, out-of-window flag and deviation, locks, signatures breaking, audit)."""
        visit = self.get_object()
        if not user_acts_at(request.user, visit.participant.site):
            return Response({"detail": _("You do not enter data at this site.")}, status=status.HTTP_403_FORBIDDEN)
        payload = s.VisitDateSerializer(data=_object_body(request))
        payload.is_valid(raise_exception=True)
        values = payload.validated_data
        _service(lambda: visit_record_date(visit, user=request.user, visit_date=values["visit_date"], reason=values["reason"]))
        fresh = selectors.api_visits(request.user, self.token).get(pk=visit.pk)
        return Response(s.VisitSerializer(fresh, context=self.get_serializer_context()).data)


ENTRY_FILTERS = [
    TRIAL, SITE,
    OpenApiParameter("crf", str, description="CRF code, e.g. DU_ASSESS"),
    OpenApiParameter("visit", str, description="Visit code of the plan, e.g. W12"),
    OpenApiParameter("participant", int),
    OpenApiParameter("changed_since", OpenApiTypes.DATETIME, description="Only entries saved at or after (ISO 8601): incremental pulls"),
]

CONFLICT = OpenApiResponse(
    inline_serializer("Conflict", {"detail": serializers.CharField(), "current_revision": serializers.IntegerField(allow_null=True)}),
    description="Someone saved the entry since the revision you read; nothing was written.",
)


# The list's columns (CrfEntrySerializer's fields, read with values()).
ENTRY_ROW = {
    "id": "id", "participant": "participant_id", "participant__subject_number": "participant__subject_number",
    "participant__screening_number": "participant__screening_number", "participant__trial_id": "participant__trial_id",
    "trial": "participant__trial_id", "site": "participant__site_id", "visit": "visit_id", "visit_code": "visit__definition__code",
    "crf_code": "crf_code", "crf_version": "crf__version", "status": "status", "revision": "revision", "answers": "answers",
    "missing": "missing", "warnings": "warnings", "updated_at": "updated_at",
}
ENTRY_ROW_ONLY = frozenset({"participant__subject_number", "participant__screening_number", "participant__trial_id"})
ENTRY_KEYS = s.CrfEntrySerializer.Meta.fields
# The stored JSON columns read as the database's JSON text (jsonb::text on PostgreSQL).
JSON_TEXT_KEYS = ("answers", "missing", "warnings")
JSON_TEXT = {f"{key}_text": Cast(key, TextField()) for key in JSON_TEXT_KEYS}
ENTRY_ROW.update({key: f"{key}_text" for key in JSON_TEXT_KEYS})


@dataclass(frozen=True)
class EntryFilters:
    """The entries list's filters, read once from the query string. `trial_ids` / `site_ids`: the
    scope's trials and sites of that code (None: no such filter); the scope itself is applied
    apart (api_entries, EntryPageSql)."""

    trial_ids: list[int] | None = None
    site_ids: list[int] | None = None
    crf: str | None = None
    visit: str | None = None
    participant: int | None = None
    since: datetime | None = None


def _entry_filters(request, sites: list, trials: list) -> EntryFilters:
    """Trial and site codes are matched against the scope's sites already read (an entry is only
    ever at one of them): no join on the trial and site tables, whose planning cost PostgreSQL
    more than their reading on every page."""
    trial_code, site_code = _text(request, "trial"), _text(request, "site")
    since = None
    since_text = _text(request, "changed_since")
    if since_text:
        since = _moment(since_text.replace(" ", "+"))
        if since is None:
            raise ValidationError({"changed_since": [_("Give a date and time in ISO 8601, e.g. 2026-01-31T00:00:00Z.")]})
    return EntryFilters(
        trial_ids=[t.pk for t in trials if t.code == trial_code] if trial_code else None,
        site_ids=[site.pk for site in sites if site.code == site_code] if site_code else None,
        crf=_text(request, "crf"), visit=_text(request, "visit"), participant=_int(request, "participant"), since=since,
    )


def entry_json_sql() -> str:
    """PostgreSQL's JSON text of an entry (aliases e, p, vd, c of EntryPageSql), the keys and
    values of CrfEntrySerializer: `trial` and `site` looked up in two JSON maps (id -> code) of the
    scope (parameters 1 and 2), `updated_at` as DRF writes it in UTC (ISO 8601, "Z", the
    microseconds only when there are some, as Python's isoformat)."""
    updated = (
        "to_char(e.updated_at AT TIME ZONE 'UTC', CASE WHEN date_part('microseconds', e.updated_at)::bigint %% 1000000 = 0 "
        "THEN 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"' ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"' END)"
    )
    return (
        "json_build_object('id', e.id, 'participant', e.participant_id, 'subject', COALESCE(NULLIF(p.subject_number, ''), p.screening_number), "
        "'trial', %s::jsonb ->> p.trial_id::text, 'site', %s::jsonb ->> p.site_id::text, 'visit', e.visit_id, 'visit_code', vd.code, "
        "'crf_code', e.crf_code, 'crf_version', c.version, 'status', e.status, 'revision', e.revision, 'answers', e.answers, "
        f"'missing', e.missing, 'warnings', e.warnings, 'updated_at', {updated})::text"
    )


class EntryPageSql:
    """The entries of the scope's sites matching `filters`, as EntryRows, for
    DRF's CursorPagination: it calls order_by("id" or "-id"), filter(id__gt= / id__lt=) and takes
    one slice, which runs one hand-written query (PostgreSQL). The same rows as api_entries'
    queryset with the same filters (a test compares them)."""

    def __init__(self, sites: list, filters: EntryFilters) -> None:
        self.sites, self.filters = sites, filters
        self.descending, self.after, self.before = False, None, None

    def _copy(self, **changes) -> EntryPageSql:
        other = EntryPageSql(self.sites, self.filters)
        other.descending, other.after, other.before = self.descending, self.after, self.before
        for name, value in changes.items():
            setattr(other, name, value)
        return other

    def order_by(self, *ordering: str) -> EntryPageSql:
        if tuple(ordering) not in {("id",), ("-id",)}:
            raise ValueError(f"EntryPageSql orders by id only, not {ordering}")
        return self._copy(descending=ordering[0] == "-id")

    def filter(self, **lookup) -> EntryPageSql:
        ((name, value),) = lookup.items()
        try:  # a cursor's position: a crafted cursor may hold any text or number
            position = min(max(int(value), -MAX_ID - 1), MAX_ID)
        except (TypeError, ValueError):
            raise NotFound(Cursor.invalid_cursor_message) from None
        if name == "id__gt":
            return self._copy(after=position)
        if name == "id__lt":
            return self._copy(before=position)
        raise ValueError(f"EntryPageSql filters by id__gt / id__lt only, not {name}")

    def __getitem__(self, window: slice) -> list[EntryRow]:
        f = self.filters
        site_ids = [site.pk for site in self.sites]
        trial_ids = sorted({site.trial_id for site in self.sites})
        if f.site_ids is not None:
            site_ids = [pk for pk in site_ids if pk in f.site_ids]
        if f.trial_ids is not None:
            trial_ids = [pk for pk in trial_ids if pk in f.trial_ids]
        if not site_ids or not trial_ids:
            return []
        trial_codes = _json({str(site.trial_id): site.trial.code for site in self.sites})
        site_codes = _json({str(site.pk): site.code for site in self.sites})
        where, params = ["p.site_id = ANY(%s)", "p.trial_id = ANY(%s)"], [site_ids, trial_ids]
        for condition, value in (
            ("e.crf_code = %s", f.crf), ("vd.code = %s", f.visit), ("e.participant_id = %s", f.participant),
            ("e.updated_at >= %s", f.since), ("e.id > %s", self.after), ("e.id < %s", self.before),
        ):
            if value is not None and value != "":
                where.append(condition)
                params.append(value)
        start, stop = window.start or 0, window.stop
        sql = (
            f"SELECT e.id, p.trial_id, {entry_json_sql()} FROM {CrfEntry._meta.db_table} e "
            f"JOIN {Participant._meta.db_table} p ON p.id = e.participant_id "
            f"JOIN {Visit._meta.db_table} vv ON vv.id = e.visit_id "
            f"LEFT JOIN {VisitDefinition._meta.db_table} vd ON vd.id = vv.definition_id "
            f"JOIN {CrfDefinition._meta.db_table} c ON c.id = e.crf_id "
            f"WHERE {' AND '.join(where)} ORDER BY e.id {'DESC' if self.descending else 'ASC'} LIMIT %s OFFSET %s"
        )
        with connections[router.db_for_read(CrfEntry)].cursor() as cursor:
            cursor.execute(sql, [trial_codes, site_codes, *params, stop - start, start])
            return [EntryRow(*row) for row in cursor.fetchall()]


class EntryRow:
    """One entry of a page: its id (the cursor's position), its trial's id (the arm mask) and its JSON text."""

    __slots__ = ("id", "trial_id", "text")

    def __init__(self, id: int, trial_id: int, text: str) -> None:  # noqa: A002
        self.id, self.trial_id, self.text = id, trial_id, text


@extend_schema(parameters=ENTRY_FILTERS)
class CrfEntryViewSet(BoundedLookup, LoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CRF entries: answers by item name, status, revision, CRF version."""

    renderer_classes = [PassThroughJSONRenderer]

    def scope_sites(self) -> list:
        """api_sites(user, token) with their trials, read once per request (one query)."""
        if getattr(self, "_scope_sites", None) is None:
            self._scope_sites = selectors.api_scope_sites(self.request.user, self.token)
        return self._scope_sites

    def scope_trials(self) -> list:
        """The trials of the scope's sites: an entry is only ever read at one of these sites, so
        their masks are the only ones its rows need (no second query for the trials)."""
        return list({site.trial_id: site.trial for site in self.scope_sites()}.values())

    pagination_class = Cursor
    lookup_value_converter = "int"
    serializer_class = s.CrfEntrySerializer

    def get_queryset(self):
        qs = selectors.api_entries(self.request.user, self.token, self.scope_sites())
        if self.action != "list":
            return qs.order_by("id")
        # Trial and site codes are matched against the scope's sites already read (an entry is only
        # ever at one of them): no join on the trial and site tables, whose planning cost PostgreSQL
        # more than their reading on every page.
        f = _entry_filters(self.request, self.scope_sites(), self.scope_trials())
        if f.trial_ids is not None:
            qs = qs.filter(participant__trial_id__in=f.trial_ids)
        if f.site_ids is not None:
            qs = qs.filter(participant__site_id__in=f.site_ids)
        if f.crf:
            qs = qs.filter(crf_code=f.crf)
        if f.visit:
            qs = qs.filter(visit__definition__code=f.visit)
        if f.participant is not None:
            qs = qs.filter(participant_id=f.participant)
        if f.since is not None:
            qs = qs.filter(updated_at__gte=f.since)
        return qs.order_by("id")

    def list(self, request, *args, **kwargs):
        if connections[router.db_for_read(CrfEntry)].vendor == "postgresql" and timezone.get_current_timezone_name() == "UTC":
            return self._list_sql(request)
        return self._list_rows(request)

    def _list_sql(self, request):
        """The page as PostgreSQL writes it: one hand-written keyset query (EntryPageSql) returns
        each entry as its JSON text (`entry_json_sql`: the same keys, in the same order, as
        CrfEntrySerializer and `_list_rows`), paged by DRF's own CursorPagination (same cursors and
        links). No ORM query building and no Python work per row, except for the rows of a trial
        whose arms the user may not see: those are decoded and their answers, missing and warnings
        passed through the exports' arm mask, as `_list_rows` does (tests/bench/bench_api.py)."""
        sites = self.scope_sites()
        filters = _entry_filters(request, sites, self.scope_trials())
        page = self.paginate_queryset(EntryPageSql(sites, filters))
        masks = self.masks()
        rows = []
        for entry in page:
            text, mask = entry.text, masks.get(entry.trial_id)
            if mask:
                row = json.loads(text)
                for key in JSON_TEXT_KEYS:
                    row[key] = selectors.masked(row[key], mask)
                text = _json(row)
            rows.append(text)
        paginator = self.paginator
        body = '{"next":%s,"previous":%s,"results":[%s]}' % (_json(paginator.get_next_link()), _json(paginator.get_previous_link()), ",".join(rows))
        return Response(RawJSON(body))

    def _list_rows(self, request):
        """A page of entries read as rows, not model instances: building seven objects per entry
        (entry, participant, trial, site, visit, its definition, CRF) and sending their init
        signals was most of a page's time (tests/bench/bench_api.py). The same JSON as the detail.

        The stored answers, missing and warnings are read as the database's JSON text and written
        into the page as they are (a RawJSON body), not decoded and encoded again; only the rows of
        a trial whose arms the user may not see are decoded, so that their texts go through the
        exports' arm mask."""
        page = self.paginate_queryset(self.get_queryset().annotate(**JSON_TEXT).values(*dict.fromkeys(ENTRY_ROW.values())))
        masks = self.masks()
        site_codes = {site.pk: site.code for site in self.scope_sites()}
        trial_codes = {trial.pk: trial.code for trial in self.scope_trials()}
        when = serializers.DateTimeField()
        rows = []
        for values in page:
            row = {key: values[column] for key, column in ENTRY_ROW.items() if key not in ENTRY_ROW_ONLY}
            row["subject"] = values["participant__subject_number"] or values["participant__screening_number"]
            row["trial"], row["site"] = trial_codes[row["trial"]], site_codes[row["site"]]
            row["updated_at"] = when.to_representation(values["updated_at"])
            mask = masks.get(values["participant__trial_id"])
            if mask:
                for key in JSON_TEXT_KEYS:
                    row[key] = selectors.masked(json.loads(row[key]), mask)
                rows.append(_json_row(row, ENTRY_KEYS))
            else:
                rows.append(_json_row(row, ENTRY_KEYS, raw=JSON_TEXT_KEYS))
        paginator = self.paginator
        body = '{"next":%s,"previous":%s,"results":[%s]}' % (_json(paginator.get_next_link()), _json(paginator.get_previous_link()), ",".join(rows))
        return Response(RawJSON(body))

    @extend_schema(
        parameters=[], request=s.CrfEntryWriteSerializer,
        responses={200: s.CrfEntrySerializer, 201: s.CrfEntrySerializer, 400: FIELD_ERRORS, 403: OpenApiResponse(OpenApiTypes.OBJECT), 404: OpenApiResponse(OpenApiTypes.OBJECT), 409: CONFLICT},
    )
    def create(self, request):
        """Save a CRF entry (first save: expected_revision 0; later saves: the revision you read),
        with the page's validation, checks, locks, consent gating and reasons."""
        payload = s.CrfEntryWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        visit = selectors.api_visits(request.user, self.token).filter(pk=data["visit"]).first()
        if visit is None:
            raise NotFound(_("No such visit."))
        return _save(self, request, visit, data)

    @extend_schema(
        parameters=[], request=s.CrfEntryWriteSerializer,
        responses={200: s.CrfEntrySerializer, 400: FIELD_ERRORS, 403: OpenApiResponse(OpenApiTypes.OBJECT), 404: OpenApiResponse(OpenApiTypes.OBJECT), 409: CONFLICT},
    )
    def update(self, request, pk=None):
        """Save this entry again (visit and crf_code are the entry's)."""
        entry = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": [_("Send a JSON object.")]})
        payload = s.CrfEntryWriteSerializer(data={**request.data, "visit": entry.visit_id, "crf_code": entry.crf_code})
        payload.is_valid(raise_exception=True)
        return _save(self, request, entry.visit, payload.validated_data)

    @extend_schema(responses=s.AuditRowSerializer(many=True), parameters=[])
    @action(detail=True, methods=["get"], pagination_class=None)
    def audit(self, request, pk=None):
        """The audit trail of this entry (its saves item by item, queries, SDV, signatures, locks)."""
        entry = self.get_object()
        return Response(_masked_trail(self, entry.participant.trial_id, entry_trail(request.user, entry)))


def _moment(text: str):
    """An ISO 8601 moment in UTC (a naive one is UTC), or None if it is not one the database holds."""
    try:
        moment = parse_datetime(text)
    except ValueError:
        return None
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _save(view, request, visit, data: dict) -> Response:
    crf_code = data["crf_code"]
    entry = CrfEntry.objects.filter(visit=visit, crf_code=crf_code).select_related("crf").first()
    if entry is not None:
        crf = entry.crf
    else:
        link = VisitCrf.objects.filter(visit_definition=visit.definition_id, crf_code=crf_code, is_active=True).select_related("crf").first()
        if visit.definition_id is not None and link is None:
            raise ValidationError({"crf_code": [_("CRF %(code)s is not part of this visit.") % {"code": crf_code}]})
        crf = link.crf if link else None
    if crf is None:
        raise ValidationError({"crf_code": [_("Save log and unscheduled entries on their page.")]})
    answers, errors = parse_answers(schema_for(crf), data["answers"])
    if errors:
        raise ValidationError(errors)
    try:
        saved = crf_entry_save_answers(
            user=request.user, visit=visit, crf_code=crf_code, answers=answers, missing=data.get("missing") or None,
            complete=data["complete"], reason=data["reason"], expected_revision=data["expected_revision"],
            confirm_warnings=data["confirm_warnings"],
        )
    except CrfEntryConflict as conflict:
        current = conflict.current()
        return _conflict(current)
    except IntegrityError:  # a concurrent first save won
        return _conflict(CrfEntry.objects.filter(visit=visit, crf_code=crf_code).first())
    except UnconfirmedWarnings as pending:
        return Response(
            {"warnings": [{"field": w["field"], "message": str(w["message"])} for w in pending.warnings],
             "detail": _("Soft checks fired: check the values, then send again with confirm_warnings true.")},
            status=status.HTTP_400_BAD_REQUEST,
        )
    except DjangoPermissionDenied as denied:
        return Response({"detail": str(denied)}, status=status.HTTP_403_FORBIDDEN)
    except DjangoValidationError as invalid:
        if getattr(invalid, "code", None) == "locked":
            return Response({"detail": " ".join(invalid.messages), "code": "locked"}, status=status.HTTP_409_CONFLICT)
        body = invalid.message_dict if hasattr(invalid, "error_dict") else {"non_field_errors": invalid.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    saved = CrfEntry.objects.select_related("participant__trial", "participant__site", "visit__definition", "crf").get(pk=saved.pk)
    code = status.HTTP_201_CREATED if saved.revision == 1 else status.HTTP_200_OK
    return Response(s.CrfEntrySerializer(saved, context=view.get_serializer_context()).data, status=code)


def _conflict(current: CrfEntry | None) -> Response:
    return Response(
        {"detail": _("This entry was saved by someone else since the revision you read; nothing was written."),
         "current_revision": current.revision if current else None},
        status=status.HTTP_409_CONFLICT,
    )


AE_FIELDS = (
    "verbatim_term", "coded_term", "onset_date", "end_date", "ongoing", "grade", "seriousness", "related_product", "procedure",
    "related_procedure", "action_taken", "outcome", "treatment_given", "aware_at", "serious_aware_at", "is_dlt", "leads_to_withdrawal",
)


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("participant", int)])
class AdverseEventViewSet(RefusalMixin, ReadViewSet):
    """Adverse events; record one (POST) or follow it up (PUT/PATCH, with a reason) through the AE
    form's service: its rules, reporting clocks, locks, the casebook signature breaking, audit."""

    serializer_class = s.AdverseEventSerializer

    def get_queryset(self):
        qs = self.filtered(selectors.api_adverse_events(self.request.user, self.token))
        participant = _int(self.request, "participant") if self.action == "list" else None
        if participant is not None:
            qs = qs.filter(participant_id=participant)
        return qs.order_by("id")

    @extend_schema(parameters=[], request=s.AdverseEventWriteSerializer, responses={201: s.AdverseEventSerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    def create(self, request):
        """Record a new AE of a participant (coordinators and investigators of her site)."""
        data = _object_body(request)
        participant_id = _int_value(data.get("participant"), "participant")
        participant = selectors.api_participants(request.user, self.token).select_related("site", "trial").filter(pk=participant_id).first()
        if participant is None:
            raise NotFound(_("No such participant."))
        ae = AdverseEvent(participant=participant)
        return self._save(request, ae, data, partial=False, created=True)

    @extend_schema(parameters=[], request=s.AdverseEventWriteSerializer, responses={200: s.AdverseEventSerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    def update(self, request, pk=None):
        """Follow up an AE: every field again, and the reason for the change."""
        return self._save(request, self.get_object(), _object_body(request), partial=False, created=False)

    @extend_schema(parameters=[], request=s.AdverseEventWriteSerializer(partial=True), responses={200: s.AdverseEventSerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    def partial_update(self, request, pk=None):
        """Follow up an AE: the fields that change, and the reason for the change."""
        return self._save(request, self.get_object(), _object_body(request), partial=True, created=False)

    def _save(self, request, ae: AdverseEvent, data: dict, *, partial: bool, created: bool) -> Response:
        participant = ae.participant
        if not user_acts_at(request.user, participant.site):  # before reading the body: the page's 403
            return Response({"detail": _("You do not enter data at this site.")}, status=status.HTTP_403_FORBIDDEN)
        if participant.consent_date is None:
            return Response({"detail": _("%(number)s has not consented: no AE can be recorded.") % {"number": participant.number}}, status=status.HTTP_403_FORBIDDEN)
        if not created:
            data = {**data, "participant": participant.pk}
            if not partial:
                data.setdefault("coded_term", ae.coded_term.llt_code if ae.coded_term_id else None)
        with timezone.override(ZoneInfo(participant.site.time_zone)):  # naive times are the site's, as on the form
            payload = s.AdverseEventWriteSerializer(data=data, partial=partial)
            payload.is_valid(raise_exception=True)
        values = payload.validated_data
        for field in AE_FIELDS:
            if field in values:
                setattr(ae, field, values[field])
        _service(lambda: ae_save(ae, user=request.user, reason=values.get("reason", "")))
        saved = selectors.api_adverse_events(request.user, self.token).get(pk=ae.pk)
        return Response(
            s.AdverseEventSerializer(saved, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _int_value(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or not 1 <= int(value) <= MAX_ID:
        raise ValidationError({name: [_("Give the id (a whole number).")]})
    return int(value)


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("state", str)])
class QueryViewSet(RefusalMixin, ReadViewSet):
    """Queries; the site answers an open one, a monitor or data manager closes it (the query
    services: roles, locks, the value-changed rule, audit)."""

    serializer_class = s.QuerySerializer
    trial_field, site_field = "trial__code", "site__code"

    def get_queryset(self):
        qs = self.filtered(selectors.api_queries(self.request.user, self.token)).prefetch_related("messages__author")
        state = _text(self.request, "state") if self.action == "list" else None
        if state:
            qs = qs.filter(state=state)
        return qs.order_by("id")

    def _answer(self, query) -> Response:
        fresh = self.get_queryset().get(pk=query.pk)
        return Response(s.QuerySerializer(fresh, context=self.get_serializer_context()).data)

    @extend_schema(parameters=[], request=s.QueryAnswerSerializer, responses={200: s.QuerySerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    @action(detail=True, methods=["post"], pagination_class=None)
    def answer(self, request, pk=None):
        """The site's answer to an open query (coordinators and investigators of the site)."""
        query = self.get_object()
        payload = s.QueryAnswerSerializer(data=_object_body(request))
        payload.is_valid(raise_exception=True)
        _service(lambda: query_answer(query=query, user=request.user, text=payload.validated_data["text"]))
        return self._answer(query)

    @extend_schema(parameters=[], request=s.QueryCloseSerializer, responses={200: s.QuerySerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT, 409: LOCKED})
    @action(detail=True, methods=["post"], pagination_class=None)
    def close(self, request, pk=None):
        """Close a query (monitors and data managers): the value changed, or a justification."""
        query = self.get_object()
        payload = s.QueryCloseSerializer(data=_object_body(request))
        payload.is_valid(raise_exception=True)
        _service(lambda: query_close(query=query, user=request.user, justification=payload.validated_data["justification"]))
        return self._answer(query)


DOWNLOAD_TYPES = sorted({f.content_type for f in FORMATS.values()})


class ExportViewSet(RefusalMixin, BoundedLookup, LoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your export jobs: request one (the exports page's service and rules), poll its progress,
    download its file when ready (requester only, every download recorded)."""

    pagination_class = Cursor
    lookup_value_converter = "int"
    serializer_class = s.ExportJobSerializer

    def get_queryset(self):
        trials = selectors.api_trials(self.request.user, self.token)
        jobs = jobs_for_user(self.request.user)
        if self.token is not None:  # a token's jobs: of its trials (a pooled job: every trial it spans)
            jobs = jobs.filter(Q(trial__in=trials) | Q(trial__isnull=True))
        return jobs.order_by("id")

    def get_object(self):
        job = super().get_object()
        if self.token is not None and job.trial_id is None:  # a pooled job: the token names every trial it spans
            spanned = set(Site.objects.filter(pk__in=job.spec.get("site_ids") or ()).values_list("trial_id", flat=True))
            if spanned - set(selectors.api_trials(self.request.user, self.token).values_list("pk", flat=True)):
                raise NotFound
        return job

    @extend_schema(request=s.ExportRequestSerializer, responses={202: s.ExportJobSerializer, 400: FIELD_ERRORS, 403: REFUSED, 404: ABSENT})
    def create(self, request):
        """Request an export; it runs in the background (202): poll GET /api/v1/exports/{id}/."""
        payload = s.ExportRequestSerializer(data=_object_body(request))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        mine = selectors.api_trials(request.user, self.token)
        trial = None
        if data["trial"]:
            trial = mine.filter(code=data["trial"]).first()
            if trial is None:
                raise NotFound(_("No such trial."))
            sites = list(Site.objects.filter(trial=trial, code__in=data["sites"]))
            if len(sites) != len(set(data["sites"])):
                raise ValidationError({"sites": [_("No such site in this trial.")]})
        else:
            sites = []
            if data["sites"] or data["crfs"]:
                raise ValidationError({"pooled_crf": [_("A pooled export takes no sites or CRFs.")]})
            spanned = exportable_trials(request.user).filter(visit_definitions__visit_crfs__crf_code=data["pooled_crf"])
            if self.token is not None and spanned.exclude(pk__in=mine.values("pk")).exists():
                return Response({"detail": _("This token does not name every trial this pooled export spans.")}, status=status.HTTP_403_FORBIDDEN)
        job = _service(lambda: export_request(
            user=request.user, format=data["format"], trial=trial, pooled_crf=data["pooled_crf"], sites=sites or None,
            crf_codes=data["crfs"] or None, cutoff=data["cutoff"], blinded=data["blinded"], identifiers=data["identifiers"],
            reason=data["reason"],
        ))
        job = ExportJob.objects.select_related("trial").get(pk=job.pk)
        return Response(s.ExportJobSerializer(job, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)

    def retrieve(self, request, *args, **kwargs):
        """An export's state and progress (a job whose worker was lost is queued again)."""
        job = self.get_object()
        if job.is_active and any(exports_stale_requeue().values()):
            job.refresh_from_db()
        return Response(self.get_serializer(job).data)

    @extend_schema(
        responses={**{(200, ct): OpenApiTypes.BINARY for ct in DOWNLOAD_TYPES}, 404: ABSENT,
                   409: OpenApiResponse(OpenApiTypes.OBJECT, description="Not ready yet (state queued or running), or failed.")},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def download(self, request, pk=None):
        """The file of a ready export (its requester only, while she still holds the rights it needed)."""
        job = self.get_object()
        if job.state in {ExportState.QUEUED, ExportState.RUNNING, ExportState.FAILED}:
            return Response({"detail": _("This export is not ready."), "state": job.state}, status=status.HTTP_409_CONFLICT)
        try:
            job, handle = export_download(job_id=job.pk, user=request.user)
        except ExportJob.DoesNotExist:
            raise NotFound(_("No such export.")) from None
        return export_file_response(job, handle)


class CsvParser(BaseParser):
    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return stream.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ParseError(_("The CSV is not UTF-8 text.")) from None


LAB_ROWS = inline_serializer("LabImport", {
    "trial": serializers.CharField(),
    "reason": serializers.CharField(required=False),
    "confirm_warnings": serializers.BooleanField(required=False),
    "rows": serializers.ListField(child=serializers.DictField(), help_text="{subject, visit, <LABS item>: value, …, reason?, complete?}"),
})
LAB_REPORT = inline_serializer("LabImportReport", {"imported": serializers.BooleanField(), "rows": serializers.ListField(child=serializers.DictField())})


class LabImportView(ApiView):
    """Import LABS results, all or nothing per file, with a per-row report. JSON body, or a CSV
    (Content-Type text/csv, ?trial=CODE, header: subject, visit, LABS item names, optional reason)."""

    parser_classes = [JSONParser, CsvParser]

    @extend_schema(
        request={"application/json": LAB_ROWS, "text/csv": OpenApiTypes.STR},
        parameters=[OpenApiParameter("trial", str, description="Trial code (CSV)"), OpenApiParameter("reason", str), OpenApiParameter("confirm_warnings", bool)],
        responses={200: LAB_REPORT, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="The per-row report (imported false), or a detail for an unusable file"), 403: OpenApiResponse(OpenApiTypes.OBJECT), 404: OpenApiResponse(OpenApiTypes.OBJECT)},
    )
    def post(self, request):
        params = request.query_params
        if isinstance(request.data, str):
            from_csv, body = True, {}
            try:
                rows = rows_from_csv(request.data)
            except ImportRefused as refused:
                return Response({"detail": str(refused)}, status=status.HTTP_400_BAD_REQUEST)
            except csv.Error as problem:
                return Response({"detail": str(problem)}, status=status.HTTP_400_BAD_REQUEST)
        elif isinstance(request.data, dict) and isinstance(request.data.get("rows"), list):
            from_csv, body, rows = False, request.data, request.data["rows"]
        else:
            return Response({"detail": _("Send {trial, rows: [...]} as JSON, or a CSV.")}, status=status.HTTP_400_BAD_REQUEST)
        trial_code = str(body.get("trial") or params.get("trial") or "")
        reason = str(body.get("reason") or params.get("reason") or "")
        if "\x00" in trial_code + reason:
            return Response({"detail": _("The trial or the reason contains a character that cannot be stored.")}, status=status.HTTP_400_BAD_REQUEST)
        trial = selectors.api_trials(request.user, self.token).filter(code=trial_code).first()
        if trial is None:
            raise NotFound(_("No such trial."))
        confirm = body.get("confirm_warnings", params.get("confirm_warnings", "false"))
        confirm = confirm if isinstance(confirm, bool) else str(confirm).lower() in {"1", "true", "yes"}
        try:
            imported, report = labs_import(
                user=request.user, participants=selectors.api_participants(request.user, self.token).filter(trial=trial),
                rows=rows, from_csv=from_csv, reason=reason, confirm_warnings=confirm,
            )
        except ImportRefused as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"imported": imported, "rows": report}, status=status.HTTP_200_OK if imported else status.HTTP_400_BAD_REQUEST)


@extend_schema(exclude=True)
class NotFoundView(ApiView):
    """Any path under /api/v1/ that names no endpoint (an id that is not a number, a typo)."""

    permission_classes = ()

    def get(self, request, *args, **kwargs):
        raise NotFound

    post = put = patch = delete = get
