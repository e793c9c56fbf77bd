from django.conf import settings
from django.http import HttpRequest


def edc(request: HttpRequest) -> dict:
    """Values every page needs: the version and whether this is the demo."""
    return {"EDC_VERSION": settings.EDC_VERSION, "EDC_IS_DEMO": not settings.IS_PRODUCTION}
