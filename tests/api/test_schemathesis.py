"""Schemathesis against the API's own OpenAPI schema, in-process (the Django WSGI app), as a
coordinator, monitor, sponsor and DSMB token: no 5xx, and every documented answer conforms."""

import json
import os
import time

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

import tests.api._hypothesis_compat  # noqa: F401  (before any draw: see the module)

ROLES = ["coordinator", "monitor", "sponsor", "dsmb"]


@pytest.fixture
def api_schema(demo_users):
    """The served schema, driving the WSGI app in this test's transaction: like Django's test
    client, the app must not close the test's connection at the end of each request."""
    answer = APIClient().get("/api/schema/", {"format": "json"})
    assert answer.status_code == 200
    spec = json.loads(answer.content)
    # The schema also documents the browser's session cookie; the tokens are under test here, and
    # a random session id is the session middleware's input, before the API.
    spec["components"]["securitySchemes"].pop("cookieAuth", None)
    for methods in spec["paths"].values():
        for operation in methods.values():
            operation["security"] = [s for s in operation.get("security", []) if "cookieAuth" not in s]
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.from_dict(spec, app=get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_conforms_and_never_fails(role, api_schema, token_for, tls, settings):
    settings.EDC_API_RATE = "100000/min"
    raw = token_for(role, scope="write")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    names = {operation.verbose_name for operation in operations}
    assert {
        "POST /api/v1/adverse-events/", "PUT /api/v1/adverse-events/{id}/", "PATCH /api/v1/adverse-events/{id}/",
        "POST /api/v1/queries/{id}/answer/", "POST /api/v1/queries/{id}/close/", "POST /api/v1/visits/{id}/date/",
        "GET /api/v1/exports/", "POST /api/v1/exports/", "GET /api/v1/exports/{id}/", "GET /api/v1/exports/{id}/download/",
    } <= names, sorted(names)
    assert len(operations) >= 24
    failures = []
    for operation in operations:
        started = time.monotonic()
        try:
            _fuzz(operation, raw)
        except Exception as problem:  # noqa: BLE001 - collect every operation's failure, then fail once
            failures.append(f"{operation.verbose_name}: {problem}")
        print(operation.verbose_name, round(time.monotonic() - started, 1), flush=True)
    assert not failures, "\n\n".join(failures)


def _fuzz(operation, raw: str) -> None:
    @given(case=operation.as_strategy())
    @hsettings(max_examples=int(os.environ.get("EDC_API_FUZZ_EXAMPLES", "12")), deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call_wsgi(headers={"Authorization": f"Bearer {raw}"})
        case.validate_response(response, checks=(not_a_server_error, content_type_conformance, response_schema_conformance))

    run()
