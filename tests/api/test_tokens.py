"""Personal tokens: hashed at rest, shown once, scoped, expiring, revocable; every call logged;
a rate per token."""

import hashlib
from datetime import timedelta

import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from trials.api.models import ApiCall, ApiToken


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_token_is_stored_as_its_sha256_and_works_until_revoked(token_for, user_of):
    raw = token_for("coordinator")
    row = ApiToken.objects.get()
    # FIPS 180-4 SHA-256 of the whole token, computed here by hashlib; the token itself is nowhere in the row.
    assert row.hashed == hashlib.sha256(raw.encode()).hexdigest()
    assert all(raw not in str(value) for value in ApiToken.objects.values().get().values())
    assert raw.startswith(f"edc_{row.prefix}_") and len(raw) > 50  # token_urlsafe(32): 43 characters of secret
    client = bearer(raw)
    assert client.get("/api/v1/trials/").status_code == 200
    assert bearer(raw[:-1] + ("A" if raw[-1] != "A" else "B")).get("/api/v1/trials/").status_code == 401  # wrong secret
    assert APIClient().get("/api/v1/trials/").status_code == 401  # no token
    row.revoked_at = timezone.now()
    row.save()
    answer = client.get("/api/v1/trials/")
    assert answer.status_code == 401 and "detail" in answer.json()


def test_expired_token_is_refused(token_for):
    raw = token_for("monitor", days=1)
    assert bearer(raw).get("/api/v1/trials/").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        assert bearer(raw).get("/api/v1/trials/").status_code == 401


def test_token_names_trials_and_read_scope_cannot_write(token_for, tls):
    # The DSMB statistician works in ASC-DU and EASC-RA (fixtures/demo_users.yaml); her token names one.
    client = bearer(token_for("dsmb", trials=["EASC-RA"]))
    codes = [t["code"] for t in client.get("/api/v1/trials/").json()["results"]]
    assert codes == ["EASC-RA"]
    assert client.get(f"/api/v1/participants/{tls.pk}/").status_code == 404
    coordinator = bearer(token_for("coordinator", scope="read"))
    answer = coordinator.post("/api/v1/entries/", {"visit": 1, "crf_code": "VITALS", "expected_revision": 0, "answers": {}}, format="json")
    assert answer.status_code == 403


def test_every_call_is_logged(token_for, user_of):
    raw = token_for("sponsor")
    token = ApiToken.objects.get()
    bearer(raw).get("/api/v1/sites/?trial=ASC-DU")
    bearer(raw).get("/api/v1/participants/999999/")
    bearer("edc_nothing_here").get("/api/v1/trials/")
    calls = list(ApiCall.objects.order_by("at", "pk").values("user__username", "token", "method", "path", "query", "status"))
    assert calls == [
        {"user__username": "sponsor.toulouse", "token": token.pk, "method": "GET", "path": "/api/v1/sites/", "query": "trial=ASC-DU", "status": 200},
        {"user__username": "sponsor.toulouse", "token": token.pk, "method": "GET", "path": "/api/v1/participants/999999/", "query": "", "status": 404},
        {"user__username": None, "token": None, "method": "GET", "path": "/api/v1/trials/", "query": "", "status": 401},
    ]


def test_rate_limit_is_per_token(token_for, settings):
    settings.EDC_API_RATE = "3/min"
    first, second = bearer(token_for("monitor")), bearer(token_for("monitor"))
    assert [first.get("/api/v1/trials/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert second.get("/api/v1/trials/").status_code == 200  # another token, its own budget


def test_token_page_creates_shows_once_and_revokes(client, user_of):
    client.force_login(user_of("coordinator"))
    page = client.get("/accounts/api-tokens/")
    assert page.status_code == 200
    trial_ids = [str(t.pk) for t in page.context["form"].fields["trials"].queryset]
    assert sorted(t.code for t in page.context["form"].fields["trials"].queryset) == ["ASC-DU", "SSC-FATGRAFT-REG"]
    created = client.post("/accounts/api-tokens/", {"name": "R", "scope": "read", "trials": trial_ids[:1], "days": 30})
    raw = created.context["created"].raw
    assert raw in created.content.decode()
    assert raw not in client.get("/accounts/api-tokens/").content.decode()  # shown once
    assert bearer(raw).get("/api/v1/trials/").status_code == 200
    token = ApiToken.objects.get()
    client.post(f"/accounts/api-tokens/{token.pk}/revoke/")
    assert bearer(raw).get("/api/v1/trials/").status_code == 401
    # A trial she holds no role in is not offered, and a forged choice is refused by the form.
    from trials.protocol.models import Trial

    forged = client.post("/accounts/api-tokens/", {"name": "x", "scope": "write", "trials": [Trial.objects.get(code="EASC-RA").pk], "days": 30})
    assert forged.context["created"] is None and "trials" in forged.context["form"].errors
