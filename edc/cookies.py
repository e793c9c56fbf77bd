"""A session cookie that cannot be a session key is dropped before the session is read.

Django's session keys are 32 characters of [a-z0-9] (`get_random_string` with
`VALID_KEY_CHARS`); a forged cookie with a NUL byte made PostgreSQL refuse the lookup ("A string
literal cannot contain NUL characters") and every page answer 500 (found by schemathesis through
the API). Such a cookie is treated as no session: the user is anonymous and logs in again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

SESSION_KEY = re.compile(r"[a-z0-9]{1,40}")


class MalformedSessionCookieMiddleware:
    """Before SessionMiddleware: forget a session cookie that is not a session key's shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = settings.SESSION_COOKIE_NAME
        value = request.COOKIES.get(name)
        if value is not None and not SESSION_KEY.fullmatch(value):
            del request.COOKIES[name]
        return self.get_response(request)
