"""JSON shapes of the API. Read serializers name items as the CRF files do; a blinded user's
payload passes through the trial's arm mask (selectors.arm_masks) and never reads an arm."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from django.utils.translation import gettext as _
from rest_framework import serializers

from trials.api.selectors import masked
from trials.exports.models import ExportJob, ExportState
from trials.monitoring.models import Query
from trials.participants.models import Participant
from trials.participants.selectors import allocation_for_user
from trials.protocol.models import CrfDefinition, Site, Trial, VisitDefinition
from trials.safety.models import ActionTaken, AdverseEvent, Causality, Outcome, Procedure, Seriousness
from trials.visits.models import CrfEntry, Visit


class MaskedSerializer(serializers.ModelSerializer):
    """Strings of an object of a masked trial pass through its arm mask (context["masks"])."""

    trial_path = "participant.trial_id"

    def to_representation(self, instance):
        data = super().to_representation(instance)
        masks = self.context.get("masks") or {}
        if not masks:
            return data
        trial_id = instance
        for part in self.trial_path.split("."):
            trial_id = getattr(trial_id, part)
        return masked(data, masks.get(trial_id))


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = [
            "id", "code", "title", "short_title", "acronym", "nct_id", "phase", "study_type", "design", "masking",
            "target_enrolment", "status", "start_date", "completion_date", "sponsor",
        ]


class SiteSerializer(serializers.ModelSerializer):
    trial = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Site
        fields = ["id", "trial", "code", "name", "city", "country", "time_zone", "recruitment_status", "is_active"]


class VisitCrfLinkSerializer(serializers.Serializer):
    crf_code = serializers.CharField()
    crf_version = serializers.IntegerField(source="crf.version")
    required = serializers.BooleanField()


class VisitDefinitionSerializer(MaskedSerializer):
    trial_path = "trial_id"
    trial = serializers.SlugRelatedField(slug_field="code", read_only=True)
    crfs = serializers.SerializerMethodField()

    class Meta:
        model = VisitDefinition
        fields = ["id", "trial", "code", "label", "kind", "anchor", "day_offset", "window_before_days", "window_after_days", "order", "crfs"]

    @extend_schema_field(VisitCrfLinkSerializer(many=True))
    def get_crfs(self, obj: VisitDefinition) -> list[dict]:
        links = [link for link in obj.visit_crfs.all() if link.is_active]
        return VisitCrfLinkSerializer(sorted(links, key=lambda link: link.order), many=True).data


class CrfDefinitionSerializer(serializers.ModelSerializer):
    definition = serializers.JSONField(help_text="The CRF file as loaded (items, types, units, choices, checks).")

    class Meta:
        model = CrfDefinition
        fields = ["id", "code", "version", "title", "description", "source", "created_at", "definition"]


class ParticipantSerializer(MaskedSerializer):
    trial = serializers.SlugRelatedField(slug_field="code", read_only=True)
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    allocation = serializers.SerializerMethodField(
        help_text="The allocation as the pages show it to this user: the arm only to who may see it, else the kit code or 'Allocated (blinded)'."
    )

    class Meta:
        model = Participant
        fields = [
            "id", "trial", "site", "screening_number", "subject_number", "status", "status_date", "screening_date",
            "consent_date", "enrolment_date", "first_treatment_date", "allocation",
        ]

    trial_path = "trial_id"

    @extend_schema_field(OpenApiTypes.STR)
    def get_allocation(self, obj: Participant) -> str | None:
        view = allocation_for_user(self.context["request"].user, obj)  # the pages' blinding rule
        return view.text if view.allocated else None


class VisitSerializer(MaskedSerializer):
    participant = serializers.PrimaryKeyRelatedField(read_only=True)
    subject = serializers.SerializerMethodField()
    site = serializers.CharField(source="participant.site.code", read_only=True)
    visit_code = serializers.SerializerMethodField()

    class Meta:
        model = Visit
        fields = [
            "id", "participant", "subject", "site", "visit_code", "record_kind", "log_crf_code", "sequence", "label",
            "planned_date", "window_start", "window_end", "visit_date", "status", "out_of_window",
        ]

    def get_subject(self, obj: Visit) -> str:
        return obj.participant.subject_number or obj.participant.screening_number

    def get_visit_code(self, obj: Visit) -> str | None:
        return obj.definition.code if obj.definition else None


class CrfEntrySerializer(MaskedSerializer):
    participant = serializers.PrimaryKeyRelatedField(read_only=True)
    subject = serializers.SerializerMethodField()
    trial = serializers.CharField(source="participant.trial.code", read_only=True)
    site = serializers.CharField(source="participant.site.code", read_only=True)
    visit = serializers.PrimaryKeyRelatedField(read_only=True)
    visit_code = serializers.SerializerMethodField()
    crf_version = serializers.IntegerField(source="crf.version", read_only=True)
    answers = serializers.JSONField(read_only=True, help_text="Item name -> stored value; a repeating group -> list of rows.")
    missing = serializers.JSONField(read_only=True, help_text="Item name -> {code, reason} for items answered as missing.")
    warnings = serializers.JSONField(read_only=True, help_text="Soft checks confirmed at the save.")

    class Meta:
        model = CrfEntry
        fields = [
            "id", "participant", "subject", "trial", "site", "visit", "visit_code", "crf_code", "crf_version", "status",
            "revision", "answers", "missing", "warnings", "updated_at",
        ]

    def get_subject(self, obj: CrfEntry) -> str:
        return obj.participant.subject_number or obj.participant.screening_number

    def get_visit_code(self, obj: CrfEntry) -> str | None:
        return obj.visit.definition.code if obj.visit.definition else None


class CrfEntryWriteSerializer(serializers.Serializer):
    """A save of a CRF entry: the page's form as JSON."""

    visit = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The visit id (GET /api/v1/visits/).")
    crf_code = serializers.CharField(max_length=40)
    expected_revision = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, help_text="The revision you read (0 for a first save); another save since answers 409 with the current revision."
    )
    answers = serializers.DictField(child=serializers.JSONField(), help_text="Item name -> value (dates ISO 8601, decimals as numbers or strings).")
    missing = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField(allow_blank=True)), required=False,
        help_text="Item name -> {code, reason}: items answered with a missing-data code.",
    )
    complete = serializers.BooleanField(default=True)
    confirm_warnings = serializers.BooleanField(default=False, help_text="Confirm the soft warnings the previous attempt returned.")
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="", help_text="Reason for the change (required once complete).")


class AdverseEventSerializer(MaskedSerializer):
    participant = serializers.PrimaryKeyRelatedField(read_only=True)
    subject = serializers.SerializerMethodField()
    site = serializers.CharField(source="participant.site.code", read_only=True)
    coded_term = serializers.StringRelatedField()

    class Meta:
        model = AdverseEvent
        fields = [
            "id", "participant", "subject", "site", "number", "verbatim_term", "coded_term", "onset_date", "end_date", "ongoing",
            "grade", "serious", "seriousness", "related_product", "procedure", "related_procedure", "expected", "action_taken",
            "outcome", "is_dlt", "leads_to_withdrawal", "aware_at", "created_at",
        ]

    def get_subject(self, obj: AdverseEvent) -> str:
        return obj.participant.subject_number or obj.participant.screening_number


class QueryMessageSerializer(serializers.Serializer):
    kind = serializers.CharField()
    at = serializers.DateTimeField()
    author = serializers.CharField(source="author.username")
    text = serializers.CharField()


class QuerySerializer(MaskedSerializer):
    site = serializers.CharField(source="site.code", read_only=True)
    trial = serializers.CharField(source="trial.code", read_only=True)
    raised_by = serializers.CharField(source="raised_by.username", read_only=True)
    messages = serializers.SerializerMethodField()

    class Meta:
        model = Query
        fields = [
            "id", "trial", "site", "participant", "entry", "item", "row_id", "adverse_event", "state", "origin", "text",
            "raised_by", "raised_at", "closed_at", "messages",
        ]

    @extend_schema_field(QueryMessageSerializer(many=True))
    def get_messages(self, obj: Query) -> list[dict]:
        return QueryMessageSerializer(obj.messages.all(), many=True).data


class AuditChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    label = serializers.CharField()
    row = serializers.CharField()
    old = serializers.CharField()
    new = serializers.CharField()


class AuditRowSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    user = serializers.CharField()
    action = serializers.CharField()
    kind = serializers.CharField()
    model = serializers.CharField()
    object_id = serializers.IntegerField()
    record = serializers.CharField()
    reason = serializers.CharField()
    changes = AuditChangeSerializer(many=True)


YEAR_RANGE = (1900, 2100)


def _plausible(value):
    """Dates and times between 1900 and 2100: outside, a time-zone shift or a window's arithmetic
    would leave the calendar (a 500), and no trial data lives there."""
    if value is not None and not YEAR_RANGE[0] <= value.year <= YEAR_RANGE[1]:
        raise serializers.ValidationError(_("Give a date between %(a)s and %(b)s.") % {"a": YEAR_RANGE[0], "b": YEAR_RANGE[1]})
    return value


class AdverseEventWriteSerializer(serializers.Serializer):
    """An AE as the AE form takes it. Times without a UTC offset are the site's local time (as
    typed on the form). On a change (PUT/PATCH) `reason` is required; PATCH sends only what changes."""

    participant = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The participant id (create only).")
    verbatim_term = serializers.CharField(max_length=300)
    coded_term = serializers.CharField(max_length=20, required=False, allow_blank=True, allow_null=True, help_text="LLT code of the loaded dictionary.")
    onset_date = serializers.DateField(validators=[_plausible])
    end_date = serializers.DateField(required=False, allow_null=True, validators=[_plausible])
    ongoing = serializers.BooleanField(required=False, default=True)
    grade = serializers.ChoiceField(choices=[1, 2, 3, 4, 5])
    seriousness = serializers.ListField(child=serializers.ChoiceField(choices=Seriousness.choices), required=False, default=list)
    related_product = serializers.ChoiceField(choices=Causality.choices)
    procedure = serializers.ChoiceField(choices=Procedure.choices)
    related_procedure = serializers.ChoiceField(choices=Causality.choices)
    action_taken = serializers.ChoiceField(choices=ActionTaken.choices)
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    treatment_given = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    aware_at = serializers.DateTimeField(validators=[_plausible], help_text="When the site first learned of the AE (no offset: the site's local time).")
    serious_aware_at = serializers.DateTimeField(required=False, allow_null=True, validators=[_plausible])
    is_dlt = serializers.BooleanField(required=False, default=False)
    leads_to_withdrawal = serializers.BooleanField(required=False, default=False)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="", help_text="Reason for the change (required on PUT/PATCH).")

    def validate_coded_term(self, value):
        if not value:
            return None
        from trials.safety.forms import current_terms

        term = current_terms().filter(llt_code=value).first()
        if term is None:
            raise serializers.ValidationError(_("No term with this code in the loaded dictionary."))
        return term


class QueryAnswerSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000, allow_blank=True, help_text="The site's answer.")


class QueryCloseSerializer(serializers.Serializer):
    justification = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default="",
        help_text="Why the query closes although the value did not change (required then).",
    )


class VisitDateSerializer(serializers.Serializer):
    visit_date = serializers.DateField(validators=[_plausible])
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="", help_text="Required when a recorded date changes.")


class ExportJobSerializer(serializers.ModelSerializer):
    trial = serializers.SlugRelatedField(slug_field="code", read_only=True)
    percent = serializers.IntegerField(read_only=True)
    download = serializers.SerializerMethodField(help_text="The file's URL once the export is ready, else null.")

    class Meta:
        model = ExportJob
        fields = [
            "id", "trial", "pooled_crf", "format", "blinded", "identifiers", "state", "percent", "rows_done", "rows_total",
            "error", "created_at", "started_at", "finished_at", "expires_at", "size", "sha256", "download",
        ]

    @extend_schema_field(OpenApiTypes.URI)
    def get_download(self, obj: ExportJob) -> str | None:
        if obj.state != ExportState.DONE:
            return None
        request = self.context.get("request")
        path = f"/api/v1/exports/{obj.pk}/download/"
        return request.build_absolute_uri(path) if request else path


class ExportRequestSerializer(serializers.Serializer):
    """An export as the exports page asks for it: of one trial, or of one CRF pooled across the
    trials you may export. The page's rules hold (blinded roles export blinded only; identifying
    items for the trial's data manager only; a reason for either)."""

    format = serializers.CharField(max_length=20, help_text="csv, xlsx, odm, xpt, sav, audit, … (the exports page's formats)")
    trial = serializers.CharField(max_length=40, required=False, allow_blank=True, default="", help_text="Trial code (or pooled_crf).")
    pooled_crf = serializers.CharField(max_length=40, required=False, allow_blank=True, default="", help_text="A CRF code pooled across your trials.")
    sites = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list, help_text="Site codes (default: every site you may export).")
    crfs = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list, help_text="CRF codes (default: all).")
    cutoff = serializers.DateField(required=False, allow_null=True, default=None, validators=[_plausible])
    blinded = serializers.BooleanField(required=False, default=True)
    identifiers = serializers.BooleanField(required=False, default=False)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if bool(attrs["trial"]) == bool(attrs["pooled_crf"]):
            raise serializers.ValidationError({"trial": [_("Give a trial, or a pooled_crf, not both.")]})
        return attrs
