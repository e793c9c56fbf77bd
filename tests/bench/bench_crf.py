"""Benchmark of the CRF engine on a synthetic 100-field CRF (run with `make bench`).

Reports, for the same run on the same database, the median time of:
  baseline        - a bare Django form with the same 99 input fields (types, required, min/max,
                    decimal places, choices as plain form fields): bind, is_valid(), and insert the
                    cleaned data as one JSON row of a throwaway table with no history (the baseline)
  build+validate  - schema_for (cached) + CrfSubmission(...).validate() of the same submission:
                    parsing, required, ranges, dates, branching, CEL checks, the CEL BMI; nothing written
  full save       - crf_entry_save on a fresh visit: permission check, the above, the audited
                    CrfEntry row and its history row, one transaction
and each as a ratio to the baseline (target of issue 3: full save <= 2x), plus the queries of one
full save. The CRF and a one-site trial are written as YAML to a temporary folder and loaded with
protocol_load. Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on
that server).
"""

import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import benchenv  # noqa: E402, F401 - the project root on sys.path, Django set up

import yaml  # noqa: E402
from django import forms  # noqa: E402
from django.db import connection, models  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "50"))
WARMUP = 3
CRF_CODE = "BENCH100"
GRADES = [{"code": n, "label": f"Grade {n}"} for n in range(1, 6)]
STATUSES = [
    {"code": code, "label": code.replace("_", " ").capitalize()}
    for code in ("absent", "mild", "moderate", "severe", "not_assessed")
]
# One block of ten items; the CRF repeats it (the last block is cut short to make 100 items in all).
BLOCK = ("count", "value", "ratio", "note", "date", "grade", "present", "detail", "score", "status")


def crf_fields() -> list[dict]:
    """The 100 items: height, weight, a CEL BMI, then 97 items in blocks of BLOCK."""
    fields = [
        {
            "name": "height_cm", "label": "Height", "type": "decimal", "precision": 1, "unit": "cm",
            "min": 100, "max": 230, "required": True, "section": "Part 0",
        },
        {
            "name": "weight_kg", "label": "Weight", "type": "decimal", "precision": 1, "unit": "kg",
            "min": 25, "max": 250, "required": True, "section": "Part 0",
        },
        {
            "name": "bmi", "label": "Body mass index", "type": "calculated", "precision": 1, "unit": "kg/m²",
            "section": "Part 0", "calculation": {"cel": "weight_kg / ((height_cm / 100.0) * (height_cm / 100.0))"},
        },
    ]
    for n in range(97):
        block, kind = n // len(BLOCK) + 1, BLOCK[n % len(BLOCK)]
        name, section = f"b{block}_{kind}", f"Part {block}"
        spec = {"name": name, "label": f"{kind.capitalize()} {block}", "section": section}
        if kind == "count":
            spec.update(type="integer", min=0, max=100, required=True)
        elif kind == "value":
            check = {"expression": f"{name} == null || {name} < 900.0", "message": "Unusually high: please confirm."}
            spec.update(
                type="decimal", precision=2, min=0, max=1000, unit="mg/L", required=True,
                checks=[{**check, "severity": "soft"}],
            )
        elif kind == "ratio":
            spec.update(type="decimal", precision=1, min=0, max=10)
        elif kind in {"note", "detail"}:
            spec.update(type="text")
            if kind == "detail":
                spec["show_if"] = f"b{block}_present == true"
        elif kind == "date":
            spec.update(type="date", required=True)
        elif kind == "grade":
            spec.update(type="single_choice", choices="grade", required=True)
        elif kind == "present":
            spec.update(type="yes_no", required=True)
        elif kind == "score":
            expression = f"{name} == null || b{block}_count == null || {name} <= b{block}_count"
            spec.update(
                type="integer", min=0, max=10,
                checks=[{"expression": expression, "message": "The score cannot exceed the count."}],
            )
        elif kind == "status":
            spec.update(type="single_choice", choices="status")
        fields.append(spec)
    return fields


def write_protocol(folder: Path, fields: list[dict]) -> None:
    """A one-site trial with one visit that asks for the 100-field CRF, as protocol_load reads them."""
    crf = {
        "code": CRF_CODE,
        "title": "Benchmark CRF with 100 items",
        "codelists": {"grade": GRADES, "status": STATUSES},
        "sections": [{"name": f"Part {n}"} for n in range(11)],
        "fields": fields,
        "checks": [
            {
                "expression": "bmi == null || (bmi >= 12.0 && bmi <= 60.0)",
                "message": "BMI out of range: please confirm.", "severity": "soft", "field": "bmi",
            }
        ],
    }
    trial = {
        "code": "BENCH",
        "title": "CRF engine benchmark",
        "phase": "na",
        "study_type": "observational",
        "design": "registry",
        "masking": {"level": "none", "masked": []},
        "target_enrolment": 1000,
        "status": "recruiting",
        "sponsor": "Benchmark",
        "conditions": ["Benchmark"],
        "consent_documents": [{"version": "1", "approved_on": "2020-01-01"}],
        "sites": [
            {
                "code": "B01", "name": "Benchmark site", "city": "Toulouse", "country": "FR",
                "time_zone": "Europe/Paris", "recruitment_status": "recruiting",
            }
        ],
        "visits": [{"code": "V1", "label": "Visit 1", "kind": "baseline", "day_offset": 0, "crfs": [CRF_CODE]}],
    }
    (folder / "crfs").mkdir()
    for path, content in ((folder / "crfs" / "bench100.yaml", crf), (folder / "bench.yaml", trial)):
        path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")


def submission(fields: list[dict], day: str) -> QueryDict:
    """A valid POST of the CRF page: every item answered, every branch open, no check failing."""
    data = QueryDict(mutable=True)
    values = {"height_cm": "172.5", "weight_kg": "68.4"}
    for spec in fields[3:]:
        kind = spec["name"].split("_", 1)[1]
        values[spec["name"]] = {
            "count": "42", "value": "123.45", "ratio": "2.5", "note": "Observation as written on the source document",
            "date": day, "grade": "2", "present": "true", "detail": "Details of the finding", "score": "7",
            "status": "moderate",
        }[kind]
    for name, value in values.items():
        data[f"crf-{name}"] = value
    data.update({"revision": "0", "action": "complete"})
    return data


def baseline_form_class(fields: list[dict]) -> type[forms.Form]:
    """The same input items as plain Django form fields: what Django alone validates."""
    declared: dict[str, forms.Field] = {}
    for spec in fields:
        kind, required = spec["type"], spec.get("required", False)
        if kind == "integer":
            field = forms.IntegerField(required=required, min_value=spec.get("min"), max_value=spec.get("max"))
        elif kind == "decimal":
            field = forms.DecimalField(
                required=required, min_value=spec.get("min"), max_value=spec.get("max"), max_digits=20,
                decimal_places=spec["precision"],
            )
        elif kind == "text":
            field = forms.CharField(required=required, max_length=2000)
        elif kind == "date":
            field = forms.DateField(required=required)
        elif kind == "single_choice":
            codes = GRADES if spec["choices"] == "grade" else STATUSES
            field = forms.TypedChoiceField(
                required=required, choices=[(str(c["code"]), c["label"]) for c in codes],
                coerce=int if spec["choices"] == "grade" else str, empty_value=None,
            )
        elif kind == "yes_no":
            field = forms.TypedChoiceField(
                required=required, choices=[("true", "Yes"), ("false", "No")], coerce=lambda v: v == "true",
                empty_value=None,
            )
        else:
            continue  # the calculated BMI: plain Django has no equivalent
        declared[spec["name"]] = field
    return type("BaselineForm", (forms.Form,), declared)


def baseline_model() -> type[models.Model]:
    """A throwaway table with one JSON column and no history, created in the test database only."""
    from django.core.serializers.json import DjangoJSONEncoder

    class BenchRow(models.Model):
        payload = models.JSONField(encoder=DjangoJSONEncoder)

        class Meta:
            app_label = "ops"
            managed = True

    with connection.schema_editor() as editor:
        editor.create_model(BenchRow)
    return BenchRow


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare(folder: Path) -> dict:
    """Load the protocol, a coordinator at the site, and one registered participant per save."""
    from django.contrib.auth import get_user_model

    from edc.audit import system_user
    from trials.demo.participants import participant_register
    from trials.protocol.loader import protocol_load
    from trials.protocol.models import CrfDefinition, Role, Site
    from trials.protocol.services import study_role_grant
    from trials.visits.selectors import visit_for_user

    fields = crf_fields()
    write_protocol(folder, fields)
    system = system_user()
    protocol_load([folder], user=system)
    site = Site.objects.select_related("trial").get(trial__code="BENCH", code="B01")
    coordinator = get_user_model()(username="bench.coordinator")
    coordinator.set_unusable_password()
    coordinator.save()
    study_role_grant(
        user=coordinator, trial=site.trial, role=Role.COORDINATOR, site=site, granted_by=system, reason="benchmark"
    )
    today = timezone.localdate()
    visits = []
    for n in range(WARMUP + 1 + REPEATS + (20 if os.environ.get("BENCH_PROFILE") else 0)):
        participant = participant_register(
            site=site, consent_date=today - timedelta(days=30),
            anchor_date=today - timedelta(days=7), user=system,
        )
        # Fetched as the CRF page fetches it before it calls the service.
        visits.append(visit_for_user(coordinator, participant.visits.get().pk))
    return {
        "fields": fields,
        "crf": CrfDefinition.objects.get(code=CRF_CODE),
        "user": coordinator,
        "visits": visits,
        "data": submission(fields, (today - timedelta(days=7)).isoformat()),
    }


def main() -> None:
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from trials.protocol.engine import schema_for
        from trials.visits.forms import CrfSubmission
        from trials.visits.services import crf_entry_save, entry_context

        with tempfile.TemporaryDirectory(prefix="edc-bench-crf-") as folder:
            setup = prepare(Path(folder))
        fields, crf, user, data = setup["fields"], setup["crf"], setup["user"], setup["data"]
        visits = iter(setup["visits"])
        context = entry_context(setup["visits"][0])
        BaselineForm = baseline_form_class(fields)  # noqa: N806
        BenchRow = baseline_model()  # noqa: N806

        def baseline() -> None:
            form = BaselineForm(data=data, prefix="crf")
            assert form.is_valid(), form.errors
            BenchRow.objects.create(payload=form.cleaned_data)

        def build_validate() -> None:
            outcome = CrfSubmission(schema_for(crf), data=data, context=context).validate()
            assert outcome.is_valid and not outcome.warnings, (outcome.errors, outcome.warnings)

        def full_save() -> None:
            result = crf_entry_save(
                user=user, visit=next(visits), crf_code=CRF_CODE, data=data, expected_revision=0, complete=True
            )
            assert result.saved, (result.outcome.errors, result.outcome.warnings)

        for _ in range(WARMUP):  # compiled schema and form class cached, connections open
            baseline()
            build_validate()
            full_save()
        with CaptureQueriesContext(connection) as queries:
            full_save()
        if os.environ.get("BENCH_PROFILE"):  # where a full save spends its time
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                full_save()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            for query in queries.captured_queries:
                print(query["time"], query["sql"][:160])
        times: dict[str, list[float]] = {"baseline": [], "build+validate": [], "full save": []}
        for _ in range(REPEATS):  # interleaved, so drift on the machine hits the three alike
            times["baseline"].append(timed(baseline))
            times["build+validate"].append(timed(build_validate))
            times["full save"].append(timed(full_save))

        mix = Counter(spec["type"] for spec in fields)
        base = statistics.median(times["baseline"])
        print(f"database: {connection.vendor}, repeats: {REPEATS}")
        checks = sum(len(f.get("checks", [])) for f in fields) + 1  # + the CRF-level BMI check
        print(
            f"CRF: {len(fields)} items ({', '.join(f'{n} {t}' for t, n in mix.most_common())}), "
            f"{sum(1 for f in fields if f.get('show_if'))} show_if, {checks} checks"
        )
        print(f"{'step':<16}{'median ms':>10}{'x baseline':>12}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<16}{median * 1000:>10.2f}{median / base:>12.2f}")
        ratio = statistics.median(times["full save"]) / base
        print(f"queries of one full save: {len(queries)}")
        print(f"target full save <= 2.00x baseline: {'met' if ratio <= 2 else 'NOT met'} ({ratio:.2f}x)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
