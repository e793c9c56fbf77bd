"""The API's views: reads through the pages' selectors, writes through the services.

Every view derives from `ApiView` (or `ApiViewSet`): token or session authentication, the token's
scope, a rate per token, and one `ApiCall` row per request, whatever its answer.
"""

from __future__ import annotations

import csv
from datetime import UTC

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import Prefetch
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from trials.api import selectors
from trials.api import serializers as s
from trials.api.answers import parse_answers
from trials.api.labs import ImportRefused, labs_import, rows_from_csv
from trials.api.models import ApiToken
from trials.api.services import call_log
from trials.monitoring.audit.trail import entry_trail, participant_trail
from trials.protocol.engine import schema_for
from trials.protocol.models import VisitCrf
from trials.visits.models import CrfEntry
from trials.visits.services import CrfEntryConflict, UnconfirmedWarnings, crf_entry_save_answers


class Cursor(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "id"


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

    def masks(self) -> dict:
        return selectors.arm_masks(self.request.user, selectors.api_trials(self.request.user, self.token))

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
class VisitViewSet(ReadViewSet):
    serializer_class = s.VisitSerializer

    def get_queryset(self):
        qs = self.filtered(selectors.api_visits(self.request.user, self.token))
        participant = _int(self.request, "participant") if self.action == "list" else None
        if participant is not None:
            qs = qs.filter(participant_id=participant)
        return qs.order_by("id")


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
FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description="Field name -> list of messages; `warnings` when soft checks need confirm_warnings.")


@extend_schema(parameters=ENTRY_FILTERS)
class CrfEntryViewSet(BoundedLookup, LoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CRF entries: answers by item name, status, revision, CRF version."""

    pagination_class = Cursor
    lookup_value_converter = "int"
    serializer_class = s.CrfEntrySerializer

    def get_queryset(self):
        qs = selectors.api_entries(self.request.user, self.token)
        if self.action != "list":
            return qs.order_by("id")
        for param, lookup in (("trial", "participant__trial__code"), ("site", "participant__site__code"), ("crf", "crf_code"), ("visit", "visit__definition__code")):
            value = _text(self.request, param)
            if value:
                qs = qs.filter(**{lookup: value})
        participant = _int(self.request, "participant")
        if participant is not None:
            qs = qs.filter(participant_id=participant)
        since_text = _text(self.request, "changed_since")
        if since_text:
            since = _moment(since_text.replace(" ", "+"))
            if since is None:
                raise ValidationError({"changed_since": [_("Give a date and time in ISO 8601, e.g. 2026-01-31T00:00:00Z.")]})
            qs = qs.filter(updated_at__gte=since)
        return qs.order_by("id")

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


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("participant", int)])
class AdverseEventViewSet(ReadViewSet):
    serializer_class = s.AdverseEventSerializer

    def get_queryset(self):
        qs = self.filtered(selectors.api_adverse_events(self.request.user, self.token))
        participant = _int(self.request, "participant") if self.action == "list" else None
        if participant is not None:
            qs = qs.filter(participant_id=participant)
        return qs.order_by("id")


@extend_schema(parameters=[TRIAL, SITE, OpenApiParameter("state", str)])
class QueryViewSet(ReadViewSet):
    serializer_class = s.QuerySerializer
    trial_field, site_field = "trial__code", "site__code"

    def get_queryset(self):
        qs = self.filtered(selectors.api_queries(self.request.user, self.token)).prefetch_related("messages__author")
        state = _text(self.request, "state") if self.action == "list" else None
        if state:
            qs = qs.filter(state=state)
        return qs.order_by("id")


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
