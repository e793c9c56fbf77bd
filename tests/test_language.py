"""The language switcher in the top bar: a user's choice is kept on her account (edc.ops.UserPreference),
so it follows her to another browser at login, and a shared computer shows each user her own language."""

import pytest
from django.conf import settings
from django.test import Client

from edc.ops.models import UserPreference

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough password 42"
COOKIE = settings.LANGUAGE_COOKIE_NAME


@pytest.fixture
def coordinator(django_user_model):
    return django_user_model.objects.create_user(username="coord.lyon", password=PASSWORD)


def log_in(client: Client, username: str) -> None:
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]


def test_the_login_page_offers_the_three_languages_in_their_own_names(client):
    page = client.get("/accounts/login/").content.decode()
    for code, own_name in (("en", "English"), ("fr", "Français"), ("es", "Español")):
        assert f'name="language" value="{code}" lang="{code}" title="{own_name}"' in page


def test_an_anonymous_choice_sets_the_cookie_and_the_page_comes_back_in_that_language(client):
    response = client.post("/language/", {"language": "fr", "next": "/accounts/login/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert response.cookies[COOKIE].value == "fr"
    page = client.get("/accounts/login/").content.decode()
    assert '<html lang="fr">' in page and "Se connecter" in page
    assert UserPreference.objects.count() == 0


def test_a_logged_in_choice_is_kept_on_the_account(client, coordinator):
    log_in(client, "coord.lyon")
    response = client.post("/language/", {"language": "es", "next": "/accounts/login/"})
    assert response.cookies[COOKIE].value == "es"
    assert UserPreference.objects.get(user=coordinator).language == "es"
    client.post("/language/", {"language": "fr", "next": "/"})
    assert UserPreference.objects.get(user=coordinator).language == "fr"


def test_an_unknown_language_is_refused_with_a_message_and_changes_nothing(client, coordinator):
    log_in(client, "coord.lyon")
    response = client.post("/language/", {"language": "de", "next": "/"})  # Django has a German catalogue
    assert response.status_code == 400 and b"Unknown language: de." in response.content
    assert COOKIE not in response.cookies
    assert not UserPreference.objects.filter(user=coordinator).exists()


def test_the_choice_follows_the_user_to_another_browser_at_login(client, coordinator, django_user_model):
    log_in(client, "coord.lyon")
    client.post("/language/", {"language": "es", "next": "/"})

    # A shared ward computer where the last person chose French.
    django_user_model.objects.create_user(username="other", password=PASSWORD)
    ward = Client()
    log_in(ward, "other")
    ward.post("/language/", {"language": "fr", "next": "/"})
    ward.post("/accounts/logout/")
    assert ward.get("/accounts/login/").content.decode().count("Se connecter") >= 1

    response = ward.post("/accounts/login/", {"username": "coord.lyon", "password": PASSWORD})
    assert response.cookies[COOKIE].value == "es"
    assert '<html lang="es">' in ward.get("/").content.decode()


def test_a_user_who_never_chose_keeps_the_browser_language(client, coordinator):
    response = client.post(
        "/accounts/login/", {"username": "coord.lyon", "password": PASSWORD}, HTTP_ACCEPT_LANGUAGE="es-MX,es;q=0.9"
    )
    assert COOKIE not in response.cookies
    assert '<html lang="es">' in client.get("/", HTTP_ACCEPT_LANGUAGE="es-MX,es;q=0.9").content.decode()
