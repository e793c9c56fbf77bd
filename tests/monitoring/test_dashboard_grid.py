"""The participant dashboard's grid written in Python (trials.monitoring.casebook.grid_html, issue 22)
against the template it replaced: the grid loop of visits/participant_dashboard.html, kept below as
it was, rendered by Django's template engine from visits.selectors.participant_grid (the reads the
page used before) with the same locks, signatures and open queries. The two are compared with
whitespace normalised, for every user role, in English, French and Spanish, on rows with hostile
texts (`<script>` in visit labels, reasons, names), locks, freezes, valid and broken signatures,
open queries, an unscheduled visit, a missed visit, a visit done out of its window and logs.
"""

from __future__ import annotations

import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.template import engines
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone, translation
from lxml import html as lxml_html

from edc.audit import audited_save, system_user
from trials.monitoring.casebook.dashboard import dashboard_participant, dashboard_reads
from trials.monitoring.casebook.grid_html import grid_rows_html
from trials.monitoring.locks.views import dashboard_review
from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.participants.models import Participant
from trials.protocol.models import Role, Site
from trials.protocol.services import study_role_grant
from trials.records.models import Lock, Signature
from trials.visits import schedule, selectors
from trials.visits.models import CrfEntry, Visit

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script>&\'"'

# The grid loop of templates/visits/participant_dashboard.html before issue 22's third pass.
REFERENCE = """{% load i18n %}{% for row in grid %}
    <tr data-visit="{{ row.visit.definition.code|default:'unscheduled' }}"><td class="edc-reflow-title">{{ row.visit.label }}</td><td class="text-nowrap" data-label="{% translate 'Planned' %}">{{ row.visit.planned_date|date:"DATE_FORMAT"|default:"—" }}</td>
      <td class="small" data-label="{% translate 'Window' %}">{% if row.visit.window_start %}<span class="text-nowrap">{{ row.visit.window_start|date:"DATE_FORMAT" }} –</span> <span class="text-nowrap">{{ row.visit.window_end|date:"DATE_FORMAT" }}</span>{% else %}—{% endif %}</td>
      <td class="text-nowrap" data-label="{% translate 'State' %}"><span class="badge edc-visit edc-visit-{{ row.visit.status }}" data-testid="state-{{ row.visit.definition.code|default:row.visit.pk }}">{{ row.visit.get_status_display }}</span>
        {% if row.visit.visit_date %}<div class="small">{{ row.visit.visit_date|date:"DATE_FORMAT" }}{% if row.visit.out_of_window %} <span class="badge text-bg-warning" title="{% translate 'Done outside its window: a possible protocol deviation' %}">{% translate "out of window" %}</span>{% endif %}</div>{% endif %}
        {% if row.lock or row.signature or row.visit.visit_date %}<div class="small">{% include "monitoring/lock_badge.html" with lock=row.lock testid="lock-visit" %} {% include "monitoring/sign_badge.html" with visit=row.visit signature=row.signature %}</div>{% endif %}
        {% if row.visit.status_reason and row.visit.status != "done" %}<div class="small text-muted">{{ row.visit.status_reason }}</div>{% endif %}
        {% if summary.can_act and not row.lock and not casebook_lock and row.visit.status != "missed" and row.visit.status != "not_done" %}<div class="small"><a href="{% url 'visit_date' row.visit.pk %}">{% if row.visit.visit_date %}{% translate "change date" %}{% else %}{% translate "visit date" %}{% endif %}</a>{% if not row.visit.visit_date %} · <a href="{% url 'visit_mark' row.visit.pk %}">{% translate "missed / not done" %}</a>{% endif %}</div>{% endif %}
        {% if row.participant_reported and summary.can_act and row.visit.status != "missed" and row.visit.status != "not_done" %}<div class="small"><a href="{% url 'epro_visit' row.visit.pk %}" data-testid="epro-{{ row.visit.definition.code|default:row.visit.pk }}">{% translate "participant questionnaires" %}</a></div>{% endif %}</td>
      <td data-label="{% translate 'CRFs' %}">{% for cell in row.cells %}
        {% with status=cell.entry.status|default:"not_started" %}
        <a class="badge rounded-pill me-1 mb-1 text-decoration-none edc-chip edc-chip-{{ status }}" href="{% url 'crf_entry' row.visit.pk cell.link.crf_code %}" data-testid="chip-{{ row.visit.definition.code }}-{{ cell.link.crf_code }}" title="{% if cell.entry %}{{ cell.entry.get_status_display }}{% else %}{% translate 'Not started' %}{% endif %}{% if not cell.link.required %} · {% translate 'optional' %}{% endif %}">{{ cell.link.crf_code }}{% if status == "complete" %} ✓{% elif status == "in_progress" %} …{% endif %}{% if cell.lock %} · {% if cell.lock.kind == "lock" %}{% translate "locked" %}{% else %}{% translate "frozen" %}{% endif %}{% endif %}</a>{% if cell.entry.open_queries %}<a class="badge rounded-pill text-bg-danger me-1 mb-1 text-decoration-none" href="{% url 'crf_entry' row.visit.pk cell.link.crf_code %}" data-testid="query-chip-{{ row.visit.definition.code }}-{{ cell.link.crf_code }}" title="{% translate 'Open queries on this CRF' %}">{% blocktranslate count n=cell.entry.open_queries %}{{ n }} query open{% plural %}{{ n }} queries open{% endblocktranslate %}</a>{% endif %}
        {% endwith %}
      {% endfor %}</td></tr>
  {% empty %}<tr><td colspan="5" class="text-muted">{% translate "No visits yet." %}</td></tr>{% endfor %}
  """


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def reference_grid(participant: Participant, *, can_act: bool) -> str:
    """The grid as the template wrote it, from the reads the page used before."""
    open_queries = Count("queries", filter=Q(queries__state__in=list(OPEN_QUERY_STATES)))
    grid = selectors.participant_grid(participant, entry_annotations={"open_queries": open_queries})
    review = dashboard_review(participant, grid)
    template = engines["django"].from_string(REFERENCE)
    return template.render({"grid": grid, "summary": {"can_act": can_act}, **review})


def python_grid(user, participant_pk: int, *, can_act: bool) -> str:  # noqa: ANN001
    participant = dashboard_participant(user, participant_pk)
    grid = dashboard_reads(participant)["grid"]
    review = dashboard_review(participant, grid)
    return grid_rows_html(grid, can_act=can_act, casebook_lock=review["casebook_lock"])


@pytest.fixture
def noon():
    with time_machine.travel("2026-03-16T11:00:00+00:00", tick=False):
        yield


@pytest.fixture
def trial_with_everything(seeds, noon):  # noqa: ARG001
    """A small synthetic trial whose first participant has every state the grid shows."""
    from trials.demo.synthetic import SynthParams, synth_trial_generate

    trial = synth_trial_generate(SynthParams(code="GRID", participants=4, visits=4, crfs=3, items=5, sites=2, aes_per_participant=0)).trial
    actor = system_user()
    users = {}
    site = trial.sites.order_by("code").first()
    for role in (Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR, Role.DATA_MANAGER):
        user = get_user_model().objects.create_user(f"grid.{role}", password="x", first_name=HOSTILE, last_name="Q")
        study_role_grant(user=user, trial=trial, role=role, site=None if role == Role.DATA_MANAGER else site, granted_by=actor, reason="test")
        users[role] = user
    participant = trial.participants.filter(site=site).order_by("screening_number").first()
    visits = list(Visit.objects.filter(participant=participant).order_by("order"))
    # Hostile texts, a missed visit with its reason, a visit done out of its window (set directly: test data).
    QuerySet(model=Visit).filter(pk=visits[0].pk).update(label=HOSTILE, status_reason=HOSTILE, status="missed")
    QuerySet(model=Visit).filter(pk=visits[1].pk).update(out_of_window=True)
    entries = list(CrfEntry.objects.filter(visit__participant=participant).order_by("pk"))
    now = timezone.now()

    def made(model, **fields):  # noqa: ANN001, ANN003, ANN202
        obj = model(**fields)
        audited_save(obj, user=actor, reason="test")
        return obj

    dm, inv = users[Role.DATA_MANAGER], users[Role.INVESTIGATOR]
    made(Lock, trial=trial, level="entry", kind="lock", participant=participant, visit=entries[0].visit, entry=entries[0], reason=HOSTILE, locked_by=dm, locked_at=now)
    made(Lock, trial=trial, level="entry", kind="freeze", participant=participant, visit=entries[1].visit, entry=entries[1], reason=HOSTILE, locked_by=dm, locked_at=now)
    made(Lock, trial=trial, level="visit", kind="freeze", participant=participant, visit=visits[2], reason=HOSTILE, locked_by=dm, locked_at=now)
    made(Signature, participant=participant, visit=visits[1], signer=inv, printed_name=HOSTILE, meaning=HOSTILE, signed_at=now)
    made(Signature, participant=participant, visit=visits[3], signer=inv, printed_name=HOSTILE, meaning=HOSTILE, signed_at=now,
         state="broken", broken_at=now, broken_reason=HOSTILE)
    for entry, state in ((entries[2], "open"), (entries[2], "answered"), (entries[3], "closed"), (entries[4], "open")):
        made(Query, trial=trial, site=site, participant=participant, entry=entry, state=state, text=HOSTILE, raised_by=dm, raised_at=now)
    schedule.visit_add_unscheduled(participant, user=users[Role.COORDINATOR], label=HOSTILE, planned_date=timezone.localdate(), reason="test")
    return trial, participant, users


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_the_grid_in_python_is_the_template_s_grid(trial_with_everything, language):
    trial, participant, users = trial_with_everything
    with translation.override(language):
        for role, user in users.items():
            for can_act in (True, False):
                request = RequestFactory().get("/")
                request.user = user
                expected = reference_grid(participant, can_act=can_act)
                assert "&lt;script&gt;" in expected and "<script>" not in expected
                assert "queries open" in expected or language != "en"
                assert normalised(python_grid(user, participant.pk, can_act=can_act)) == normalised(expected), (role, can_act)


def test_the_page_shows_the_grid_escaped_and_counts_every_open_query(trial_with_everything):
    trial, participant, users = trial_with_everything
    client = Client()
    client.force_login(users[Role.MONITOR])
    page = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    tree = lxml_html.fromstring(page)
    # 3 open or answered queries on her entries (the closed one is not counted): 2 on one CRF, 1 on another.
    assert tree.xpath('string(//*[@data-testid="participant-queries"])').strip() == "3 open queries"
    chips = sorted(a.text_content() for a in tree.xpath('//a[starts-with(@data-testid, "query-chip-")]'))
    assert chips == ["1 query open", "2 queries open"]
    # The unscheduled visit's row and its optional CRFs (if the trial allows any).
    assert tree.xpath('//tr[@data-visit="unscheduled"]')


def test_a_user_of_another_site_gets_no_dashboard(trial_with_everything):
    trial, participant, users = trial_with_everything
    other = Site.objects.filter(trial=trial).exclude(pk=participant.site_id).first()
    outsider = get_user_model().objects.create_user("grid.outsider", password="x")
    study_role_grant(user=outsider, trial=trial, role=Role.COORDINATOR, site=other, granted_by=system_user(), reason="test")
    client = Client()
    client.force_login(outsider)
    assert client.get(reverse("participant_dashboard", args=[participant.pk])).status_code == 404
    assert dashboard_participant(outsider, participant.pk) is None
