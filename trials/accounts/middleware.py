"""Requests of an account that must first change its password go to the password change page."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from trials.accounts.services import must_change_password

SESSION_KEY = "edc_must_change_password"


class ForcedPasswordChangeMiddleware:
    """After login, an account whose password an administrator set sees only the password change
    page (and logout) until it chose its own. The flag is read once per session, at the first request."""

    def __init__(self, get_response) -> None:  # noqa: ANN001
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if SESSION_KEY not in request.session:
                request.session[SESSION_KEY] = must_change_password(user)
            if request.session[SESSION_KEY] and not self._allowed(request.path):
                return redirect("password_change")
        return self.get_response(request)

    @staticmethod
    def _allowed(path: str) -> bool:
        allowed = (reverse("password_change"), reverse("password_change_done"), reverse("logout"), "/static/", "/i18n/")
        return path.startswith(allowed)
