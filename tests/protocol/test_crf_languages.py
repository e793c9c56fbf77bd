"""CRF content in several languages (issue 20): the loader refuses incomplete or unknown languages at
file:line; the staff CRF page and the participant's ePRO page show the texts in the reader's
language (her site's for ePRO), codes unchanged; a working translation is marked for staff only."""

import textwrap
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse

from edc.audit import audited_save, system_user
from edc.ops.services import user_language_set
from tests.epro.conftest import PASSWORD, register
from trials.epro.services import link_create
from trials.protocol.engine import schema_for
from trials.protocol.loader import ProtocolLoadError, protocol_check, protocol_load
from trials.protocol.models import CrfDefinition, FieldDefinition, Site

pytestmark = pytest.mark.django_db

# Line numbers below are counted in this text (line 1 = "code: LANG").
CRF = textwrap.dedent("""\
    code: LANG
    title:
      en: Language test
      fr: Test de langue
      es: Prueba de idioma
    languages: [en, fr, es]
    translation_status: {fr: to_be_validated, es: validated}
    codelists:
      yn:
        - code: 0
          label: {en: "No", fr: "Non", es: "No"}
        - code: 1
          label: {en: "Yes", fr: "Oui", es: "Sí"}
    sections:
      - name: {en: Pain, fr: Douleur, es: Dolor}
    fields:
      - name: pain_now
        label:
          en: Pain now
          fr: Douleur actuelle
        type: single_choice
        choices: yn
        section: Pain
      - name: weight_kg
        label: {en: Weight, fr: Poids, es: Peso}
        type: decimal
        unit: kg
""")


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "crfs"
    folder.mkdir()
    path = folder / "lang.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([path])
    return [str(p) for p in refused.value.problems]


def test_a_missing_language_is_refused_at_its_line_naming_the_item_and_language(tmp_path):
    path = write(tmp_path, CRF)
    problems = problems_of(path)
    # pain_now's label mapping starts on line 18 and has no "es".
    assert any(p.startswith(f"{path}:18: fields[0].label:") and "item 'pain_now'" in p and "no text in: es" in p for p in problems), problems
    assert CrfDefinition.objects.count() == 0


def test_a_plain_string_in_a_multilingual_crf_is_refused(tmp_path):
    text = CRF.replace("      fr: Douleur actuelle\n", "      fr: Douleur actuelle\n      es: Dolor actual\n")
    text = text.replace("label: {en: Weight, fr: Poids, es: Peso}", "label: Weight")
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert problems == [f"{path}:26: fields[1].label: the label of item 'weight_kg' is only in 'en': give a mapping with fr, es too"]


def test_an_unknown_language_code_is_refused_at_its_key(tmp_path):
    text = CRF.replace("      fr: Douleur actuelle\n", "      fr: Douleur actuelle\n      de: Schmerz jetzt\n      es: Dolor actual\n")
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert problems == [
        f"{path}:21: fields[0].label.de: unknown language code 'de' in the label of item 'pain_now' (known: en, fr, es)"
    ]


def test_an_unknown_code_in_languages_and_a_bad_status_are_refused(tmp_path):
    text = CRF.replace("languages: [en, fr, es]", "languages: [en, fr, es, de]")
    text = text.replace("es: validated}", "es: checked}")
    problems = problems_of(write(tmp_path, text))
    assert any(":6: languages[3]: 'de' is not allowed" in p for p in problems), problems
    assert any(":7: translation_status.es: 'checked' is not allowed" in p for p in problems), problems


def complete(tmp_path: Path) -> Path:
    path = write(tmp_path, CRF.replace("      fr: Douleur actuelle\n", "      fr: Douleur actuelle\n      es: Dolor actual\n"))
    protocol_load([path], user=system_user())
    return path


def test_texts_are_stored_per_language_and_read_with_a_fallback(tmp_path):
    complete(tmp_path)
    crf = CrfDefinition.objects.get(code="LANG")
    # Rows and the stored definition keep the default language where they always had it.
    assert crf.title == "Language test"
    row = FieldDefinition.objects.get(crf=crf, name="pain_now")
    assert (row.label, row.choices) == ("Pain now", [{"code": 0, "label": "No"}, {"code": 1, "label": "Yes"}])
    french = schema_for(crf, "fr")
    assert (french.title, french.item("pain_now").label, french.blocks[0][0].heading) == ("Test de langue", "Douleur actuelle", "Douleur")
    assert french.item("pain_now").choices == ((0, "Non"), (1, "Oui"))  # codes unchanged
    assert french.item("weight_kg").unit == "kg"
    assert french.translation_to_be_validated and not schema_for(crf, "es").translation_to_be_validated
    spanish = schema_for(crf, "es-ES")
    assert (spanish.language, spanish.item("pain_now").label) == ("es", "Dolor actual")
    italian = schema_for(crf, "it")  # not a language of this CRF: its default language
    assert (italian.language, italian.item("pain_now").label) == ("en", "Pain now")


def test_a_site_language_is_validated_in_the_trial_file(tmp_path):
    import yaml

    from tests.protocol.test_loader import TRIAL, write as write_trial

    trial = {**TRIAL, "sites": [{**TRIAL["sites"][0], "language": "de"}]}
    folder = write_trial(tmp_path, trial=trial)
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([folder])
    assert "sites[0].language: 'de' is not allowed" in str(refused.value)
    trial["sites"][0]["language"] = "fr"
    (folder / "mini_trial.yaml").write_text(yaml.safe_dump(trial, sort_keys=False))
    protocol_load([folder], user=system_user())
    assert Site.objects.get(trial__code=TRIAL["code"]).language == "fr"


# --- Pages ---------------------------------------------------------------------------------


@pytest.fixture
def coordinator(demo_users):
    return get_user_model().objects.get(username="coordinator.toulouse")


@pytest.fixture
def w8(demo_users):
    cache.clear()  # the ePRO rate limits
    return register().visits.get(definition__code="W8")


def test_staff_crf_page_in_french_with_the_to_be_validated_marker(client, coordinator, w8):
    client.force_login(coordinator)
    user_language_set(user=coordinator, language="fr")
    client.cookies["django_language"] = "fr"
    page = client.get(reverse("crf_entry", args=[w8.pk, "COCHIN"])).content.decode()
    assert "Échelle fonctionnelle de la main de Cochin" in page
    assert "1. Pouvez-vous tenir un bol ?" in page
    assert "Oui, avec un peu de difficulté" in page
    assert "cochin_01" in page and 'value="1"' in page  # names and codes unchanged
    assert 'data-testid="translation-to-be-validated"' in page
    client.cookies["django_language"] = "en"
    english = client.get(reverse("crf_entry", args=[w8.pk, "COCHIN"])).content.decode()
    assert "1. Can you hold a bowl?" in english and 'data-testid="translation-to-be-validated"' not in english


def test_staff_crf_page_in_spanish_keeps_the_translation_after_a_refused_save(client, coordinator, w8):
    client.force_login(coordinator)
    client.cookies["django_language"] = "es"
    response = client.post(reverse("crf_entry", args=[w8.pk, "PAIN_VAS"]), {"revision": "0", "action": "save", "pain_vas": "250"})
    page = response.content.decode()
    assert "Dolor durante la última semana" in page  # the form shown again, in Spanish
    assert "0 = ningún dolor; 100 = el peor dolor imaginable." in page


def test_epro_link_page_speaks_the_site_language_without_the_marker(client, coordinator, w8):
    site = w8.participant.site
    site.language = "es"
    audited_save(site, user=system_user(), reason="test: Spanish-speaking site")
    _link, token = link_create(user=coordinator, visit=w8, crf_code="COCHIN", base_url="http://testserver/")
    page = client.get(reverse("epro_link", args=[token]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Escala funcional de la mano de Cochin" in page
    assert "Responda a las siguientes preguntas" in page
    assert "translation-to-be-validated" not in page and "validated" not in page.lower()
    # Her own choice on these pages (the language cookie) wins over the site's.
    client.cookies["django_language"] = "fr"
    page = client.get(reverse("epro_link", args=[token]) + "?step=1").content.decode()
    assert "Pouvez-vous tenir un bol ?" in page and "Oui, sans difficulté" in page


def test_login_applies_the_site_language_to_a_user_who_never_chose_one(client, coordinator):
    for site in Site.objects.filter(trial__code="ASC-DU"):
        site.language = "fr"
        audited_save(site, user=system_user(), reason="test: French sites")
    response = client.post(reverse("login"), {"username": coordinator.username, "password": PASSWORD})
    assert response.cookies["django_language"].value == "fr"
    user_language_set(user=coordinator, language="es")
    client.logout()
    response = client.post(reverse("login"), {"username": coordinator.username, "password": PASSWORD})
    assert response.cookies["django_language"].value == "es"
