"""System pages: health check for load balancers and operators; login and the language switcher."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _
from django.views.i18n import set_language

from edc.ops import hooks as ops_hooks
from edc.db_router import replica_status
from edc.ops import services
from edc.ops.models import WorkerHeartbeat


def healthz(request: HttpRequest) -> JsonResponse:
    """Database and cache reachable (HTTP 200) or not (503); to staff also each check and the last
    Celery worker heartbeat."""
    checks: dict[str, object] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this page must answer
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("edc:healthz", "1", 5)
        checks["cache"] = "ok" if cache.get("edc:healthz") == "1" else "error: cache did not keep a value"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}"
    if checks["database"] == "ok":
        last = WorkerHeartbeat.objects.order_by("-answered_at").first()
        checks["last_worker_heartbeat"] = last.answered_at.isoformat() if last else None
    healthy = checks["database"] == "ok" and checks["cache"] == "ok"
    if not (request.user.is_authenticated and request.user.is_staff):
        # A load balancer needs the status code; the details (which part failed, when the worker
        # last answered) are for operators, not for anyone on the network.
        return JsonResponse({"status": "ok" if healthy else "error"}, status=200 if healthy else 503)
    # The streaming replica (issue 22): whether replica-eligible reads use it now, and its lag.
    checks["replica"] = replica_status()
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The top bar's language switcher: Django's set_language (cookie, redirect to `next`), and a
    logged-in user's choice is also kept on her account, so it follows her to another device."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):  # Django would take any language it has a catalogue of
        return HttpResponseBadRequest(_("Unknown language: %(code)s.") % {"code": language[:10]})
    if request.user.is_authenticated:
        services.user_language_set(user=request.user, language=language)
    return set_language(request)


class LoginView(auth_views.LoginView):
    """Django's login; then the language the user chose is applied (the cookie that LocaleMiddleware
    reads), whatever the last person on this browser chose."""

    redirect_authenticated_user = True

    def form_valid(self, form) -> HttpResponse:  # noqa: ANN001
        response = super().form_valid(form)
        # Her own choice, else her site's language (trial file), else the browser's (no cookie).
        language = services.user_language(form.get_user()) or ops_hooks.user_default_language(form.get_user())
        if language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
        return response
