"""Site laboratory normal ranges in the admin (issue 15): data managers add versions with a reason,
monitors read them, incoherent ranges are refused on their field, a saved range only deactivates."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from trials.protocol.models import LabNormalRange, Site

pytestmark = pytest.mark.django_db


def user(name: str):  # noqa: ANN201
    return get_user_model().objects.get(username=name)


def form(site: Site, **overrides) -> dict:
    return {
        "site": site.pk, "test": "ALT", "sex": "", "age_from_years": 0, "age_to_years": 150, "lln": "", "uln": "40",
        "effective_from": "2026-01-01", "is_active": "on", "change_reason": "Laboratory reference ranges 2026",
    } | overrides


def test_a_data_manager_adds_a_range_with_its_unit_and_reason(demo_users, client):
    site = Site.objects.get(trial__code="EASC-RA", code="MAD-LP")
    client.force_login(user("datamanager"))
    response = client.post(reverse("admin:protocol_labnormalrange_add"), form(site))
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = LabNormalRange.objects.get(site=site, test="ALT")
    assert (saved.uln, saved.unit) == (Decimal("40"), "U/L")  # the unit of the grading table, not typed
    assert saved.history.get().history_change_reason == "Laboratory reference ranges 2026"
    assert saved.history.get().history_user == user("datamanager")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"lln": "50", "uln": "40"}, "uln", "The upper limit must be above the lower limit."),
        ({"lln": "", "uln": ""}, "uln", "Give the lower limit, the upper limit or both."),
        ({"age_from_years": 65, "age_to_years": 18}, "age_to_years", "The age band is empty"),
        ({"change_reason": ""}, "change_reason", "This field is required."),
    ],
)
def test_an_incoherent_range_is_refused_on_its_field(demo_users, client, overrides, field, message):
    site = Site.objects.get(trial__code="EASC-RA", code="MAD-LP")
    client.force_login(user("datamanager"))
    response = client.post(reverse("admin:protocol_labnormalrange_add"), form(site, **overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors.get(field, []))
    assert not LabNormalRange.objects.exists()


def test_a_saved_range_only_deactivates_and_monitors_read(demo_users, client):
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    client.force_login(user("datamanager"))
    client.post(reverse("admin:protocol_labnormalrange_add"), form(site))
    saved = LabNormalRange.objects.get()
    url = reverse("admin:protocol_labnormalrange_change", args=[saved.pk])
    client.post(url, {"uln": "400", "change_reason": "typo"})  # read-only limits: ignored
    client.post(url, {"change_reason": "Wrong laboratory"})  # is_active unticked
    saved.refresh_from_db()
    assert (saved.uln, saved.is_active) == (Decimal("40"), False)
    client.force_login(user("monitor.du"))
    assert client.get(reverse("admin:protocol_labnormalrange_changelist")).status_code == 200
    assert client.post(reverse("admin:protocol_labnormalrange_add"), form(site)).status_code == 403
