"""Loading seeds/ yields the four trials with the facts their source documents give."""

from decimal import Decimal

import pytest

from trials.protocol.models import CrfDefinition, FieldDefinition, Trial

pytestmark = pytest.mark.django_db


def test_four_trials_one_per_design(seeds):
    designs = dict(Trial.objects.values_list("code", "design"))
    assert designs == {
        "ADSVF-SSC-HANDS": "open_label",
        "ASC-DU": "randomized",
        "SSC-FATGRAFT-REG": "registry",
        "EASC-RA": "dose_escalation",
    }


def test_digital_ulcer_trial_nct04356755(seeds):
    trial = Trial.objects.get(nct_id="NCT04356755")
    assert trial.org_study_id == "RC31/17/0447"
    assert trial.masking == "quadruple"
    assert sorted(trial.masked_roles) == ["care_provider", "investigator", "outcomes_assessor", "participant"]
    assert trial.is_blinded
    assert trial.target_enrolment == 32
    assert trial.follow_up_weeks == 16
    assert trial.phase == "2"
    assert str(trial.start_date) == "2020-09-22" and str(trial.completion_date) == "2027-03-31"
    assert trial.sponsor == "University Hospital, Toulouse"
    sites = trial.sites.all()
    assert sites.count() == 7
    assert {s.country for s in sites} == {"FR"}
    assert {s.time_zone for s in sites} == {"Europe/Paris"}
    recruiting = sites.filter(recruitment_status="recruiting")
    assert [s.city for s in recruiting] == ["Toulouse"]
    arms = {a.code: a for a in trial.arms.all()}
    assert {a.arm_type for a in arms.values()} == {"experimental", "placebo_comparator"}
    assert len(arms) == 2
    assert trial.randomization["block_sizes"] and trial.randomization["stratify_by_site"]
    # Follow-up ends at week 16 after the day-0 injection.
    last = trial.visit_definitions.order_by("-order").first()
    assert last.day_offset == 16 * 7
    # The five per-ulcer characteristics and the five per-ulcer exclusions are lesion-level criteria.
    lesion = trial.criteria.filter(level="lesion")
    assert lesion.filter(kind="inclusion").count() == 5
    assert lesion.filter(kind="exclusion").count() == 5
    assert all(c.expression for c in lesion)
    assert trial.eligibility["lesion"] == {"crf": "DU_ASSESS", "group": "ulcers"}


def test_ra_dose_escalation_cohorts(seeds):
    trial = Trial.objects.get(code="EASC-RA")
    assert trial.target_enrolment == 53
    cohorts = list(trial.arms.order_by("order"))
    assert [(c.order, c.dose, c.dose_unit) for c in cohorts] == [
        (1, Decimal("1"), "million cells/kg"),
        (2, Decimal("2"), "million cells/kg"),
        (3, Decimal("4"), "million cells/kg"),
    ]
    assert all(c.administration_days == [1, 8, 15] for c in cohorts)
    # "Expansion will start after acute toxicity assessment of the first three patients of each cohort".
    assert trial.escalation["rule"] == "sentinel_expansion"
    assert trial.escalation["sentinel_size"] == 3
    # 53 patients; Ann Rheum Dis 2017: 20 + 20 + 6 active and 7 placebo.
    assert [c.planned_size for c in cohorts] == [23, 23, 7] and sum(c.planned_size for c in cohorts) == 53
    assert trial.escalation["placebo"]["per_cohort"] == {"COHORT1": 3, "COHORT2": 3, "COHORT3": 1}
    assert trial.dlt_window_days
    infusions = trial.visit_definitions.filter(visit_crfs__crf_code="INFUSION").order_by("order")
    assert [(v.anchor, v.day_offset) for v in infusions] == [("first_treatment", 0), ("first_treatment", 7), ("first_treatment", 14)]
    # Single blind, only the participant masked: site staff know the cohort (not active vs placebo).
    assert trial.masking == "single" and not trial.is_blinded
    assert set(trial.escalation["placebo"]["masked"]) == {"participant", "care_provider", "investigator", "outcomes_assessor"}


def test_open_label_hand_trial(seeds):
    trial = Trial.objects.get(code="ADSVF-SSC-HANDS")
    assert trial.masking == "none" and not trial.is_blinded
    assert trial.target_enrolment == 20
    arms = {a.arm_type: a.planned_size for a in trial.arms.all()}
    assert arms == {"experimental": 10, "no_intervention": 10}
    site = trial.sites.get()
    assert (site.country, site.time_zone) == ("MX", "America/Mexico_City")
    expressions = set(trial.criteria.exclude(expression="").values_list("expression", flat=True))
    assert "age_years >= 18" in expressions and "bmi > 18.0" in expressions
    assert trial.criteria.filter(kind="inclusion").count() == 4
    assert trial.criteria.filter(kind="exclusion").count() == 8


def test_registry_has_core_outcome_set_and_no_allocation(seeds):
    trial = Trial.objects.get(code="SSC-FATGRAFT-REG")
    assert trial.study_type == "observational"
    assert not trial.arms.exists() and trial.randomization is None
    assert trial.sites.count() >= 2
    follow_up = trial.visit_definitions.filter(kind__in=["follow_up", "end_of_study"])
    for visit in follow_up:
        codes = set(visit.visit_crfs.values_list("crf_code", flat=True))
        assert {"MRSS", "COCHIN"} <= codes, visit.code


@pytest.mark.parametrize(
    ("code", "items", "choices"),
    [("COCHIN", 18, {0, 5}), ("MRSS", 17, {0, 3})],
)
def test_item_batteries(seeds, code, items, choices):
    crf = CrfDefinition.objects.get(code=code, version=1)
    scored = [f for f in crf.fields.filter(field_type="single_choice")]
    assert len(scored) == items
    for item in scored:
        codes = {c["code"] for c in item.choices}
        assert min(codes) == min(choices) and max(codes) == max(choices)


def test_crf_library_has_what_the_trials_need(seeds):
    codes = set(CrfDefinition.objects.values_list("code", flat=True))
    assert {
        "DEMOG", "VITALS", "PAIN_VAS", "RCS", "COCHIN", "DU_ASSESS", "HAND", "CAPILLAROSCOPY", "MRSS",
        "HAQDI", "DAS28", "PHYS_GLOBAL", "LABS", "FATGRAFT", "INFUSION", "DU_INJECTION",
    } <= codes
    bmi = FieldDefinition.objects.get(crf__code="VITALS", name="bmi")
    assert bmi.field_type == "calculated" and bmi.calculation["score"] == "bmi"
    ulcers = FieldDefinition.objects.get(crf__code="DU_ASSESS", name="ulcers")
    assert ulcers.field_type == "repeating_group" and ulcers.children.count() >= 10
    haq_items = FieldDefinition.objects.filter(crf__code="HAQDI", name__regex=r"^haq_[a-z]+_\d$")
    assert haq_items.count() == 20
    das28 = FieldDefinition.objects.filter(crf__code="DAS28")
    assert das28.filter(name__startswith="tender_").count() == 28
    assert das28.filter(name__startswith="swollen_").count() == 28
    assert FieldDefinition.objects.get(crf__code="DEMOG", name="date_of_birth").identifier
