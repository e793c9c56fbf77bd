"""Participant mode locks the session: while the tablet is handed over, only the participant's
pages answer; every other page (the dashboard, the admin, another participant, logout) sends her
back to her questionnaires. The staff member ends it with her PIN or password (views.tablet_exit)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from trials.epro.views import TABLET

ALLOWED = ("/epro/tablet/", "/static/", "/language/", "/i18n/")


class ParticipantModeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if session is not None and session.get(TABLET) and not request.path.startswith(ALLOWED):
            return redirect("epro_tablet")
        return self.get_response(request)
