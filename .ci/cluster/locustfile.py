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
import sys
from pathlib import Path

import urllib3
from locust import HttpUser, between, task

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the flow's form reader
from tests.flow import form_data  # noqa: E402 - what a browser submits, as the query-count tests read it

urllib3.disable_warnings()  # the lab proxy's self-signed certificate
USERS = json.load(open(os.environ.get("LOADTEST_USERS_FILE", "/var/tmp/edc-cluster/loadtest.json")))
_next = itertools.count()


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
