"""Issue 15, end to end through the services and the pages: an EASC-RA participant's week-12 response
(ACR20/50/70, EULAR, CDAI, SDAI) from the screening baseline, and a grade 3 ALT against the site's
normal range that shows its grade and asks the coordinator about an adverse event.

Expected values are worked by hand from the published definitions (cited at each), not computed by
the score library.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.monitoring.models import Query
from trials.protocol.engine import schema_for
from trials.protocol.models import LabNormalRange, Site
from trials.protocol.services import lab_range_save
from trials.visits.models import CrfEntry
from trials.visits.schedule import visit_record_date
from trials.visits.services import crf_entry_save, crf_entry_save_answers

pytestmark = pytest.mark.django_db

JOINTS = [
    f"{joint}_{side}"
    for joint in ("shoulder", "elbow", "wrist", *(f"mcp{n}" for n in range(1, 6)), *(f"pip{n}" for n in range(1, 6)), "knee")
    for side in ("r", "l")
]


def complete_answers(visit, crf_code: str, overrides: dict) -> dict:  # noqa: ANN001
    """Every required item answered plainly (lowest value, first choice, no, the visit date), then `overrides`."""
    link = visit.definition.visit_crfs.get(crf_code=crf_code)
    answers: dict = {}
    for item in schema_for(link.crf).items:
        if not item.is_input or not item.required:
            continue
        if item.type in {"integer", "scale"}:
            answers[item.name] = int(item.min or 0)
        elif item.type == "decimal":
            answers[item.name] = Decimal(item.min or 0)
        elif item.type == "yes_no":
            answers[item.name] = False
        elif item.type == "date":
            answers[item.name] = date(1970, 5, 1) if item.name == "date_of_birth" else visit.visit_date
        elif item.type in {"single_choice", "multiple_choice"}:
            answers[item.name] = item.choices[0][0] if item.type == "single_choice" else [item.choices[0][0]]
        else:
            answers[item.name] = "x"
    return {**answers, **overrides}


def enter(visit, crf_code: str, **overrides):  # noqa: ANN001, ANN201
    return crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code=crf_code, answers=complete_answers(visit, crf_code, overrides),
        complete=True, reason="Test data",
    )


def das28(tender: int, swollen: int, *, esr: int, crp: str, patient_global: int) -> dict:
    answers = {f"tender_{joint}": index < tender for index, joint in enumerate(JOINTS)}
    answers |= {f"swollen_{joint}": index < swollen for index, joint in enumerate(JOINTS)}
    return answers | {"esr_mm_h": esr, "crp_mg_l": Decimal(crp), "patient_global_vas": patient_global}


def haq(level: int) -> dict:
    schema_items = [f"haq_{c}_{n}" for c, size in (("dressing", 2), ("arising", 2), ("eating", 3), ("walking", 2),
                                                    ("hygiene", 3), ("reach", 2), ("grip", 3), ("activities", 3))
                    for n in range(1, size + 1)]
    return {name: level for name in schema_items}


@pytest.fixture
def ra(demo_users):
    """An EASC-RA participant at La Princesa treated 90 days ago, with its screening and week-12 visits held."""
    site = Site.objects.get(trial__code="EASC-RA", code="MAD-LP")
    today = site.today()
    participant = participant_register(
        site=site, user=system_user(), consent_date=today - timedelta(days=100), anchor_date=today - timedelta(days=95),
        first_treatment_date=today - timedelta(days=90),
    )
    visits = {}
    for code in ("SCREEN", "W12"):
        visit = participant.visits.get(definition__code=code)
        visits[code] = visit_record_date(
            visit, user=system_user(), visit_date=max(visit.planned_date, participant.consent_date)
        )
    return participant, visits


@pytest.fixture
def alt_range(ra):
    """The Madrid laboratory's ALT range (ULN 40 U/L) and a female haemoglobin range, in force for a year."""
    participant, _visits = ra
    site = participant.site
    since = site.today() - timedelta(days=365)
    for test, sex, lln, uln in (("ALT", "", None, "40"), ("HGB", "F", "12.0", "16.0"), ("HGB", "M", "13.0", "17.0")):
        lab_range_save(
            lab_range=LabNormalRange(site=site, test=test, sex=sex, lln=lln and Decimal(lln), uln=Decimal(uln), effective_from=since),
            user=system_user(), reason="Laboratory reference ranges 2026",
        )


def test_week_12_response_is_calculated_from_the_screening_baseline(ra, client):
    participant, visits = ra
    screen, week12 = visits["SCREEN"], visits["W12"]
    enter(screen, "DAS28", **das28(10, 8, esr=40, crp="20.0", patient_global=70))
    enter(screen, "PAIN_VAS", pain_vas=70)
    enter(screen, "PHYS_GLOBAL", physician_global_vas=60)
    enter(screen, "HAQDI", **haq(2))
    enter(week12, "DAS28", **das28(2, 1, esr=20, crp="4.0", patient_global=20))
    enter(week12, "PAIN_VAS", pain_vas=25)
    enter(week12, "PHYS_GLOBAL", physician_global_vas=15)
    enter(week12, "HAQDI", **haq(1))
    response = enter(week12, "RA_RESPONSE")

    answers = response.answers
    # Felson 1995: tender 10 -> 2 (80 %), swollen 8 -> 1 (87.5 %); pain 70 -> 25 (64.3 %), patient global
    # 70 -> 20 (71.4 %), physician 60 -> 15 (75 %), HAQ-DI 2.000 -> 1.000 (50 %), ESR 40 -> 20 (50 %).
    # ACR20 and ACR50: counts and 5 of 5 others; ACR70: counts, but only 2 others >= 70 % (need 3).
    assert (answers["acr20"], answers["acr50"], answers["acr70"]) == (1, 1, 0)
    # DAS28-ESR (Prevoo 1995) by hand: screening 0.56*sqrt(10) + 0.28*sqrt(8) + 0.70*ln(40) + 0.014*70 = 6.13;
    # week 12 0.56*sqrt(2) + 0.28*sqrt(1) + 0.70*ln(20) + 0.014*20 = 3.45. Improvement 2.68 (> 1.2) to 3.45
    # (> 3.2, <= 5.1): EULAR moderate response (van Gestel 1996/1998 table).
    assert answers["das28_esr_change"] == "2.68"
    assert answers["eular_response_esr"] == 1
    # CDAI (Aletaha & Smolen 2005) = 2 + 1 + 2.0 + 1.5 = 6.5 (low, <= 10); SDAI = 6.5 + 0.4 mg/dL = 6.90 (low, <= 11).
    assert (answers["cdai"], answers["sdai"]) == ("6.5", "6.90")

    # The page shows the results with their categories.
    client.force_login(get_user_model().objects.get(username="coordinator.madrid"))
    page = client.get(reverse("crf_entry", args=[week12.pk, "RA_RESPONSE"])).content.decode()
    assert "ACR50 met" in page and "ACR70 not met" in page
    assert "moderate response" in page and "DAS28 6.13 → 3.45" in page


def test_a_grade_3_alt_shows_its_grade_and_asks_about_an_adverse_event(ra, alt_range, client):
    participant, visits = ra
    screen, week12 = visits["SCREEN"], visits["W12"]
    enter(screen, "DEMOG", sex="F")
    enter(screen, "LABS", alt_u_l=30, haemoglobin_g_dl=Decimal("13.5"))
    coordinator = get_user_model().objects.get(username="coordinator.madrid")

    # The page posts the form; ALT 250 U/L is 6.25 x ULN 40: CTCAE v5.0 grade 3 (> 5.0 - 20.0 x ULN).
    answers = complete_answers(week12, "LABS", {"alt_u_l": 250, "haemoglobin_g_dl": Decimal("11.5")})
    data = QueryDict(mutable=True)
    for name, value in answers.items():
        data[f"crf-{name}"] = value.isoformat() if isinstance(value, date) else str(value)
    result = crf_entry_save(user=coordinator, visit=week12, crf_code="LABS", data=data, expected_revision=0, complete=True)
    assert not result.saved and result.needs_confirmation
    prompts = [w for w in result.outcome.warnings if w.get("kind") == "ctcae"]
    assert [(w["field"], w["message"]) for w in prompts] == [
        ("alt_u_l", "CTCAE v5.0 grade 3 Alanine aminotransferase increased: record an adverse event if it is not already recorded.")
    ]
    assert not CrfEntry.objects.filter(visit=week12, crf_code="LABS").exists()

    client.force_login(coordinator)
    url = reverse("crf_entry", args=[week12.pk, "LABS"])
    page = client.post(url, {**data.dict(), "revision": "0", "action": "complete"}).content.decode()
    assert 'data-testid="ae-prompt-alt_u_l"' in page and reverse("ae_new", args=[participant.pk]) in page

    result = crf_entry_save(
        user=coordinator, visit=week12, crf_code="LABS", data=data, expected_revision=0, complete=True, confirm_warnings=True
    )
    assert result.saved
    # The confirmation is the monitor's query on the item.
    query = Query.objects.get(entry=result.entry, item="alt_u_l")
    assert "grade 3 Alanine aminotransferase increased" in query.text

    page = client.get(url).content.decode()
    grade = page.split('data-testid="grade-alt_u_l"', 1)[1].split("</div>", 1)[0]
    assert "CTCAE grade 3" in grade and "Alanine aminotransferase increased" in grade and "–40 U/L" in grade
    # Haemoglobin 11.5 g/dL against the female LLN 12.0: Anemia grade 1 (<LLN - 10.0 g/dL), low.
    anaemia = page.split('data-testid="grade-haemoglobin_g_dl"', 1)[1].split("</div>", 1)[0]
    assert "CTCAE grade 1" in anaemia and "Anemia" in anaemia and "Low" in anaemia and "12" in anaemia


def test_a_new_range_version_grades_the_samples_taken_after_it(ra, alt_range):
    participant, visits = ra
    site = participant.site
    week12 = visits["W12"]
    # The laboratory raised its ALT ULN to 60 U/L from the week-12 visit on: 250 U/L is 4.17 x ULN (grade 2).
    lab_range_save(
        lab_range=LabNormalRange(site=site, test="ALT", uln=Decimal("60"), effective_from=week12.visit_date),
        user=system_user(), reason="New ALT method",
    )
    entry = enter(week12, "LABS", alt_u_l=250, sample_date=week12.visit_date)
    assert entry.warnings == []  # grade 2: no adverse-event prompt
    from trials.visits.services import entry_lab_grades

    graded = entry_lab_grades(week12, schema_for(entry.crf), entry.answers)["alt_u_l"]
    assert (graded.grade, graded.uln) == (2, Decimal("60"))
    history = LabNormalRange.history.filter(test="ALT", site=site).order_by("history_date")
    assert [h.history_change_reason for h in history] == ["Laboratory reference ranges 2026", "New ALT method"]


def test_the_sdtm_lb_dataset_carries_the_range_indicator_and_the_ctcae_grade(ra, alt_range):
    from tests.exports.test_odm import export_bytes, spec_for
    from tests.exports.test_sdtm import read_datasets
    from trials.exports import sdtm

    participant, visits = ra
    enter(visits["SCREEN"], "DEMOG", sex="M")
    enter(visits["SCREEN"], "LABS", alt_u_l=30, haemoglobin_g_dl=Decimal("12.5"))
    enter(visits["W12"], "LABS", alt_u_l=250, haemoglobin_g_dl=Decimal("14.0"))
    lb = read_datasets(export_bytes(sdtm, spec_for("datamanager", "EASC-RA"))[0])["LB"][0]
    rows = lb[lb["LBTEST"].isin(["Alanine Aminotransferase", "Hemoglobin"])].sort_values(["VISITNUM", "LBTEST"])
    got = [tuple(row) for row in rows[["VISIT", "LBTEST", "LBORNRLO", "LBORNRHI", "LBNRIND", "LBTOX", "LBTOXGR"]].itertuples(index=False)]
    screening, week12 = visits["SCREEN"].label, visits["W12"].label
    assert got == [
        # Screening: ALT 30 <= ULN 40, normal; haemoglobin 12.5 g/dL below the male LLN 13.0: Anemia grade 1.
        (screening, "Alanine Aminotransferase", "", "40", "NORMAL", "", "0"),
        (screening, "Hemoglobin", "13", "17", "LOW", "Anemia", "1"),
        # Week 12: ALT 250 = 6.25 x ULN: grade 3; haemoglobin 14.0 within 13.0-17.0.
        (week12, "Alanine Aminotransferase", "", "40", "HIGH", "Alanine aminotransferase increased", "3"),
        (week12, "Hemoglobin", "13", "17", "NORMAL", "", "0"),
    ]
