"""The session engine that reads the session and its user in one query (issue 22, third pass;
trials.accounts.session_store): the user is still the database's at each request, so a
deactivated account or a changed password loses access on its very next request, however the
change was written (a save, or an UPDATE that sends no signal), and nothing of one user leaks
into another's request."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from trials.accounts.models import UserSession

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough password 1"


def logged_in(username: str) -> tuple[Client, object]:
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return client, user


def user_reads(queries) -> list[str]:  # noqa: ANN001
    return [q["sql"] for q in queries.captured_queries if re.search(r'\bFROM "auth_user"', q["sql"])]


def test_the_login_writes_the_users_id_beside_the_session_and_logout_deletes_the_row():
    client, user = logged_in("ines")
    session = UserSession.objects.get(session_key=client.cookies["sessionid"].value)
    assert session.user_id == user.pk
    client.post(reverse("logout"))
    assert not UserSession.objects.filter(session_key=session.session_key).exists()


def test_a_request_reads_its_session_and_user_in_one_query():
    client, user = logged_in("jade")
    client.get(reverse("account"))
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("account"))
    assert page.status_code == 200 and f'data-edc-user="{user.pk}"' in page.content.decode()
    session_reads = [q["sql"] for q in queries.captured_queries if 'FROM "accounts_usersession"' in q["sql"]]
    assert len(session_reads) == 1 and 'JOIN "auth_user"' in session_reads[0]
    # No second read of the user by key.
    assert not [sql for sql in user_reads(queries) if 'FROM "accounts_usersession"' not in sql and '"auth_user"."password"' in sql]


@pytest.mark.parametrize("how", ["save", "update"])
def test_a_deactivated_account_loses_access_on_its_next_request(how):
    client, user = logged_in(f"deactivated-{how}")
    assert client.get(reverse("account")).status_code == 200
    if how == "save":
        user.is_active = False
        user.save()
    else:  # no signal, no cache to clear: the next request reads the row
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    response = client.get(reverse("account"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("how", ["save", "update"])
def test_a_changed_password_ends_the_session_on_its_next_request(how):
    client, user = logged_in(f"password-{how}")
    assert client.get(reverse("account")).status_code == 200
    if how == "save":
        user.set_password("another long password 2")
        user.save()
    else:
        from django.contrib.auth.hashers import make_password

        get_user_model().objects.filter(pk=user.pk).update(password=make_password("another long password 2"))
    response = client.get(reverse("account"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_session_row_naming_another_user_does_not_log_in_as_her():
    """The backend takes the user read with the session only when her id is the one the (signed)
    session data names; a row whose user column says otherwise is read the old way."""
    client, user = logged_in("owner")
    other = get_user_model().objects.create_user("someone-else", password=PASSWORD)
    UserSession.objects.filter(session_key=client.cookies["sessionid"].value).update(user=other)
    page = client.get(reverse("account"))
    assert page.status_code == 200
    assert f'data-edc-user="{user.pk}"' in page.content.decode() and f'data-edc-user="{other.pk}"' not in page.content.decode()



def test_the_study_build_link_follows_the_study_builder_role_at_the_next_request_without_a_query_of_its_own():
    """The study-builder row is read with the user in the session query
    (settings.EDC_SESSION_USER_RELATED): granted or ended, the menu shows it at the next request."""
    from trials.build.services import study_builder_end, study_builder_grant

    admin = get_user_model().objects.create_superuser("admin-sb", password=PASSWORD)
    client, user = logged_in("builder")
    link = b'data-testid="nav-build"'
    assert link not in client.get(reverse("account")).content
    builder = study_builder_grant(user=user, granted_by=admin, reason="builds studies")
    with CaptureQueriesContext(connection) as queries:
        assert link in client.get(reverse("account")).content
    assert not [q["sql"] for q in queries.captured_queries if 'FROM "build_studybuilder"' in q["sql"]]
    study_builder_end(builder=builder, ended_by=admin, reason="done")
    assert link not in client.get(reverse("account")).content
