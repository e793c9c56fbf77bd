"""How an API call says who makes it: `Authorization: Bearer edc_<prefix>_<secret>` (a personal
token), or the browser's session (the docs page, with Django's CSRF check for writes)."""

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from trials.api.models import ApiToken
from trials.api.services import token_from_header


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Give one token after Bearer."))
        try:
            raw = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(_("The token contains characters a token never has.")) from None
        token = token_from_header(raw)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Unknown, expired or revoked token."))
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword  # so an unauthenticated call answers 401 (not 403)


class ScopePermission(permissions.BasePermission):
    """A read token reads; writing needs a read-and-write token (or the browser session, whose
    writes the services check like a page's)."""

    message = _("This token may only read.")

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return token is None or token.writes


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Requests per token (per user for the session), `EDC_API_RATE` (e.g. "600/min")."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.EDC_API_RATE

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = TokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal token from My account → API tokens (edc_…)."}
