"""The monitor's admin is scoped and read-only: an IDOR sweep over every registered admin model.

monitor.du monitors ASC-DU at Toulouse and Grenoble. Records of every kind are made through the
real services at Lille (same trial, another site) and in the other trials; then, for EVERY model
registered in the admin (django.contrib.admin.site, all apps: a model registered later is swept
without touching this file), each of those records' change page, history page and historical
version page answers 404 to monitor.du (403 for a model she has no access to at all), and her
changelist does not list it. Whether a record is in her scope is decided here, independently of the
admin code under test, by following the record's foreign keys to a site (else a trial).

Also: a monitor cannot change trial data (every POST to a change page refused, the row and its
history unchanged); list filters only offer her trials and sites; the autocomplete endpoint
does not reach outside her scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import models, transaction
from django.test.utils import override_settings
from django.urls import NoReverseMatch, reverse

from edc.audit import system_user
from tests.conftest import SEEDS
from trials.participants import services as participant_services
from trials.demo.participants import participant_register
from trials.participants.models import Participant
from trials.protocol.loader import protocol_load
from trials.protocol.models import LabNormalRange, Role, Site, Trial
from trials.protocol.services import lab_range_save, study_role_grant
from trials.safety.models import AdverseEvent
from trials.safety.services import ae_save
from trials.visits.models import CrfEntry, Visit

pytestmark = pytest.mark.django_db

MONITOR = "monitor.du"
IN_SCOPE_SITES = {("ASC-DU", "TLS"), ("ASC-DU", "GRE")}
PASSWORD = "lille-Investigator-2026"
SAMPLE = 4  # out-of-scope records swept per model (the other site of the same trial first)


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def site(trial: str, code: str) -> Site:
    return Site.objects.select_related("trial").get(trial__code=trial, code=code)


# --- The world: records of every kind, in and out of monitor.du's scope ----------------------


@dataclass
class World:
    tls: Participant
    gre: Participant
    lil: Participant
    lil_entry: CrfEntry
    tls_entry: CrfEntry
    others: list[Participant] = field(default_factory=list)


def serious_ae(participant: Participant, *, days: int = 5, term: str = "Fever") -> AdverseEvent:
    today = participant.site.today()
    zone = ZoneInfo(participant.site.time_zone)
    return ae_save(AdverseEvent(
        participant=participant, verbatim_term=term, onset_date=today - timedelta(days=days), ongoing=True, grade=3,
        related_product="not_related", seriousness=["hospitalisation"], procedure="none", related_procedure="not_related",
        action_taken="none", outcome="not_recovered",
        aware_at=datetime.combine(today - timedelta(days=days), time(10), tzinfo=zone),
    ), user=system_user())


def monitoring_records(participant: Participant, entry: CrfEntry, *, investigator, monitor, password: str) -> None:
    """A query, an SDV mark, a visit signature, a refused signature, a deviation, an unblinding and
    a freeze on the participant's data, each through its service."""
    from django.core.exceptions import ValidationError

    from trials.monitoring.deviations.services import deviation_record
    from trials.records.locks import lock_apply
    from trials.monitoring.queries.services import query_raise
    from trials.monitoring.sdv.services import sdv_verify
    from trials.monitoring.signatures.services import signature_sign
    from trials.visits.schedule import visit_add_unscheduled, visit_record_date

    manager = user("datamanager")
    today = participant.site.today()
    query_raise(user=manager, entry=entry, item="assessment_date", text="Please check the date against the source.")
    sdv_verify(entry=entry, user=monitor)
    extra = visit_add_unscheduled(participant, user=system_user(), label="Phone call", planned_date=today - timedelta(days=1),
                                  reason="Participant called about her finger")
    extra = visit_record_date(extra, user=system_user(), visit_date=today - timedelta(days=1))
    with pytest.raises(ValidationError):
        signature_sign(participant=participant, visit=extra, user=investigator, password="not-her-password")
    signature_sign(participant=participant, visit=extra, user=investigator, password=password)
    deviation_record(participant=participant, user=investigator, category="other", severity="minor",
                     occurred_on=today - timedelta(days=2), description="Visit done by phone instead of at the site.")
    if participant.trial.is_blinded:
        participant_services.participant_unblind(participant=participant, user=investigator, password=password,
                                                 reason="Severe reaction: the treating team needs the product.")
    lock_apply(level="entry", target=entry, kind="freeze", user=manager, reason="Interim review of the screening data")


def build_world() -> World:
    actor = system_user()
    trial = Trial.objects.get(code="ASC-DU")
    tls, gre, lil = site("ASC-DU", "TLS"), site("ASC-DU", "GRE"), site("ASC-DU", "LIL")
    investigator = get_user_model().objects.create_user("investigator.lille", password=PASSWORD, first_name="Inès", last_name="Leroy")
    monitor_lille = get_user_model().objects.create_user("monitor.lille", password="monitor-Lille-2026", first_name="Luc", last_name="Morel")
    study_role_grant(user=investigator, trial=trial, site=lil, role=Role.INVESTIGATOR, granted_by=actor, reason="Lille investigator")
    study_role_grant(user=monitor_lille, trial=trial, site=lil, role=Role.MONITOR, granted_by=actor, reason="Lille monitor")

    def register(where: Site, **extra) -> Participant:  # noqa: ANN003
        today = where.today()
        return participant_register(site=where, user=actor, consent_date=today - timedelta(days=30),
                                    anchor_date=today - timedelta(days=20), **extra)

    people = {key: register(where) for key, where in (("tls", tls), ("gre", gre), ("lil", lil))}
    participant_register(site=lil, user=actor, consent_date=lil.today() - timedelta(days=3), anchor_date=None)  # in screening
    lab_range_save(lab_range=LabNormalRange(site=lil, test="ALT", unit="U/L", uln=Decimal("40"), effective_from=lil.today()),
                   user=actor, reason="Lille laboratory's range")  # a site's lab range outside monitor.du's sites
    entries = {key: CrfEntry.objects.get(participant=p, crf_code="DU_ASSESS") for key, p in people.items()}
    for key in ("tls", "lil"):
        serious_ae(people[key])
    monitoring_records(people["lil"], entries["lil"], investigator=investigator, monitor=monitor_lille, password=PASSWORD)
    from trials.monitoring.queries.services import query_raise

    query_raise(user=user("datamanager"), entry=entries["tls"], item="", text="Whole entry: is the assessment date right?")

    # Other trials: an open-label participant, a registry participant, a dose cohort with its decision
    # (EASC-RA: its sentinel of three without a DLT expands, issue 15).
    others = [register(site("ADSVF-SSC-HANDS", "INCMNSZ")), register(site("SSC-FATGRAFT-REG", "MES"))]
    serious_ae(others[0], term="Cellulitis")
    from tests.participants.test_cohorts import fill
    from trials.monitoring.sdv.services import sdv_plan_save

    easc = Trial.objects.get(code="EASC-RA")
    others += fill(3)
    participant_services.cohort_decide(cohort=easc.arms.order_by("order").first(), decision="expand",
                                       user=user("investigator.madrid"), password="demo-Invest-Madrid-26", rationale="No DLT", dlt_count=0)
    sdv_plan_save(trial=easc, user=user("datamanager"), scope="critical", critical_crfs=["DAS28"], reason="Critical CRFs only")
    from trials.exports.services import export_request

    export_request(user=user("datamanager"), format="csv", trial=easc)
    return World(people["tls"], people["gre"], people["lil"], entries["lil"], entries["tls"], others)


@pytest.fixture(scope="module")
def _world(django_db_setup, django_db_blocker):  # noqa: ANN001, ANN202, ARG001
    """Seeds, demo accounts and the world, built once per module inside a transaction rolled back at
    the end (each test runs in a savepoint inside it)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
                protocol_load([SEEDS], user=system_user())
                call_command("load_demo", "--no-participants", verbosity=0, stdout=StringIO())
                world = build_world()
            yield world
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def world(_world, db) -> World:  # noqa: ANN001, ARG001
    return _world


# --- The oracle: where a record belongs, from its foreign keys -----------------------------------

def _paths(model: type[models.Model], target: type[models.Model], depth: int = 4) -> list[list[str]]:
    """Foreign-key paths from `model` to `target` (shortest first), not through users."""
    found, frontier = [], [([], model)]
    for _ in range(depth):
        following = []
        for path, current in frontier:
            for f in current._meta.concrete_fields:
                if not (f.is_relation and (f.many_to_one or f.one_to_one)) or f.related_model is get_user_model():
                    continue
                if f.related_model is target:
                    found.append([*path, f.name])
                elif f.related_model is not current:
                    following.append(([*path, f.name], f.related_model))
        frontier = following
    return found


def _follow(obj: models.Model, path: list[str]):  # noqa: ANN202
    for name in path:
        obj = getattr(obj, name)
        if obj is None:
            return None
    return obj


def scope_of(obj: models.Model) -> tuple[str, object]:
    """("site", (trial, site code)), ("trial", trial code) or ("global", None)."""
    if isinstance(obj, Site):
        return "site", (obj.trial.code, obj.code)
    if isinstance(obj, Trial):
        return "trial", obj.code
    for path in _paths(type(obj), Site):
        found = _follow(obj, path)
        if found is not None:
            return "site", (found.trial.code, found.code)
    for path in _paths(type(obj), Trial):
        found = _follow(obj, path)
        if found is not None:
            return "trial", found.code
    return "global", None


def in_monitor_scope(obj: models.Model) -> bool:
    kind, where = scope_of(obj)
    if kind == "site":
        return where in IN_SCOPE_SITES
    if kind == "trial":
        return where == "ASC-DU"
    return True  # the CRF library, coding terms, accounts: not trial data of a site


def _url(model: type[models.Model], view: str, *args) -> str:  # noqa: ANN002
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def out_of_scope(model: type[models.Model]) -> list[models.Model]:
    """A sample of the model's records outside monitor.du's scope: the other site of her trial first."""
    records = [o for o in model._default_manager.all() if not in_monitor_scope(o)]
    records.sort(key=lambda o: (scope_of(o)[0] != "site" or scope_of(o)[1][0] != "ASC-DU", o.pk))
    return records[:SAMPLE]


# Registered models with nothing of another site or trial to sweep, and why.
NO_SITE_DATA = {
    "protocol.crfdefinition": "the shared CRF library: every trial's staff read it",
    "protocol.fielddefinition": "items of the shared CRF library",
    "safety.codingterm": "the coding dictionary (reference data, not trial data)",
}


def _monitor_request(client):  # noqa: ANN001, ANN202
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user(MONITOR)
    return request


def test_every_admin_record_of_another_site_or_trial_answers_404(world, client):
    client.force_login(user(MONITOR))
    request = _monitor_request(client)
    swept, problems = {}, []
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        records = out_of_scope(model)
        if label in NO_SITE_DATA:
            continue
        has_view = model_admin.has_view_permission(request)
        if not records:
            if has_view and model._meta.app_label not in ("auth", "django_celery_beat"):
                problems.append(f"{label}: nothing outside monitor.du's scope to sweep (build one in build_world)")
            continue
        expected = {404} if has_view else {403}
        listed: set = set()
        if has_view:
            response = client.get(_url(model, "changelist"))
            assert response.status_code == 200, label
            listed = set(response.context["cl"].queryset.values_list("pk", flat=True))
        for obj in records:
            urls = [_url(model, "change", obj.pk), _url(model, "history", obj.pk)]
            history = getattr(model, "history", None)
            if history is not None and hasattr(history, "filter"):
                version = history.filter(**{model._meta.pk.attname: obj.pk}).first()
                if version is not None:
                    urls.append(_url(model, "simple_history", obj.pk, version.history_id))
            for url in urls:
                status = client.get(url).status_code
                if status not in expected:
                    problems.append(f"{label} #{obj.pk} ({scope_of(obj)}): GET {url} answered {status}, expected {expected}")
            if obj.pk in listed:
                problems.append(f"{label} #{obj.pk} ({scope_of(obj)}) is listed on monitor.du's changelist")
        swept[label] = len(records)
    assert not problems, "\n".join(problems)
    # The sweep reached the participant data of the other site of her own trial (the IDOR that matters).
    for label in ("participants.participant", "visits.visit", "visits.crfentry", "safety.adverseevent", "safety.reportingclock",
                  "participants.consent", "participants.eligibilityanswer", "participants.unblinding", "monitoring.query",
                  "records.sdvmark", "protocol.site", "protocol.studyrole"):
        assert swept.get(label), f"{label} was not swept: {swept}"


def test_the_sweep_would_see_a_leak(world, client):
    """The same requests on records of her own sites open: the sweep above can fail."""
    client.force_login(user(MONITOR))
    for obj in (world.tls, world.gre, world.tls_entry, Visit.objects.filter(participant=world.gre).first(),
                AdverseEvent.objects.get(participant=world.tls)):
        for view in ("change", "history"):
            assert client.get(_url(type(obj), view, obj.pk)).status_code == 200, (obj, view)
    listed = client.get(_url(Participant, "changelist")).context["cl"].queryset
    assert set(listed.values_list("pk", flat=True)) >= {world.tls.pk, world.gre.pk}
    # And the Lille monitor, for whom Lille is in scope, sees Lille's participant where monitor.du gets 404.
    client.force_login(user("monitor.lille"))
    assert client.get(_url(Participant, "change", world.lil.pk)).status_code == 200
    client.force_login(user(MONITOR))
    assert client.get(_url(Participant, "change", world.lil.pk)).status_code == 404


def test_the_audit_trail_pages_are_scoped_too(world, client):
    client.force_login(user(MONITOR))
    for name, pk in (("participants_participant_audit", world.lil.pk), ("participants_participant_audit_csv", world.lil.pk),
                     ("visits_crfentry_audit", world.lil_entry.pk), ("visits_crfentry_audit_csv", world.lil_entry.pk)):
        assert client.get(reverse(f"admin:{name}", args=[pk])).status_code == 404, name
    assert client.get(reverse("admin:participants_participant_audit", args=[world.tls.pk])).status_code == 200
    assert client.get(reverse("admin:visits_crfentry_audit_csv", args=[world.tls_entry.pk])).status_code == 200


def test_a_monitor_cannot_change_trial_data_in_the_admin(world, client):
    """Every POST to a change page of a record in her scope is refused, and nothing is written."""
    client.force_login(user(MONITOR))
    request = _monitor_request(client)
    tried = 0
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_permission(request):
            continue
        obj = next((o for o in model._default_manager.all()[:50] if in_monitor_scope(o)), None)
        if obj is None or not model_admin.get_queryset(request).filter(pk=obj.pk).exists():
            continue
        history = model.history.filter(**{model._meta.pk.attname: obj.pk}).count() if hasattr(model, "history") else None
        before = model._default_manager.filter(pk=obj.pk).values().get()
        response = client.post(_url(model, "change", obj.pk), {"change_reason": "monitor tries", "status": "completed"})
        assert response.status_code == 403, f"{model._meta.label}: POST answered {response.status_code}"
        assert model._default_manager.filter(pk=obj.pk).values().get() == before, model._meta.label
        if history is not None:
            assert model.history.filter(**{model._meta.pk.attname: obj.pk}).count() == history
        assert client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403, model._meta.label
        tried += 1
    assert tried >= 10


def test_a_monitor_cannot_edit_answers_anywhere(world, client):
    """Not in the admin, not through the study's CRF page: monitors raise queries, they do not edit."""
    entry = world.tls_entry
    before = (dict(entry.answers), entry.revision, entry.history.count())
    client.force_login(user(MONITOR))
    page = client.get(_url(CrfEntry, "change", entry.pk)).content.decode()
    assert 'name="_save"' not in page and "Raise query" in page
    assert client.post(_url(CrfEntry, "change", entry.pk), {"answers": '{"number_active_du": 9}', "change_reason": "x"}).status_code == 403
    url = reverse("crf_entry", args=[entry.visit_id, entry.crf_code])
    response = client.post(url, {"revision": str(entry.revision), "crf-number_active_du": "9", "action": "complete", "reason": "x"})
    assert response.status_code in (403, 200)
    entry.refresh_from_db()
    assert (entry.answers, entry.revision, entry.history.count()) == before


def test_changelists_offer_only_her_trials_and_sites(world, client):
    client.force_login(user(MONITOR))
    request = _monitor_request(client)
    foreign = [s.name for s in Site.objects.exclude(trial__code="ASC-DU", code__in=["TLS", "GRE"])
               if not Site.objects.filter(name=s.name, trial__code="ASC-DU", code__in=["TLS", "GRE"]).exists()]
    other_trials = list(Trial.objects.exclude(code="ASC-DU").values_list("code", flat=True))
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_permission(request) or model._meta.label_lower in NO_SITE_DATA:
            continue
        page = client.get(_url(model, "changelist")).content.decode()
        for name in foreign:
            assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page), f"{model._meta.label} changelist shows {name!r}"
        for code in other_trials:
            assert not re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", page), f"{model._meta.label} changelist shows {code!r}"
        checked += 1
    assert checked >= 10
    # The participants' site filter lists her two sites (and nothing else).
    page = client.get(_url(Participant, "changelist")).content.decode()
    assert site("ASC-DU", "TLS").name in page and site("ASC-DU", "GRE").name in page


def test_the_datamanager_sees_all_sites_of_her_trials(world, client):
    """A positive control for the filters: an all-sites role lists Lille's participant."""
    client.force_login(user("datamanager"))
    listed = client.get(_url(Participant, "changelist")).context["cl"].queryset
    assert world.lil.pk in set(listed.values_list("pk", flat=True))


def test_autocomplete_does_not_reach_outside_her_scope(world, client):
    client.force_login(user(MONITOR))
    checked = 0
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.autocomplete_fields:
            response = client.get(reverse("admin:autocomplete"), {
                "app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name, "term": "",
            })
            checked += 1
            if response.status_code != 200:
                assert response.status_code == 403, (model, field_name, response.status_code)
                continue
            remote = model._meta.get_field(field_name).related_model
            for result in response.json()["results"]:
                assert in_monitor_scope(remote._default_manager.get(pk=result["id"])), (model, field_name, result)
    assert checked >= 1


def test_every_registered_admin_model_is_reachable_by_name():
    """The sweep builds URLs from admin names: a custom admin without them would escape it."""
    for model in admin.site._registry:
        for view in ("changelist",):
            try:
                _url(model, view)
            except NoReverseMatch:  # pragma: no cover - would be a broken admin
                pytest.fail(f"{model._meta.label} has no {view} URL")
