"""The blinded-user check of tests/blinding/test_blinded_users_never_see_an_arm.py, through the
API: for each blinded user of ASC-DU, a read token of her trials walks every GET operation of the
served OpenAPI schema (each list, every page of it, and the detail and sub-resources of each
object listed), and the same arm scanner reads every string of every JSON answer. No arm code or
label, no kit code of the allocation list that no participant holds, and not the list's seed.
The investigator who emergency-unblinded a participant is scanned with no exception (the API
masks the trial for her, that participant included); the unblinded DSMB's walk must find arms
(the scan can fail)."""

from __future__ import annotations

import json
import re

import pytest
from rest_framework.test import APIClient

from tests.blinding.test_blinded_users_never_see_an_arm import BLINDED, TRIAL, UNBLINDER, Setting, _Html, scan, user
from tests.blinding.test_blinded_users_never_see_an_arm import asc_du  # noqa: F401 - the crawl's fixture
from trials.api.services import token_create
from trials.participants.models import Allocation, AllocationSlot
from trials.protocol.models import Trial

pytestmark = pytest.mark.django_db

MAX_PAGES = 20  # pages of one list (500 objects each)
MAX_DETAILS = 60  # objects of one list whose detail operations are called


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _page(value) -> _Html:
    page = _Html()
    page.text = _strings(value)
    return page


def _client(username: str) -> APIClient:
    person = user(username)
    trials = Trial.objects.filter(study_roles__user=person).distinct()
    raw = token_create(user=person, name="blinding walk", scope="read", trials=trials, days=1).raw
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def walk(client: APIClient) -> tuple[dict[str, object], list[str]]:
    """{url: JSON answer} of every GET operation, and the operations reached."""
    schema = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    paths = sorted(p for p, ops in schema["paths"].items() if "get" in ops and p.startswith("/api/v1/"))
    lists = [p for p in paths if "{" not in p]
    details = [p for p in paths if "{" in p]
    answers: dict[str, object] = {}
    for path in lists:
        url, ids = f"{path}?page_size=500", []
        for _ in range(MAX_PAGES):
            answer = client.get(url)
            assert answer.status_code == 200, (url, answer.status_code)
            body = answer.json()
            rows = body["results"] if isinstance(body, dict) and "results" in body else body
            answers[url] = rows
            ids += [r["id"] for r in rows if isinstance(r, dict) and "id" in r]
            if not (isinstance(body, dict) and body.get("next")):
                break
            url = body["next"].replace("http://testserver", "")
        for template in (d for d in details if d.startswith(path)):
            for pk in ids[:MAX_DETAILS]:
                url = re.sub(r"\{[^}]+\}", str(pk), template)
                answer = client.get(url)
                assert answer.status_code in {200, 404, 409}, (url, answer.status_code)
                if answer.status_code != 200 or not answer["Content-Type"].startswith("application/json"):
                    continue
                answers[url] = answer.json()
    return answers, paths


def _unallocated_kits(setting: Setting) -> set[str]:
    kits = set(AllocationSlot.objects.filter(allocation_list__trial=setting.trial).values_list("kit_code", flat=True))
    return kits - set(Allocation.objects.filter(participant__trial=setting.trial).values_list("kit_code", flat=True)) - {""}


@pytest.mark.parametrize("username", BLINDED)
def test_blinded_token_never_receives_an_arm(asc_du, username, settings):  # noqa: F811
    settings.EDC_API_RATE = "100000/min"
    client = _client(username)
    answers, paths = walk(client)
    assert any(p.startswith("/api/v1/exports/") for p in paths) and len(paths) >= 20, paths
    listed = answers["/api/v1/participants/?page_size=500"]
    assert len(listed) >= (4 if username in ("coordinator.toulouse", "investigator.toulouse", "investigator2.toulouse") else 1), username
    leaks = [str(leak) for url, body in answers.items() for leak in scan(url, _page(body), asc_du.vocabulary)]
    text = " ".join(" ".join(_strings(body)) for body in answers.values())
    leaks += [f"arm code {code} inside a word" for code in asc_du.vocabulary.codes if code in text]
    leaks += [f"kit {kit} of the allocation list" for kit in _unallocated_kits(asc_du) if kit in text]
    assert asc_du.trial.allocation_list.seed not in text
    assert not leaks, f"{username} receives an arm of {TRIAL} through the API:\n" + "\n".join(leaks[:50])
    if username == UNBLINDER:
        # Stricter than her pages: the API masks the whole blinded trial for her, the participant
        # she unblinded included (the arm she was shown stays on that participant's pages).
        assert "[blinded]" in client.get(f"/api/v1/participants/{asc_du.unblinded.pk}/").json()["allocation"]


def test_the_api_walk_finds_the_arms_for_the_unblinded_dsmb(asc_du, settings):  # noqa: F811
    settings.EDC_API_RATE = "100000/min"
    answers, _paths = walk(_client("dsmb.statistician"))
    found = {leak.found for url, body in answers.items() for leak in scan(url, _page(body), asc_du.vocabulary)}
    assert {"AdMSC", "Placebo"} <= found, found
