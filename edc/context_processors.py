from django.conf import settings
from django.http import HttpRequest


def edc(request: HttpRequest) -> dict:
    """Values every page needs: the version and whether this is the demo."""
    return {
        "EDC_VERSION": settings.EDC_VERSION,
        "EDC_IS_DEMO": not settings.IS_PRODUCTION,
        # Seconds before the idle logoff, for the warning of static/js/idle.js.
        "EDC_IDLE_REMAINING": getattr(request, "edc_idle_remaining", None),
        "EDC_IDLE_SECONDS": settings.SESSION_IDLE_MINUTES * 60,
        "EDC_REQUIRE_2FA": settings.EDC_REQUIRE_2FA,
    }
