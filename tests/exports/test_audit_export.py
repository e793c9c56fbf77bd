"""The trial-wide audit trail export (format "audit", issue 21): an export job like the others, one
CSV line per changed field with the site and participant first, the requester's sites only. Its
blinding and identifiers are covered by test_blinding.py, parametrized over every format."""

from __future__ import annotations

import csv
import io

import pytest

from tests.exports.conftest import job_bytes, user
from trials.exports.models import ExportState
from trials.monitoring.audit.trail import participant_trail

pytestmark = pytest.mark.django_db


def lines(job) -> list[dict]:  # noqa: ANN001
    body = job_bytes(job).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))


def test_the_audit_export_holds_every_participant_trail_of_the_requesters_sites(du, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU", format="audit")
    assert job.state == ExportState.DONE, job.error
    rows = lines(job)
    numbers = {p.number for p in du["participants"]}
    assert {r["participant"] for r in rows} == numbers
    assert {r["site"] for r in rows} == {"TLS", "GRE"}
    # the query raised in the fixture, with who and why
    raised = [r for r in rows if r["record_type"] == "query" and r["field"] == "text"]
    assert [r["new"] for r in raised] == ["Please check the weight."]
    assert raised[0]["user"] == "datamanager" and raised[0]["reason"] == "Query raised"
    # as many saves per participant as her trail (blinded: as a blinded user sees it)
    first = du["participants"][0]
    saves = {r["history_id"] + r["record_type"] for r in rows if r["participant"] == first.number}
    trail = participant_trail(user("datamanager"), first, blinded=True)
    assert len(saves) == len({f"{row.history_id}{row.kind}" for row in trail})
