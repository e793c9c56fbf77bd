"""System pages: health check for load balancers and operators."""

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

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
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)
