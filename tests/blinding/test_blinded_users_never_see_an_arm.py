"""No blinded user of the quadruple-blind ASC-DU trial ever sees an allocated arm, on any page.

Several ASC-DU participants are allocated through the real services (the data manager generates
the allocation list), one is in screening, one is treated, and one is emergency-unblinded by
investigator.toulouse. Then, for each blinded user, the Django test client crawls every page the
user can reach from "/" and "/admin/", following every same-site link (href) of every HTML page,
redirects included (plus the admin pages of each ASC-DU allocation, typed in by hand: never
linked for a blinded user, they must not open either). Skipped: logout, set-language, static
files, admin add/delete pages; query strings, and pages of one kind beyond a sample (see the
limits below). Every 200 page is scanned (HTML, and any text such as a feed or an export):

- nowhere may an ASC-DU arm code or label (from the Arm rows: ADMSC, AdMSC, PLACEBO, Placebo)
  appear as a whole word, case-sensitive, in the text, the attributes or the comments;
- on participant-related pages (participant list and dashboard, participant actions, CRF pages,
  calendar, screening log, allocation list, the participants' and visits' admin) not even a substring
  of an arm code may appear in the text, nor a code or label in any attribute, in any case
  (e.g. data-arm="placebo").

Exceptions, because they describe the protocol, not a participant:

- the trial's protocol summary page /trials/ASC-DU/, which lists the arms of the design, and the
  admin pages of the protocol's Arm and Trial models (the trial page has the arms inline);
- the trial's own protocol prose, removed from a page before it is scanned: its titles and
  summary, its visit labels ("Day 0 - digital injection (AdMSC or placebo)" names both arms on
  every participant's visit grid) and its criteria. They name the arms of the design, never the
  arm of a participant;
- investigator.toulouse may see the arm of the participant SHE unblinded, on that participant's
  own pages (/participants/<pk>/...): the test checks she does, and scans everything else. A
  second investigator of the site is crawled with no exception at all.

A leak fails the test with every URL and the leaked string in context. The same crawl as
dsmb.statistician (unblinded) must find arm labels (screening log counts by arm, dashboards):
proof that the scan is able to fail.
"""

from __future__ import annotations

import heapq
import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from edc.audit import system_user
from tests.exports.pdftools import pdf_text
from trials.demo.participants import participant_register
from trials.participants import services
from trials.participants.models import Allocation, Participant
from trials.protocol.models import Arm, Criterion, Role, Site, Trial, VisitDefinition
from trials.protocol.services import study_role_grant

pytestmark = pytest.mark.django_db

TRIAL = "ASC-DU"
BLINDED = ["coordinator.toulouse", "investigator.toulouse", "investigator2.toulouse", "monitor.du", "sponsor.toulouse", "datamanager"]
UNBLINDER = "investigator.toulouse"
UNBLINDER_PASSWORD = "demo-Invest-Toulouse-26"

PAGE_LIMIT = 400  # pages per user (the data manager of four trials: study build, reports, quality, DSMB pages)
QUERY_URLS_PER_PATH = 2  # e.g. /?stay=1, an admin filter or two; not every sort order and filter combination
# URLs of one shape (numbers replaced by <n>) crawled at most: every participant's study pages,
# a sample of the rest. Each kind of page is still reached, for each kind of record.
STUDY_SHAPE_LIMIT = 40  # e.g. /participants/<n>/enrol/
CRF_SHAPE_LIMIT = 6  # /visits/<n>/crf/DU_ASSESS/ : CRF pages show answers, a few of each CRF
ADMIN_SHAPE_LIMIT = 10  # e.g. /admin/visits/visit/<n>/change/
ADMIN_VERSION_LIMIT = 4  # pages of one historical version: /admin/…/<n>/history/<n>/
# The shared protocol library in the admin (hundreds of CRF fields) holds no participant data.
LIBRARY_SHAPE_LIMIT = 3
LIBRARY = re.compile(
    r"^/admin/protocol/(crfdefinition|fielddefinition|visitcrf|visitdefinition|criterion|site|studyrole|consentdocument)/."
    r"|^/trials/[^/]+/crfs/."  # the printable CRFs (trials/build): definitions, no participant data
)

REVIEW_OR_PDF = re.compile(r"^/monitoring/entries/\d+/review/|\.pdf$")

SKIP = re.compile(
    r"^/(static|media)/|^/i18n/|^/accounts/logout/|^/admin/logout/|^/healthz"
    r"|/add/$|/delete/$|^/admin/jsi18n/|^/admin/autocomplete/"
)
PARTICIPANT_PAGES = re.compile(
    r"^/participants/|^/visits/|^/calendar/|^/trials/[^/]+/(sites/|screening-log/|allocation-list/)|^/admin/(participants|visits)/"
)
PROTOCOL_PAGES = re.compile(rf"^/trials/{re.escape(TRIAL)}/$|^/admin/protocol/(arm|trial)/")


# --- The crawler ------------------------------------------------------------------------------


class _Html(HTMLParser):
    """Links, attribute values, text and comments of a page (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            self.attributes.append((tag, name, value))
            if name == "href" and tag == "a":
                self.hrefs.append(value)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.text.append(data)


@dataclass
class Crawl:
    pages: dict[str, _Html] = field(default_factory=dict)  # 200 text pages (HTML or not) by URL
    statuses: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


def _shape(path: str) -> str:
    path = re.sub(r"/crfs/[^/]+/v\d+/", "/crfs/<crf>/v<n>/", path)  # one shape for a trial's printable CRFs
    return re.sub(r"\d+", "<n>", path)


def _shape_limit(path: str) -> int:
    if LIBRARY.search(path):
        return LIBRARY_SHAPE_LIMIT
    if re.search(r"/history/\d+/$", path):
        return ADMIN_VERSION_LIMIT
    if path.startswith("/admin/"):
        return ADMIN_SHAPE_LIMIT
    # CRF pages, their monitor review (the same rendering) and the casebook PDFs (every CRF of a
    # participant, slow to render) show answers: a few of each, so that the budget still reaches
    # the admin's participant pages.
    return CRF_SHAPE_LIMIT if "/crf/" in path or REVIEW_OR_PDF.search(path) else STUDY_SHAPE_LIMIT


def _rank(path: str) -> int:
    """Study pages first, then the admin's participant data, then the rest of the admin."""
    if not path.startswith("/admin/"):
        return 0
    return 1 if PARTICIPANT_PAGES.search(path) else 2


def crawl(client, *, limit: int = PAGE_LIMIT, extra: tuple[str, ...] = ()) -> Crawl:  # noqa: ANN001
    """Every page reachable from "/" and "/admin/" (and `extra`) through same-site links and redirects.

    Study pages go first, then the admin's participant data: the page limit cuts the protocol
    library in the admin, never a participant's pages."""
    result = Crawl()
    queued: set[str] = set()
    per_query_path: dict[str, int] = {}
    per_shape: dict[str, int] = {}
    heap: list[tuple[int, int, str]] = []
    order = itertools.count()

    def push(url: str, base: str = "http://testserver/") -> None:
        parts = urlsplit(urljoin(base, url))
        if parts.scheme not in ("http", "https") or parts.netloc not in ("testserver", ""):
            return
        path = parts.path or "/"
        target = path + (f"?{parts.query}" if parts.query else "")
        if target in queued or SKIP.search(path):
            return
        if parts.query:
            if per_query_path.get(path, 0) >= QUERY_URLS_PER_PATH:
                result.skipped += 1
                return
            per_query_path[path] = per_query_path.get(path, 0) + 1
        shape = _shape(path)
        if per_shape.get(shape, 0) >= _shape_limit(path):
            result.skipped += 1
            return
        per_shape[shape] = per_shape.get(shape, 0) + 1
        queued.add(target)
        heapq.heappush(heap, (_rank(path), next(order), target))

    for start in ("/", "/admin/", *extra):
        push(start)
    while heap and len(result.statuses) < limit:
        _rank_, _n, url = heapq.heappop(heap)
        try:
            response = client.get(url)
        except Exception as exc:  # noqa: BLE001 - a crash on a reachable page is a failure: say where
            pytest.fail(f"GET {url} raised {type(exc).__name__}: {exc}")
        result.statuses[url] = response.status_code
        if response.status_code >= 500:
            pytest.fail(f"GET {url} answered {response.status_code}")
        if response.status_code in (301, 302, 303, 307, 308):
            push(response["Location"], base=f"http://testserver{url}")
            continue
        content_type = response.get("Content-Type", "")
        if response.status_code == 200 and content_type.startswith("application/pdf"):  # casebooks, DSMB reports
            page = _Html()
            page.text.append(pdf_text(response.content))
            result.pages[url] = page
            continue
        if response.status_code != 200 or not content_type.startswith(("text/", "application/json")):
            continue
        page = _Html()
        raw = b"".join(response.streaming_content) if response.streaming else response.content  # e.g. the audit trail CSV
        body = raw.decode(response.charset or "utf-8")
        if "text/html" in content_type:
            page.feed(body)
            page.close()
        else:  # a feed or an export: all of it is text
            page.text.append(body)
        result.pages[url] = page
        for href in page.hrefs:
            push(href, base=f"http://testserver{url}")
    return result


# --- The scan ---------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@dataclass(frozen=True)
class ArmVocabulary:
    codes: tuple[str, ...]
    labels: tuple[str, ...]
    protocol_prose: tuple[str, ...]  # the trial's own texts that name the arms of the design

    @property
    def terms(self) -> tuple[str, ...]:
        return self.codes + self.labels

    def whole_words(self) -> re.Pattern:
        return re.compile("|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in sorted(set(self.terms), key=len, reverse=True)))


def arm_vocabulary(trial: Trial) -> ArmVocabulary:
    arms = list(Arm.objects.filter(trial=trial))
    codes = tuple(a.code for a in arms)
    labels = tuple(a.label for a in arms)
    words = re.compile("|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in codes + labels))
    candidates = [trial.title, trial.short_title, trial.summary, str(trial)]
    candidates += list(VisitDefinition.objects.filter(trial=trial).values_list("label", flat=True))
    candidates += list(Criterion.objects.filter(trial=trial).values_list("text", flat=True))
    prose = sorted({_squash(c).strip() for c in candidates if c and words.search(c)}, key=len, reverse=True)
    return ArmVocabulary(codes, labels, tuple(prose))


@dataclass(frozen=True)
class Leak:
    url: str
    where: str
    found: str
    context: str

    def __str__(self) -> str:
        return f"{self.url}: {self.where} shows {self.found!r}: …{self.context}…"


def scan(url: str, page: _Html, vocabulary: ArmVocabulary) -> list[Leak]:
    """The arm codes and labels a page shows (outside the protocol's own prose)."""
    leaks: list[Leak] = []
    words = vocabulary.whole_words()
    text = _squash(" ".join(page.text))
    for prose in vocabulary.protocol_prose:
        text = text.replace(prose, " ")
    for match in words.finditer(text):
        leaks.append(Leak(url, "text", match.group(), text[max(0, match.start() - 60): match.end() + 60]))
    attributes = []
    for tag, name, value in page.attributes:
        value = _squash(value)
        for prose in vocabulary.protocol_prose:
            value = value.replace(prose, " ")
        attributes.append((tag, name, value))
        for match in words.finditer(value):
            leaks.append(Leak(url, f"<{tag} {name}>", match.group(), value[:160]))
    if PARTICIPANT_PAGES.search(urlsplit(url).path):
        # Stricter on a participant's pages: no arm code even inside a word, no code or label in
        # an attribute in any case (an id, a class, a data- attribute, an option value …).
        for code in vocabulary.codes:
            for match in re.finditer(re.escape(code), text):
                leaks.append(Leak(url, "text (substring)", code, text[max(0, match.start() - 60): match.end() + 60]))
        for tag, name, value in attributes:
            lowered = value.lower()
            for term in vocabulary.terms:
                if term.lower() in lowered:
                    leaks.append(Leak(url, f"<{tag} {name}> (any case)", term, value[:160]))
    return sorted(set(leaks), key=lambda leak: (leak.url, leak.where, leak.found))


# --- The trial's participants -------------------------------------------------------------------


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


@dataclass
class Setting:
    trial: Trial
    allocated: list[Participant]
    unblinded: Participant
    screening: Participant
    vocabulary: ArmVocabulary


@pytest.fixture
def asc_du(demo_users) -> Setting:
    """Four allocated ASC-DU participants (three at Toulouse, one at Grenoble), one in screening,
    one treated, one emergency-unblinded by investigator.toulouse; a second Toulouse investigator."""
    trial = Trial.objects.get(code=TRIAL)
    tls = Site.objects.get(trial=trial, code="TLS")
    gre = Site.objects.get(trial=trial, code="GRE")
    today = timezone.localdate(timezone=ZoneInfo(tls.time_zone))
    actor = system_user()
    allocated = [
        participant_register(site=tls, user=actor, consent_date=today - timedelta(days=40 - i), anchor_date=today - timedelta(days=30 - i))
        for i in range(3)
    ]
    allocated.append(participant_register(site=gre, user=actor, consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=15)))
    services.participant_start_treatment(participant=allocated[1], user=actor, first_treatment_date=today - timedelta(days=10))
    screening = participant_register(site=tls, user=actor, consent_date=today - timedelta(days=2), anchor_date=None)
    assert trial.allocation_list.generated_by.username == "datamanager"
    arms = set(Allocation.objects.filter(participant__in=allocated).values_list("arm__code", flat=True))
    assert arms == {"ADMSC", "PLACEBO"}, f"both arms are allocated (else the DSMB check proves less): {arms}"

    unblinded = allocated[0]
    arm = services.participant_unblind(
        participant=unblinded, user=user(UNBLINDER), password=UNBLINDER_PASSWORD,
        reason="Severe local reaction at the injected finger; the treating team needs the product.",
    )
    assert arm.code in {"ADMSC", "PLACEBO"}

    second = get_user_model().objects.create_user(
        "investigator2.toulouse", password="not-a-demo-password-26", first_name="Hélène", last_name="Roux", email="inv2@example.org",
    )
    study_role_grant(user=second, trial=trial, site=tls, role=Role.INVESTIGATOR, granted_by=actor, reason="Second investigator (test)")
    return Setting(trial, allocated, unblinded, screening, arm_vocabulary(trial))


def _leaks(client, setting: Setting, username: str) -> tuple[Crawl, list[Leak]]:  # noqa: ANN001
    client.force_login(user(username))
    # Besides the links: the admin pages of each allocation, typed in by hand (never linked for a
    # blinded user, and they must not open either).
    typed = tuple(
        f"/admin/participants/allocation/{pk}/{page}"
        for pk in Allocation.objects.filter(participant__trial=setting.trial).values_list("pk", flat=True)
        for page in ("change/", "history/")
    )
    result = crawl(client, extra=typed)
    leaks: list[Leak] = []
    for url, page in result.pages.items():
        if PROTOCOL_PAGES.search(urlsplit(url).path):
            continue
        leaks.extend(scan(url, page, setting.vocabulary))
    return result, leaks


def test_the_vocabulary_comes_from_the_protocol(asc_du):
    assert set(asc_du.vocabulary.codes) == {"ADMSC", "PLACEBO"}
    assert set(asc_du.vocabulary.labels) == {"AdMSC", "Placebo"}
    assert "Day 0 - digital injection (AdMSC or placebo)" in asc_du.vocabulary.protocol_prose


@pytest.mark.parametrize("username", BLINDED)
def test_blinded_user_never_sees_an_arm(client, asc_du, username):
    started = time.monotonic()
    result, leaks = _leaks(client, asc_du, username)
    pages = result.pages

    if username == UNBLINDER:
        # She sees the arm of the participant she unblinded, there only; the rest is scanned.
        own = f"/participants/{asc_du.unblinded.pk}/"
        assert own in pages, f"{username} did not reach {own}"
        arm = Allocation.objects.get(participant=asc_du.unblinded).arm
        assert scan(own, pages[own], asc_du.vocabulary), f"{username} should see {arm.label} on {own} (she unblinded it)"
        assert arm.label in " ".join(pages[own].text)
        leaks = [leak for leak in leaks if not urlsplit(leak.url).path.startswith(own)]

    # The crawl reached what the user is meant to work with (else a clean scan proves nothing).
    reached = {urlsplit(u).path for u in pages}
    if username in ("coordinator.toulouse", "investigator.toulouse", "investigator2.toulouse"):
        for participant in [*asc_du.allocated[:3], asc_du.screening]:
            assert f"/participants/{participant.pk}/" in reached, f"{username} did not reach {participant}'s dashboard"
        assert f"/participants/{asc_du.allocated[1].pk}/treatment/" not in reached  # treated already: no such action
        assert f"/trials/{TRIAL}/screening-log/" in reached
        assert any("/crf/DU_ASSESS/" in u for u in reached)
    if username == "sponsor.toulouse":
        assert f"/participants/{asc_du.allocated[3].pk}/" in reached  # all sites, Grenoble included
    if username in ("monitor.du", "datamanager"):
        assert "/admin/participants/participant/" in reached
        assert f"/admin/participants/participant/{asc_du.unblinded.pk}/change/" in reached
        assert any(u.startswith("/admin/visits/crfentry/") and u.endswith("/change/") for u in reached)
    if username == "datamanager":
        assert f"/trials/{TRIAL}/allocation-list/" in reached

    assert not leaks, f"{username} sees an arm of the blinded trial {TRIAL} ({len(leaks)} leak(s)):\n" + "\n".join(map(str, leaks))
    # Nor the seed of the allocation list, from which the public algorithm gives every arm.
    seed = asc_du.trial.allocation_list.seed
    shown = [url for url, page in pages.items() if seed in " ".join(page.text) or any(seed in v for _t, _n, v in page.attributes)]
    assert len(seed) == 64 and not shown, f"{username} sees the allocation list's seed on {shown}"
    assert len(pages) >= 10, f"{username}: only {len(pages)} pages reached: {sorted(result.statuses)}"
    print(f"{username}: {len(pages)} pages scanned ({len(result.statuses)} requests, {result.skipped} links skipped) in {time.monotonic() - started:.1f} s")


def test_the_scan_finds_the_arms_for_the_unblinded_dsmb(client, asc_du):
    """The DSMB statistician is unblinded: the same crawl and scan must report arm labels."""
    result, leaks = _leaks(client, asc_du, "dsmb.statistician")
    by_url = {leak.url for leak in leaks}
    assert f"/trials/{TRIAL}/screening-log/" in by_url, f"no arm on the DSMB's screening log: {sorted(result.pages)}"
    found = {leak.found for leak in leaks}
    assert {"AdMSC", "Placebo"} <= found, found
    dashboards = {f"/participants/{p.pk}/" for p in asc_du.allocated}
    assert dashboards <= by_url, f"the DSMB sees every allocated participant's arm: {sorted(dashboards - by_url)}"
