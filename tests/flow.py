"""The coordinator flow as a browser drives it, for the query-count tests and the CPU benchmark
(tests/bench/bench_flow.py): the participant list, the participant's page, a CRF page, a live
(htmx) update of that page and a save. The save posts what the page's form holds, as a browser
would, so the flow works on any CRF (the synthetic trials' too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from django.test import Client
from django.urls import reverse
from lxml import html as lxml_html

STEPS = ("list", "participant", "crf", "live", "save")


def form_data(page: bytes) -> dict[str, list[str]]:
    """The values a browser submits for the page's CRF form (successful controls only)."""
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


@dataclass
class Flow:
    """The URLs of one coordinator's flow at one participant's CRF."""

    client: Client
    list_url: str
    participant_url: str
    crf_url: str

    @classmethod
    def at(cls, client: Client, participant, visit, crf_code: str) -> Flow:  # noqa: ANN001
        return cls(
            client=client,
            list_url=reverse("participant_list", args=[participant.trial.code, participant.site.code]),
            participant_url=reverse("participant_dashboard", args=[participant.pk]),
            crf_url=reverse("crf_entry", args=[visit.pk, crf_code]),
        )

    def steps(self) -> dict[str, Callable[[], object]]:
        """Each step as a callable making its request(s) and checking the answer. The CRF page is
        read once here (not timed) for the form the live update and the save post."""
        page = self.client.get(self.crf_url)
        assert page.status_code == 200, page.status_code
        data = form_data(page.content)
        # Posted as the browser posts this form: multipart only when the form says so (a CRF with
        # file items), else urlencoded (the test client's default, multipart, cost the server a
        # few ms of parsing no browser makes it do: docs/benchmarks.md "Third pass").
        multipart = b'enctype="multipart/form-data"' in page.content

        def post(payload: dict, **kwargs) -> object:  # noqa: ANN003
            if multipart:
                return self.client.post(self.crf_url, payload, **kwargs)
            return self.client.post(self.crf_url, urlencode(payload, doseq=True), content_type="application/x-www-form-urlencoded", **kwargs)

        def get(url: str) -> Callable[[], object]:
            def step():  # noqa: ANN202
                response = self.client.get(url)
                assert response.status_code == 200, (url, response.status_code)
                return response
            return step

        def live():  # noqa: ANN202
            response = post({**data, "action": "save"}, headers={"HX-Request": "true"})
            assert response.status_code == 200, response.status_code
            return response

        def save():  # noqa: ANN202
            response = post({**data, "action": "save", "reason": "Flow check", "confirm_warnings": "on"})
            assert response.status_code == 302, (response.status_code, response.content[:2000])
            # The next save posts the revision this one made (a browser reloads the page after a save).
            data["revision"] = [str(int(data["revision"][0]) + 1)]
            return response

        return {"list": get(self.list_url), "participant": get(self.participant_url), "crf": get(self.crf_url), "live": live, "save": save}
