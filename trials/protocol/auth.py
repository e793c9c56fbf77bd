"""Login backend: Django's, plus the production switch's refusal of demo credentials."""

from functools import cache

import yaml
from django.conf import settings
from django.contrib.auth.backends import ModelBackend

from edc.request_memo import recall

# trials.accounts.session_store.SESSION_USER (a layer above: not imported).
SESSION_USER = "edc-session-user"


@cache
def demo_passwords() -> frozenset[str]:
    """The passwords published in fixtures/demo_users.yaml (and the README)."""
    try:
        with open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8") as handle:
            users = yaml.safe_load(handle).get("users", [])
    except FileNotFoundError:
        return frozenset()
    return frozenset(u["password"] for u in users if u.get("password"))


class EdcModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if settings.IS_PRODUCTION and password in demo_passwords():
            return None  # demo credentials are public: never valid in production
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id):  # noqa: ANN001, ANN201
        """The user the session engine read with this request's session (same query, same rules as
        ModelBackend: None for an inactive account), else ModelBackend's read by key."""
        user = recall((SESSION_USER, user_id))
        if user is None:
            return super().get_user(user_id)
        return user if self.user_can_authenticate(user) else None
