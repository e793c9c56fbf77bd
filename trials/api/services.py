"""Writes of the API's own rows: tokens (create, revoke) and the call log."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.api.models import ApiCall, ApiToken, TokenScope
from trials.protocol.selectors import trials_for_user

PREFIX_LENGTH = 8
MAX_DAYS = 366


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    raw: str  # shown once, never stored


@transaction.atomic
def token_create(*, user, name: str, scope: str, trials, days: int) -> NewToken:
    """A new personal token: `edc_<prefix>_<secret>`, of which only the prefix and the SHA-256 of
    the whole are kept. Scoped to trials the user holds a role in (a token never widens her rights)."""
    if scope not in TokenScope.values:
        raise ValidationError(_("Unknown scope."))
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(_("A token lives between 1 and %(n)s days.") % {"n": MAX_DAYS})
    trials = list(trials)
    if not trials:
        raise ValidationError(_("Choose at least one trial."))
    allowed = set(trials_for_user(user).values_list("pk", flat=True))
    if any(t.pk not in allowed for t in trials):
        raise PermissionDenied(_("You hold no role in one of these trials."))
    while True:
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    raw = f"edc_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100] or _("API token"), prefix=prefix, hashed=token_hash(raw), scope=scope,
        expires_at=timezone.now() + timedelta(days=days),
    )
    token.trials.set(trials)
    return NewToken(token, raw)


def token_revoke(*, user, token: ApiToken) -> None:
    """Revoke one of the user's own tokens (idempotent: the first revocation time stays)."""
    if token.user_id != user.pk:
        raise PermissionDenied(_("This is not your token."))
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def token_from_header(raw: str) -> ApiToken | None:
    """The active token a raw `edc_<prefix>_<secret>` names, or None (unknown, wrong secret,
    revoked or expired). The hash is compared in constant time."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != "edc":
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not secrets.compare_digest(token.hashed, token_hash(raw)):
        return None
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)  # at most once a minute
    return token


def call_log(*, user, token: ApiToken | None, method: str, path: str, query: str, status: int) -> None:
    """One ApiCall row, by one plain INSERT (no model instance, no RETURNING).

    On PostgreSQL, when no transaction is open (the API's requests run in autocommit), the row is
    committed without waiting for its WAL flush (`SET LOCAL synchronous_commit TO OFF`, for this
    one statement's transaction only): the flush was most of the cost of a call (docs/benchmarks.md, the API).
    The row is written and visible at once; only a crash of the database server itself within
    a fraction of a second (wal_writer_delay) could lose the last calls' rows, never corrupt
    anything. Inside an open transaction (a test, a caller's atomic block) the setting would
    cover that transaction's other writes too, so the row is then inserted as any other."""
    calls = ApiCall._meta
    columns = [calls.get_field(name).column for name in ("at", "user", "token", "method", "path", "query", "status")]
    values = [
        timezone.now(), user.pk if user is not None and user.is_authenticated else None, token.pk if token is not None else None,
        method[:10], path[:500], query[:1000], status,
    ]
    connection = connections[router.db_for_write(ApiCall)]
    sql = f"INSERT INTO {connection.ops.quote_name(calls.db_table)} ({', '.join(map(connection.ops.quote_name, columns))}) VALUES ({', '.join(['%s'] * len(values))})"
    if connection.vendor == "postgresql" and not connection.in_atomic_block and not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        # One round trip: a query string of two statements is one implicit transaction, which the
        # SET LOCAL covers (client-side binding, Django's default, sends it as one string).
        sql = "SET LOCAL synchronous_commit TO OFF; " + sql
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
