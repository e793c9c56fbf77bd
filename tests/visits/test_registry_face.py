"""Issue 15, registry (seed 002): a facial nanofat graft with platelet-rich plasma and its facial core
outcomes (mouth opening, MHISS, facial skin score), through the services and the pages; a hand-only
graft is not asked facial items."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.schedule import visit_record_date
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

MHISS = {f"mhiss_{n:02d}": 0 for n in range(1, 13)}


@pytest.fixture
def grafted(demo_users):
    """A registry participant at Toulouse whose fat-grafting procedure was 10 days ago (visit PROC held)."""
    site = Site.objects.get(trial__code="SSC-FATGRAFT-REG", code="TLS")
    today = site.today()
    participant = participant_register(
        site=site, user=system_user(), consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=14),
        first_treatment_date=today - timedelta(days=10),
    )
    proc = participant.visits.get(definition__code="PROC")
    return participant, visit_record_date(proc, user=system_user(), visit_date=proc.planned_date)


def save(visit, crf_code: str, answers: dict):  # noqa: ANN001, ANN201
    return crf_entry_save_answers(user=system_user(), visit=visit, crf_code=crf_code, answers=answers, complete=True, reason="Test data")


def procedure(visit, **overrides) -> dict:  # noqa: ANN001
    return {
        "procedure_date": visit.visit_date, "treated_areas": ["face"], "technique": "nanofat", "anaesthesia_type": "local",
        "harvest_site": "abdomen", "harvest_method": "syringe", "cannula_mm": Decimal("2.0"), "processing": "emulsification",
        "harvested_fat_ml": Decimal("30"), "prp_used": True, "prp_preparation": "commercial_kit", "prp_volume_ml": Decimal("4"),
        "injections": [
            {"injection_site": "face_perioral", "volume_ml": Decimal("3.5")},
            {"injection_site": "face_lips", "volume_ml": Decimal("1.25")},
        ],
        "procedure_complications": False,
    } | overrides


def test_a_facial_nanofat_graft_with_prp_and_its_facial_outcomes(grafted, client):
    participant, proc = grafted
    graft = save(proc, "FATGRAFT", procedure(proc))
    assert graft.answers["technique"] == "nanofat" and graft.answers["prp_preparation"] == "commercial_kit"
    assert [(row["injection_site"], row["volume_ml"]) for row in graft.answers["injections"]] == [
        ("face_perioral", "3.50"), ("face_lips", "1.25"),
    ]
    assert "treated_hand" not in graft.answers or graft.answers["treated_hand"] is None  # a hand item, not asked

    # Mouthon 2007: the MHISS total is the sum of its 12 items (0-4 each): 4 + 3 + 2 + 1 + 0*8 = 10.
    answers = {**MHISS, "mhiss_01": 4, "mhiss_02": 3, "mhiss_03": 2, "mhiss_04": 1}
    face = save(proc, "FACE", {"mouth_opening_mm": 32, "face_skin_score": 2, **answers})
    assert (face.answers["mouth_opening_mm"], face.answers["mhiss_total"], face.answers["face_skin_score"]) == (32, 10, 2)

    client.force_login(get_user_model().objects.get(username="coordinator.toulouse"))
    page = client.get(reverse("crf_entry", args=[proc.pk, "FACE"])).content.decode()
    assert 'name="crf-mouth_opening_mm"' in page and 'data-testid="calc-mhiss_total">10<' in page
    assert "The face was not grafted" not in page  # the note for hand-only grafts is hidden

    # At month 3 the facial items are asked from the procedure visit's FATGRAFT (its baseline).
    month3 = participant.visits.get(definition__code="M3")
    page = client.get(reverse("crf_entry", args=[month3.pk, "FACE"])).content.decode()
    assert 'name="crf-mouth_opening_mm"' in page


def test_a_hand_only_graft_is_not_asked_facial_items(grafted, client):
    participant, proc = grafted
    hands = procedure(proc, treated_areas=["hands"], technique="microfat", treated_hand="left", prp_used=False,
                      injections=[{"injection_site": "palm", "volume_ml": Decimal("2")}])
    for name in ("prp_preparation", "prp_volume_ml"):
        hands.pop(name)
    save(proc, "FATGRAFT", hands)
    client.force_login(get_user_model().objects.get(username="coordinator.toulouse"))
    page = client.get(reverse("crf_entry", args=[proc.pk, "FACE"])).content.decode()
    assert "crf-mouth_opening_mm" not in page and "crf-mhiss_01" not in page
    assert "The face was not grafted" in page
    # Saved empty, the facial items are not stored at all.
    assert save(proc, "FACE", {}).answers.get("mouth_opening_mm") is None


def test_an_injection_site_outside_the_treated_areas_is_refused(grafted):
    participant, proc = grafted
    wrong = procedure(proc, injections=[{"injection_site": "palm", "volume_ml": Decimal("2")}])
    with pytest.raises(ValidationError) as refused:
        save(proc, "FATGRAFT", wrong)
    assert "injections[1].injection_site" in refused.value.message_dict
    missing_prp = procedure(proc)
    missing_prp.pop("prp_preparation")
    with pytest.raises(ValidationError) as refused:
        save(proc, "FATGRAFT", missing_prp)
    assert "prp_preparation" in refused.value.message_dict
