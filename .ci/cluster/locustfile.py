"""The coordinator flow against the cluster's proxy (issue 22): log in once, then loop list ->
participant page (the visit grid) -> CRF page -> live (htmx) update -> save. Each simulated user is
one coordinator at her own participant (.ci/cluster/seed_users.py writes them to loadtest.json).

    locust -f .ci/cluster/locustfile.py --headless -u 16 -r 8 -t 60s --host https://10.77.0.10 \
        --csv artifacts/cluster/run   (LOADTEST_USERS_FILE=/var/tmp/edc-cluster/loadtest.json)

A save counts as an error unless it answers 302 (saved); .ci/cluster/loadtest.sh compares the saves
with the audit rows written."""

import itertools
import json
import os

import urllib3
from locust import HttpUser, between, task
from lxml import html as lxml_html

urllib3.disable_warnings()  # the lab proxy's self-signed certificate
USERS = json.load(open(os.environ.get("LOADTEST_USERS_FILE", "/var/tmp/edc-cluster/loadtest.json")))
_next = itertools.count()


def form_data(page: bytes) -> dict[str, list[str]]:
    """What a browser submits for the page's CRF form (as tests/flow.py)."""
    tree = lxml_html.fromstring(page)
    form = tree.xpath('//form[contains(concat(" ", @class, " "), " edc-crf ")]')[0]
    data: dict[str, list[str]] = {}
    for control in form.iter("input", "select", "textarea"):
        name = control.get("name")
        if not name or control.get("disabled") is not None:
            continue
        if control.tag == "input":
            kind = (control.get("type") or "text").lower()
            if kind in {"submit", "button", "file", "image", "reset"}:
                continue
            if kind in {"checkbox", "radio"} and control.get("checked") is None:
                continue
            value = control.get("value", "on" if kind in {"checkbox", "radio"} else "")
        elif control.tag == "select":
            chosen = [o.get("value", o.text_content()) for o in control.iter("option") if o.get("selected") is not None]
            value = chosen[0] if chosen else ""
        else:
            value = control.text_content()
        data.setdefault(name, []).append(value)
    return data


class Coordinator(HttpUser):
    wait_time = between(0, 0)  # closed loop: throughput is what the servers give

    def on_start(self) -> None:
        self.client.verify = False
        self.me = USERS[next(_next) % len(USERS)]
        self.referer = {"Referer": self.host + "/"}
        page = self.client.get("/accounts/login/", name="login page")
        token = page.cookies.get("csrftoken") or self.client.cookies.get("csrftoken")
        answer = self.client.post(
            "/accounts/login/", {"username": self.me["username"], "password": self.me["password"], "csrfmiddlewaretoken": token},
            headers=self.referer, name="login", allow_redirects=False,
        )
        if answer.status_code != 302:
            raise RuntimeError(f"login of {self.me['username']} failed: {answer.status_code}")

    @task
    def flow(self) -> None:
        self.client.get(self.me["list"], name="1 list")
        self.client.get(self.me["participant"], name="2 participant")
        page = self.client.get(self.me["crf"], name="3 crf")
        if page.status_code != 200:
            return
        data = form_data(page.content)
        headers = {**self.referer, "X-CSRFToken": self.client.cookies.get("csrftoken", "")}
        self.client.post(self.me["crf"], {**data, "action": "save"}, headers={**headers, "HX-Request": "true"}, name="4 live")
        with self.client.post(
            self.me["crf"], {**data, "action": "save", "reason": "Load test", "confirm_warnings": "on"},
            headers=headers, name="5 save", allow_redirects=False, catch_response=True,
        ) as saved:
            if saved.status_code == 302:
                saved.success()
            else:
                saved.failure(f"save answered {saved.status_code}")
