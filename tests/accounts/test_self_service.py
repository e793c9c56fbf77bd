"""Self-service passwords (issue 16): every user changes her password; a forgotten one is reset by
an e-mailed link that works once; an account an administrator created must choose its own password
at first login; a password containing the user's name ("Claire Bernard") or a common one is refused.
On main none of these pages existed and "ClaireBernard2026" was accepted."""

import re

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse

pytestmark = pytest.mark.django_db

DEMO = {u["username"]: u["password"] for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}
NEW = "Quiet-harbour-lantern-74"


@pytest.fixture(autouse=True)
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def monitor():  # noqa: ANN201
    return get_user_model().objects.get(username="monitor.du")  # Claire Bernard


@pytest.mark.parametrize("password", ["ClaireBernard2026", "bernard-claire-77", "Clàire.Bernârd!9", "xx-monitor-du-xx", "Bernard#Lab#2026"])
def test_a_password_containing_the_users_name_is_refused(demo_users, password):  # noqa: ARG001
    with pytest.raises(ValidationError) as refused:
        validate_password(password, user=monitor())
    assert "contains your name" in " ".join(refused.value.messages)


@pytest.mark.parametrize("password", ["password123", "iloveyou12", "qwertyuiop"])
def test_a_common_password_is_refused(demo_users, password):  # noqa: ARG001
    with pytest.raises(ValidationError) as refused:
        validate_password(password, user=monitor())
    assert "too common" in " ".join(refused.value.messages)


def test_every_user_changes_her_password(client, demo_users):  # noqa: ARG001
    client.force_login(get_user_model().objects.get(username="sponsor.toulouse"))
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(reverse("password_change"), {"old_password": DEMO["sponsor.toulouse"], "new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    assert get_user_model().objects.get(username="sponsor.toulouse").check_password(NEW)


def test_a_reset_link_is_e_mailed_and_works_once(client, demo_users, mailoutbox):  # noqa: ARG001
    client.post(reverse("password_reset"), {"email": "sponsor@example.org"})
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["sponsor@example.org"]
    link = re.search(r"https?://[^/]+(/accounts/password/reset/[^/]+/[^/]+/)", mailoutbox[0].body).group(1)
    form_url = client.get(link, follow=True).redirect_chain[-1][0]  # Django hides the token behind a redirect
    response = client.post(form_url, {"new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 302
    assert get_user_model().objects.get(username="sponsor.toulouse").check_password(NEW)
    # The same link again: refused.
    again = client.__class__()
    page = again.get(link, follow=True)
    assert "was used already or has expired" in page.content.decode()
    # An unknown address sends nothing and says the same as a known one.
    client.post(reverse("password_reset"), {"email": "nobody@example.org"})
    assert len(mailoutbox) == 1


def test_an_account_an_administrator_created_must_choose_its_password_first(client, demo_users):  # noqa: ARG001
    root = get_user_model().objects.create_superuser("root.sv", "root@example.org", "Xk39-very-long-secret")
    client.force_login(root)
    response = client.post(
        reverse("admin:auth_user_add"),
        {"username": "new.coordinator", "password1": "Temporary-pass-4471", "password2": "Temporary-pass-4471", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    newcomer = client.__class__()
    response = newcomer.post("/accounts/login/", {"username": "new.coordinator", "password": "Temporary-pass-4471"})
    assert response.status_code == 302
    # Every page leads to the password change until she chose her own.
    for path in ("/", "/admin/", "/exports/"):
        response = newcomer.get(path)
        assert response.status_code == 302 and response["Location"] == reverse("password_change"), path
    page = newcomer.get(reverse("password_change")).content.decode()
    assert "choose your own before you continue" in page
    newcomer.post(reverse("password_change"), {"old_password": "Temporary-pass-4471", "new_password1": NEW, "new_password2": NEW})
    assert newcomer.get("/").status_code == 200


def test_demo_users_are_not_asked_to_change_their_password(client, demo_users):  # noqa: ARG001
    response = client.post("/accounts/login/", {"username": "coordinator.toulouse", "password": DEMO["coordinator.toulouse"]})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
