"""A coordinator uploads a photograph of a digital ulcer on the CRF page in Chromium: the live
re-evaluation keeps working, the save stores the file, the page shows its thumbnail and the
download link."""

import hashlib
import io
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry, StoredFile

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def participant(demo_users):
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), consent_date=today - timedelta(days=30),
        anchor_date=today - timedelta(days=7), user=system_user(),
    )


@pytest.fixture(autouse=True)
def file_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "crf_files": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "crf-files")}},
    }


def ulcer_photo() -> bytes:
    """A drawn 'photograph': a fingertip with a dark ulcer and a ruler, as a PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (236, 200, 170))
    draw = ImageDraw.Draw(image)
    draw.ellipse((180, 60, 460, 440), fill=(222, 170, 140))
    draw.ellipse((290, 150, 350, 200), fill=(120, 30, 30))
    draw.rectangle((60, 400, 580, 440), fill=(250, 250, 240))
    for x in range(60, 581, 20):
        draw.line((x, 400, x, 415 if x % 100 else 425), fill=(0, 0, 0), width=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_photograph_is_uploaded_on_the_crf_page_and_shown_as_a_thumbnail(page, live_server, participant):
    day0 = participant.visits.get(definition__code="D0")
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/visits/{day0.pk}/crf/DU_ASSESS/")
    page.fill("#id_crf-assessment_date", (timezone.localdate() - timedelta(days=1)).isoformat())
    page.fill("#id_crf-number_active_du", "1")
    if not page.locator("input[name$='-ulcer_id']").count():
        go(page, "button[value='add_row:ulcers']")
    prefix = "#id_ulcers-0-"
    page.fill(prefix + "ulcer_id", "U1")
    page.check(prefix + "hand_0")
    page.select_option(prefix + "location", "distal_to_pip")
    page.check(prefix + "finger_1")
    for flag, value in (("beyond_pip", "true"), ("ischemic", "true"), ("over_calcinosis", "false"), ("active", "true"),
                        ("due_to_other_condition", "false"), ("osteomyelitis_or_uncontrolled_infection", "false"),
                        ("infected_requiring_systemic_antibiotics", "false"), ("requires_urgent_surgery", "false")):
        page.check(f"{prefix}{flag}_{0 if value == 'true' else 1}")
    photo = ulcer_photo()
    page.set_input_files(prefix + "photo", files=[{"name": "U1 right index.png", "mimeType": "image/png", "buffer": photo}])
    # The live re-evaluation still runs (branching: the healing date appears) and leaves the file out.
    page.check(prefix + "healed_0")
    expect(page.locator(prefix + "healing_date")).to_be_visible()
    page.check(prefix + "healed_1")
    expect(page.locator(prefix + "healing_date")).to_have_count(0)
    assert not StoredFile.objects.exists()
    go(page, "button[value=complete]")
    if page.locator("[data-testid=warnings]").count():
        page.check("#confirm_warnings")
        page.set_input_files(prefix + "photo", files=[{"name": "U1 right index.png", "mimeType": "image/png", "buffer": photo}])
        go(page, "button[value=complete]")
    expect(page.locator("[data-testid=saved]")).to_be_visible()
    thumbnail = page.locator("[data-testid=thumb-photo]")
    expect(thumbnail).to_be_visible()
    assert thumbnail.evaluate("img => img.complete && img.naturalWidth") == 240  # the 240-pixel thumbnail, not the photograph
    expect(page.locator("[data-testid=download-photo]")).to_have_text("U1 right index.png")
    path = screenshot(page, "crf-du-photo")
    Path("/tmp/files").mkdir(exist_ok=True)
    shutil.copy(path, "/tmp/files/crf-du-photo.png")
    reference = CrfEntry.objects.get(visit=day0, crf_code="DU_ASSESS").answers["ulcers"][0]["photo"]
    assert reference["sha256"] == hashlib.sha256(photo).hexdigest()
    with page.expect_download() as download:
        page.click("[data-testid=download-photo]")
    assert Path(download.value.path()).read_bytes() == photo
    assert page.console_errors == []
