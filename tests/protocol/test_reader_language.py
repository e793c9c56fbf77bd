"""Issue 20: a reader sees a CRF in her language where the CRF file has it — its edit-check
messages (on the staff CRF page), the monitor's read-only review of a form, the printed CRF and
the casebook PDF (both in the requester's language: docs/architecture.md) — and numbers shown on a
page with her locale's decimal separator. Expected texts are read from the CRF files (seeds/crfs)."""

import html
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse
from django.utils import translation

from edc.audit import system_user
from tests.epro.conftest import register
from tests.exports.pdftools import pdf_text
from tests.protocol.test_crf_languages import CRF, problems_of, write
from trials.protocol.engine import schema_for
from trials.protocol.models import CrfDefinition
from trials.visits.services import crf_entry_save_answers
from trials.visits.templatetags.crf import shown_number

pytestmark = pytest.mark.django_db

CRFS = Path(__file__).resolve().parents[2] / "seeds" / "crfs"
RCS = yaml.safe_load((CRFS / "rcs.yaml").read_text())
RCS_FIELDS = {f["name"]: f for f in RCS["fields"]}
DURATION_CHECK = RCS_FIELDS["raynaud_attack_duration_min"]["checks"][0]["message"]  # {en, fr, es}
COCHIN = yaml.safe_load((CRFS / "cochin.yaml").read_text())
COCHIN_01 = next(f for f in COCHIN["fields"] if f["name"] == "cochin_01")["label"]


def text(page: str) -> str:
    return html.unescape(page)


def test_a_check_message_is_read_in_each_language_of_the_crf(demo_users):
    crf = CrfDefinition.objects.filter(code="RCS").order_by("-version").first()
    for language in ("en", "fr", "es"):
        rule = schema_for(crf, language).item("raynaud_attack_duration_min").rules[0]
        assert rule.message == DURATION_CHECK[language]
    assert schema_for(crf).item("raynaud_attack_duration_min").rules[0].message == DURATION_CHECK["en"]  # the default
    assert schema_for(crf, "de").item("raynaud_attack_duration_min").rules[0].message == DURATION_CHECK["en"]


def test_a_plain_check_message_in_a_multilingual_crf_is_refused(tmp_path):
    crf = CRF.replace("      fr: Douleur actuelle\n", "      fr: Douleur actuelle\n      es: Dolor actual\n")
    crf += textwrap.indent(textwrap.dedent("""\
        checks:
          - expression: "weight_kg == null || weight_kg > 0"
            message: The weight is positive.
    """), "")
    path = write(tmp_path, crf)
    problems = problems_of(path)
    assert any("checks[0].message" in p and "is only in 'en': give a mapping with fr, es too" in p for p in problems), problems


@pytest.fixture
def w8(demo_users):
    cache.clear()
    return register().visits.get(definition__code="W8")


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


@pytest.mark.parametrize("language", ["fr", "es"])
def test_the_staff_crf_page_gives_a_check_message_in_the_users_language(client, w8, language):
    client.force_login(user("coordinator.toulouse"))
    client.cookies["django_language"] = language
    response = client.post(reverse("crf_entry", args=[w8.pk, "RCS"]), {
        "revision": "0", "action": "save", "crf-raynaud_condition_score": "5", "crf-raynaud_attacks_per_day": "3",
    })
    page = text(response.content.decode())
    assert DURATION_CHECK[language] in page
    assert DURATION_CHECK["en"] not in page


@pytest.fixture
def cochin_entry(w8):
    answers = {f"cochin_{n:02d}": n % 6 for n in range(1, 19)}
    return crf_entry_save_answers(user=system_user(), visit=w8, crf_code="COCHIN", answers=answers, complete=True, reason="test")


@pytest.mark.parametrize("language", ["fr", "es", "en"])
def test_the_monitors_review_form_is_in_her_language(client, cochin_entry, language):
    client.force_login(user("monitor.du"))
    client.cookies["django_language"] = language
    response = client.get(reverse("form_review", args=[cochin_entry.pk]))
    assert response.status_code == 200
    page = text(response.content.decode())
    assert COCHIN_01[language] in page
    assert 'name="crf-cochin_01"' in page  # names unchanged


def test_the_casebook_is_in_the_requesters_language(client, cochin_entry):
    client.force_login(user("monitor.du"))
    client.cookies["django_language"] = "fr"
    response = client.get(f"/participants/{cochin_entry.participant_id}/casebook.pdf")
    assert response.status_code == 200
    pdf = " ".join(pdf_text(response.content).split())  # pdftotext wraps long labels
    with translation.override("fr"):
        heading = translation.gettext("Audit trail")
    crfs, found, _trail = pdf.partition(heading)  # the CRF pages, then the audit trail (labels as recorded)
    assert found
    assert " ".join(COCHIN_01["fr"].split()) in crfs
    assert COCHIN_01["en"] not in crfs


def test_the_printed_crf_is_in_the_requesters_language(client, w8):
    client.force_login(user("coordinator.toulouse"))
    crf = CrfDefinition.objects.filter(code="RCS").order_by("-version").first()
    url = reverse("crf_print", args=["ASC-DU", "RCS", crf.version]) + "?annotated=1"
    for language in ("fr", "es"):
        client.cookies["django_language"] = language
        page = text(client.get(url).content.decode())
        assert RCS_FIELDS["raynaud_attacks_per_day"]["label"][language] in page
        assert DURATION_CHECK[language] in page  # the annotated form's checks too
        assert "raynaud_attacks_per_day" in page  # names unchanged
    client.cookies["django_language"] = "en"
    assert RCS_FIELDS["raynaud_attacks_per_day"]["label"]["en"] in text(client.get(url).content.decode())


@pytest.mark.parametrize(("language", "stored", "expected"), [
    ("en", "1.714", "1.714"), ("fr", "1.714", "1,714"), ("es", "1.714", "1,714"),  # CLDR: fr, es write a decimal comma
    ("fr", Decimal("25.00"), "25,00"),  # every stored decimal kept
    ("fr", 3, "3"), ("fr", "1.2.3", "1.2.3"), ("fr", "ABC", "ABC"),  # not a decimal: as it is
])
def test_a_shown_decimal_has_the_readers_separator(language, stored, expected):
    """The CRF page's calculated values (HAQ-DI 1.714) as the reader writes them; inputs and exports
    keep the stored form."""
    with translation.override(language):
        assert shown_number(stored) == expected
