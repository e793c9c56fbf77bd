"""Session rules checked on every request, from the session alone (no query):

- an idle session ends after SESSION_IDLE_MINUTES without a request (21 CFR 11.300, EMA 2023
  guideline on computerised systems: automatic logoff); the page warns before (static/js/idle.js)
  and the CRF draft stays in the tab (static/js/drafts.js keeps it unless the user logs out);
- a session older than the user's "end all my other sessions" click is ended;
- an account whose password an administrator set sees only the password change page;
- where a second factor is required (trials.accounts.twofactor), only the code page until passed.
"""

import time
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from trials.accounts.services import (
    LAST_SEEN,
    MUST_CHANGE,
    NEEDS_SECOND_FACTOR,
    SESSION_GENERATION,
    must_change_password,
    session_generation,
)
from trials.accounts.twofactor import second_factor_required

SESSION_KEY = MUST_CHANGE


def idle_seconds() -> int:
    return settings.SESSION_IDLE_MINUTES * 60


class SessionRulesMiddleware:
    def __init__(self, get_response) -> None:  # noqa: ANN001
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        session = request.session
        now = int(time.time())
        last = session.get(LAST_SEEN)
        if last is not None and now - last > idle_seconds():
            return self._end(request, "idle", _("You were logged out after %(n)s minutes without activity.") % {"n": settings.SESSION_IDLE_MINUTES})
        if session.get(SESSION_GENERATION, 0) != session_generation(user.pk):
            return self._end(request, "ended elsewhere", _("This session was ended from another session."))
        # Written at most every tenth of the timeout (a session write per request would cost a
        # query per page); the keep-alive always writes.
        if last is None or now - last >= idle_seconds() // 10 or request.path == reverse("session_keepalive"):
            session[LAST_SEEN] = now
        request.edc_idle_remaining = idle_seconds() - (now - session[LAST_SEEN])
        if MUST_CHANGE not in session:
            session[MUST_CHANGE] = must_change_password(user)
        if session[MUST_CHANGE] and not _password_change_allowed(request.path):
            return redirect("password_change")
        if settings.EDC_REQUIRE_2FA and not user.is_verified() and not _second_factor_allowed(request.path):
            if NEEDS_SECOND_FACTOR not in session:
                session[NEEDS_SECOND_FACTOR] = second_factor_required(user)
            if session[NEEDS_SECOND_FACTOR]:
                return redirect(f"{reverse('second_factor')}?next={quote(request.get_full_path() if request.method == 'GET' else '/')}")
        return self.get_response(request)

    @staticmethod
    def _end(request: HttpRequest, why: str, message: str) -> HttpResponse:
        request.edc_logout_reason = why
        path = request.get_full_path()
        logout(request)
        messages.warning(request, message)
        return redirect_to_login(path if request.method == "GET" else "/")


def _second_factor_allowed(path: str) -> bool:
    allowed = (reverse("second_factor"), reverse("second_factor_setup"), reverse("logout"), "/static/", "/i18n/")
    return path.startswith(allowed)


def _password_change_allowed(path: str) -> bool:
    allowed = (reverse("password_change"), reverse("password_change_done"), reverse("logout"), "/static/", "/i18n/")
    return path.startswith(allowed)
