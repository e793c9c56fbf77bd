"""/healthz (issue 16): an anonymous caller (a load balancer) gets the status and the code only;
staff also get each check and the last worker heartbeat. On main every caller got the details."""

import json

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


def test_anonymous_gets_only_the_status(client):  # noqa: ANN001
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}


def test_staff_get_the_details(client):  # noqa: ANN001
    client.force_login(get_user_model().objects.create_user("ops.staff", password="Ops-long-secret-26", is_staff=True))
    body = json.loads(client.get("/healthz").content)
    assert body["status"] == "ok" and body["database"] == "ok" and body["cache"] == "ok"
    assert "last_worker_heartbeat" in body
