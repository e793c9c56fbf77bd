"""Forged object ids never answer 500 (issue 16): a text or an integer beyond bigint in an admin
action's `_selected_action`, the StudyRole add form's user, the SDV worklist and the export form
answer 400 or a form error, and nothing is written. On main each of these raised ValueError or
OverflowError (SQLite) / DataError (PostgreSQL)."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import reverse

from trials.protocol.models import StudyRole, Trial

pytestmark = pytest.mark.django_db

FORGED = ["abc", "99999999999999999999", "-1", "1e3", "١٢"]  # the last: Arabic-Indic digits, str.isdigit() is true


@pytest.fixture
def root(client, demo_users):  # noqa: ANN001, ARG001
    user = get_user_model().objects.create_superuser("root.ids", "root@example.org", "Xk39-very-long-secret")
    client.force_login(user)
    return user




def test_every_admin_action_refuses_forged_selected_ids_with_400(client, root):  # noqa: ANN001, ARG001
    request = RequestFactory().get("/admin/")
    request.user = root
    checked = []
    for model, model_admin in admin.site._registry.items():  # noqa: SLF001
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for name in model_admin.get_actions(request):
            for forged in ("abc", "99999999999999999999"):
                response = client.post(url, {"action": name, "_selected_action": ["1", forged], "index": "0"})
                assert response.status_code == 400, (url, name, forged, response.status_code)
            checked.append(f"{model._meta.model_name}.{name}")
    # The actions the black-box test named are among those checked.
    for name in ("query.close_queries", "crfentry.sdv_mark_verified", "crfentry.migrate_to_newest_version"):
        assert name in checked, checked


def test_the_study_role_add_form_refuses_a_forged_user_with_a_form_error(client, root):  # noqa: ANN001, ARG001
    trial = Trial.objects.get(code="ASC-DU")
    before = StudyRole.objects.count()
    for forged in FORGED:
        response = client.post(
            reverse("admin:protocol_studyrole_add"),
            {"user": forged, "trial": trial.pk, "site": "", "role": "monitor", "change_reason": "forged id test"},
        )
        assert response.status_code == 200, forged
        assert "errorlist" in response.content.decode(), forged
    assert StudyRole.objects.count() == before


def test_the_sdv_worklist_refuses_forged_entries_and_sites(client, demo_users):  # noqa: ANN001, ARG001
    client.force_login(get_user_model().objects.get(username="monitor.du"))
    url = reverse("admin:monitoring_sdv_worklist")
    for forged in FORGED:
        _worklist(client, url, forged)


def _worklist(client, url, forged):  # noqa: ANN001, ANN202
    assert client.post(url, {"entry": forged}).status_code == 400
    assert client.get(url, {"site": forged}).status_code == 200  # an unknown site filters nothing in
    assert client.get(reverse("admin:monitoring_query_raise"), {"entry": forged}).status_code == 404


def test_the_export_form_refuses_forged_sites_with_a_form_error(client, demo_users):  # noqa: ANN001, ARG001
    client.force_login(get_user_model().objects.get(username="sponsor.toulouse"))
    url = reverse("trial_exports", args=["ASC-DU"])
    for forged in FORGED:
        _export(client, url, forged)


def _export(client, url, forged):  # noqa: ANN001, ANN202
    response = client.post(url, {"format": "csv", "sites": [forged], "reason": "forged id test", "cutoff": ""})
    assert response.status_code == 200
    assert "is not a valid value" in response.content.decode() or "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize("cookie", ["abcdefghij\x00klmnopqrstuvwxyz0123", "x" * 41, "ABCDEFGH/..", "éééééééééé"])
def test_a_forged_session_cookie_is_no_session_not_a_500(client, cookie):  # noqa: ANN001
    """Django's session keys are [a-z0-9] (django.contrib.sessions.backends.base.VALID_KEY_CHARS);
    a NUL byte made PostgreSQL refuse the session lookup and every page answered 500 (found by
    schemathesis). Such a cookie is treated as no session: the login page, then a fresh session."""
    from django.conf import settings

    home = client.get("/", HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}={cookie}")
    assert home.status_code == 302 and "/accounts/login/" in home["Location"]
    assert client.get("/accounts/login/").status_code == 200
