"""The session engine (settings.SESSION_ENGINE, issue 22): Django's database sessions, in the
table of `UserSession`, which also holds the logged-in user's id. Loading a session reads the
session row and its user's row in one query (a LEFT JOIN on auth_user), and leaves the user in
this request's memo (edc.request_memo) for the authentication backend
(trials.protocol.auth.EdcModelBackend.get_user), which would otherwise read her by key in a
second query.

Nothing is cached across requests: the user row is the database's at this request, so the
checks Django makes on it are unchanged — `is_active` (ModelBackend.user_can_authenticate) and
the session's hash of the password (django.contrib.auth.get_user). The user id column is written
from the session data every time the session is saved (login writes it; logout deletes the row);
the backend uses the memo's user only when her id is the id the session data names.

settings.EDC_SESSION_USER_RELATED names one-to-one relations of the user read in the same query
(the study-builder role, which every page's menu asks about: trials.build.selectors); they are
the database's at this request too."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

from edc.request_memo import remember

# The memo's key for the user read with the session (trials.protocol.auth reads it).
SESSION_USER = "edc-session-user"


def _user_id(data: dict) -> int | None:
    try:
        return int(data[SESSION_KEY])
    except (KeyError, TypeError, ValueError):
        return None


class SessionStore(DbSessionStore):
    @classmethod
    def get_model_class(cls):  # noqa: ANN206
        from trials.accounts.models import UserSession

        return UserSession

    def create_model_instance(self, data: dict):  # noqa: ANN201
        session = super().create_model_instance(data)
        session.user_id = _user_id(data)
        return session

    def _get_session_from_db(self):  # noqa: ANN202
        try:
            related = ("user", *(f"user__{name}" for name in settings.EDC_SESSION_USER_RELATED))
            session = self.model.objects.select_related(*related).get(session_key=self.session_key, expire_date__gt=timezone.now())
        except (self.model.DoesNotExist, SuspiciousOperation) as error:
            if isinstance(error, SuspiciousOperation):
                logging.getLogger(f"django.security.{error.__class__.__name__}").warning(str(error))
            self._session_key = None
            return None
        if session.user is not None:
            remember((SESSION_USER, session.user.pk), session.user)
        return session
