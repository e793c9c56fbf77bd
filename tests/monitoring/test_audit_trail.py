"""The audit trail of a participant and of a CRF entry (page in the admin, CSV for inspectors):
who, when (UTC and the site's local time), which field or CRF item, old -> new, why. Blinded users
never get a record that reveals an allocation. And every model holding trial data leaves a history
row with the user and the reason when the services create or change it."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from edc.audit import AuditedModel, system_user
from tests.blinding.test_blinded_users_never_see_an_arm import _Html, arm_vocabulary, scan
from tests.conftest import SEEDS
from tests.visits.test_crf_entry import as_querydict, vitals_post
from trials.monitoring.audit.trail import SOURCES, entry_trail, participant_trail
from trials.participants import services as participant_services
from trials.demo.participants import participant_register
from trials.participants.models import Participant
from trials.protocol.models import LabNormalRange, Role, Site, Trial
from trials.protocol.services import lab_range_save, study_role_grant
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save, crf_entry_save_answers

pytestmark = pytest.mark.django_db

PASSWORD_INV = "demo-Invest-Toulouse-26"


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def toulouse_participant(days: int = 30) -> Participant:
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    today = site.today()
    return participant_register(site=site, user=system_user(), consent_date=today - timedelta(days=days),
                                anchor_date=today - timedelta(days=days - 10))


def vitals_entry(participant: Participant) -> CrfEntry:
    """VITALS entered by the coordinator, then the heart rate corrected with a reason."""
    coordinator = user("coordinator.toulouse")
    visit = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order").first()
    crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post()), expected_revision=0, complete=True)
    crf_entry_save(
        user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post(**{"crf-heart_rate": "72", "revision": "1"})),
        expected_revision=1, complete=True, reason="transcription error",
    )
    return CrfEntry.objects.get(visit=visit, crf_code="VITALS")


def resave_ulcer(entry: CrfEntry, actor, reason: str, **row) -> CrfEntry:  # noqa: ANN001, ANN003
    """Save the entry's answers again through the service, the first ulcer row changed."""
    from datetime import date
    from decimal import Decimal

    answers = dict(entry.answers)
    answers["assessment_date"] = date.fromisoformat(answers["assessment_date"])
    answers["ulcers"] = [{**entry.answers["ulcers"][0], **{k: Decimal(v) if k.endswith("_mm") else v for k, v in row.items()}}]
    return crf_entry_save_answers(user=actor, visit=entry.visit, crf_code=entry.crf_code, answers=answers, complete=True, reason=reason)


def read_csv(response) -> list[dict]:  # noqa: ANN001
    assert response.streaming, "the CSV is streamed"
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))


# --- Content -------------------------------------------------------------------------------


def test_the_participant_trail_says_who_when_which_item_old_new_and_why(demo_users, client):
    participant = toulouse_participant()
    entry = vitals_entry(participant)
    change = entry.history.filter(history_change_reason="transcription error").get()
    at_utc = change.history_date.astimezone(UTC)
    at_paris = change.history_date.astimezone(ZoneInfo("Europe/Paris"))

    client.force_login(user("monitor.du"))
    change_page = client.get(reverse("admin:participants_participant_change", args=[participant.pk])).content.decode()
    audit_url = reverse("admin:participants_participant_audit", args=[participant.pk])
    assert audit_url in change_page  # linked from the participant's page
    assert "transcription error" in change_page  # and the latest changes inline

    page = client.get(audit_url).content.decode()
    row = page[page.index(f'data-history="visits.crfentry:{change.history_id}"'):]
    row = row[: row.index("</tr>")]
    assert at_utc.strftime("%Y-%m-%d %H:%M:%S") in row
    assert at_paris.strftime("%Y-%m-%d %H:%M:%S %Z") in row and at_paris.strftime("%Z") in ("CET", "CEST")
    assert "Camille Martin (coordinator.toulouse)" in row
    assert "<td>Heart rate</td><td>70</td><td>72</td>" in row
    assert "transcription error" in row

    lines = read_csv(client.get(reverse("admin:participants_participant_audit_csv", args=[participant.pk])))
    heart = [line for line in lines if line["field"] == "heart_rate" and line["history_id"] == str(change.history_id)]
    assert len(heart) == 1
    line = heart[0]
    assert (line["old"], line["new"], line["reason"], line["user"]) == ("70", "72", "transcription error", "coordinator.toulouse")
    assert line["time_utc"] == at_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert line["time_local"] == at_paris.isoformat(timespec="seconds") and line["time_zone"] == "Europe/Paris"
    assert line["record_type"] == "CRF entry" and line["action"] == "changed"
    # The first save: every answer from empty to its value, by the same coordinator.
    first = [line for line in lines if line["record_type"] == "CRF entry" and line["action"] == "created" and line["field"] == "heart_rate"]
    assert [(f["old"], f["new"]) for f in first] == [("", "70")]
    # Consent, eligibility, enrolment and visits are in the same trail, oldest first.
    kinds = {line["record_type"] for line in lines}
    assert {"participant", "consent", "eligibility answer", "visit", "CRF entry", "allocation"} <= kinds
    assert [line["time_utc"] for line in lines] == sorted(line["time_utc"] for line in lines)


def test_a_repeating_group_row_is_audited_item_by_item(demo_users, client):
    participant = toulouse_participant()
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    row_id = entry.answers["ulcers"][0]["_row_id"]
    resave_ulcer(entry, user("coordinator.toulouse"), "measured again with the ruler", length_mm="12.5")
    changes = [c for row in entry_trail(user("monitor.du"), entry) if row.reason == "measured again with the ruler" for c in row.changes]
    length = [c for c in changes if c.field == "ulcers.length_mm"]
    assert len(length) == 1 and length[0].row == row_id and length[0].new == "12.5"
    assert length[0].label == "Digital ulcers #1 › Greatest length"
    assert length[0].old == ""  # not measured at screening
    assert [c.field for c in changes] == ["ulcers.length_mm"]  # nothing else changed


def test_the_entry_trail_holds_its_queries_and_sdv_but_not_other_entries(demo_users, client):
    from trials.monitoring.queries.services import query_answer, query_raise
    from trials.monitoring.sdv.services import sdv_verify

    participant = toulouse_participant()
    entry = vitals_entry(participant)
    other = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    monitor = user("monitor.du")
    query = query_raise(user=monitor, entry=entry, item="heart_rate", text="Source says 74?")
    query_answer(query=query, user=user("coordinator.toulouse"), text="Checked: 72 is right.")
    sdv_verify(entry=entry, user=monitor)

    client.force_login(monitor)
    page = client.get(reverse("admin:visits_crfentry_audit", args=[entry.pk])).content.decode()
    assert "Source says 74?" in page and "Checked: 72 is right." in page and "transcription error" in page
    assert f'data-history="visits.crfentry:{other.history.first().history_id}"' not in page
    assert reverse("admin:visits_crfentry_audit", args=[entry.pk]) in client.get(
        reverse("admin:visits_crfentry_change", args=[entry.pk])).content.decode()
    lines = read_csv(client.get(reverse("admin:visits_crfentry_audit_csv", args=[entry.pk])))
    assert {line["record_type"] for line in lines} >= {"CRF entry", "query", "query message", "SDV mark"}
    assert {line["record_id"] for line in lines if line["record_type"] == "CRF entry"} == {str(entry.pk)}
    # The open query shows on its item of the entry's page, with the link to raise another.
    entry_page = client.get(reverse("admin:visits_crfentry_change", args=[entry.pk])).content.decode()
    item_row = entry_page[entry_page.index('data-item="heart_rate"'):]
    item_row = item_row[: item_row.index("</tr>")]
    assert "Source says 74?" in item_row
    assert reverse("admin:monitoring_query_raise") + f"?entry={entry.pk}&amp;item=heart_rate&amp;row=" in item_row


def test_raise_query_links_on_each_item_and_each_group_row(demo_users, client):
    participant = toulouse_participant()
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    row_id = entry.answers["ulcers"][0]["_row_id"]
    client.force_login(user("monitor.du"))
    page = client.get(reverse("admin:visits_crfentry_change", args=[entry.pk])).content.decode()
    base = reverse("admin:monitoring_query_raise") + f"?entry={entry.pk}"
    assert f"{base}&amp;item=number_active_du&amp;row=" in page
    assert f"{base}&amp;item=ulcers&amp;row={row_id}" in page  # the row
    assert f"{base}&amp;item=finger&amp;row={row_id}" in page or f"{base}&amp;item=hand&amp;row={row_id}" in page  # an item of the row
    assert f"{base}&amp;item=&amp;row=" in page  # the whole entry
    assert client.get(f"{base}&item=ulcers&row={row_id}".replace("&amp;", "&")).status_code == 200


# OWASP "CSV Injection": a cell beginning with = + - @ tab or CR gets a leading single quote. The
# old check let a minus sign followed by a digit through, so these two reasons ran as formulas.
FORMULA_REASONS = ("-2+3", "-1+cmd|' /C calc'!A0", '=HYPERLINK("http://attacker.example/","ok")', "@SUM(1+1)")


def test_csv_cells_cannot_run_as_formulas(demo_users, client):
    """Reasons for change are free text: each reaches the inspectors' CSV with a leading quote; the
    values of a numeric item (a negative number included) stay numbers."""
    participant = toulouse_participant()
    entry = vitals_entry(participant)
    answers = dict(entry.answers)
    for n, reason in enumerate(FORMULA_REASONS):
        answers["heart_rate"] = 80 + n
        crf_entry_save_answers(user=user("coordinator.toulouse"), visit=entry.visit, crf_code="VITALS", answers=answers,
                               complete=True, reason=reason)
    client.force_login(user("monitor.du"))
    lines = read_csv(client.get(reverse("admin:visits_crfentry_audit_csv", args=[entry.pk])))
    reasons = {line["reason"] for line in lines}
    assert {"'" + reason for reason in FORMULA_REASONS} <= reasons
    assert not reasons & set(FORMULA_REASONS)
    changed = [line for line in lines if line["field"] == "heart_rate" and line["reason"] == "'-2+3"]
    assert [(line["old"], line["new"]) for line in changed] == [("72", "80")]


def test_the_trail_reads_a_fixed_number_of_queries(demo_users):
    """One query per source (and per related model for labels), whatever the number of records."""
    small = toulouse_participant()
    monitor = user("monitor.du")
    with CaptureQueriesContext(connection) as few:
        participant_trail(monitor, Participant.objects.get(pk=small.pk))
    large = toulouse_participant(days=40)
    vitals_entry(large)
    from trials.safety.models import AdverseEvent
    from trials.safety.services import ae_save

    for n in range(3):
        ae_save(AdverseEvent(participant=large, verbatim_term=f"Headache {n}", onset_date=large.site.today() - timedelta(days=2),
                             ongoing=True, grade=1, related_product="not_related", procedure="none", related_procedure="not_related",
                             action_taken="none", outcome="not_recovered",
                             aware_at=large.history.first().history_date), user=system_user())
    with CaptureQueriesContext(connection) as many:
        trail = participant_trail(monitor, Participant.objects.get(pk=large.pk))
    assert len(trail) > 40
    assert len(many) <= len(few) + 3, (len(few), len(many))  # a few more related models to label (AEs), not per row
    assert len(many) <= 40


def test_a_monitor_of_another_site_gets_404(demo_users, client):
    participant = toulouse_participant()
    lille = get_user_model().objects.create_user("monitor.lille", password="x-long-password-26")
    study_role_grant(user=lille, trial=Trial.objects.get(code="ASC-DU"), site=Site.objects.get(trial__code="ASC-DU", code="LIL"),
                     role=Role.MONITOR, granted_by=system_user(), reason="test")
    client.force_login(lille)
    for name in ("participants_participant_audit", "participants_participant_audit_csv"):
        assert client.get(reverse(f"admin:{name}", args=[participant.pk])).status_code == 404
    client.force_login(user("coordinator.toulouse"))  # not staff: no admin
    assert client.get(reverse("admin:participants_participant_audit", args=[participant.pk])).status_code == 302


# --- Blinding ------------------------------------------------------------------------------


@pytest.fixture
def randomized(demo_users):
    """Four randomized ASC-DU participants (both arms), one emergency-unblinded."""
    made = [toulouse_participant(days=40 - i) for i in range(3)]
    gre = Site.objects.get(trial__code="ASC-DU", code="GRE")
    made.append(participant_register(site=gre, user=system_user(), consent_date=gre.today() - timedelta(days=20),
                                     anchor_date=gre.today() - timedelta(days=12)))
    from trials.participants.models import Allocation

    assert set(Allocation.objects.filter(participant__in=made).values_list("arm__code", flat=True)) == {"ADMSC", "PLACEBO"}
    participant_services.participant_unblind(participant=made[0], user=user("investigator.toulouse"), password=PASSWORD_INV,
                                             reason="Severe local reaction: the treating team needs the product.")
    vitals_entry(made[1])
    return made


def _trail_pages(client, participants) -> dict[str, _Html]:  # noqa: ANN001
    pages = {}
    for participant in participants:
        for name in ("participants_participant_audit", "participants_participant_audit_csv", "participants_participant_change"):
            url = reverse(f"admin:{name}", args=[participant.pk])
            response = client.get(url)
            assert response.status_code == 200, url
            page = _Html()
            if response.streaming:
                page.text.append(b"".join(response.streaming_content).decode())
            else:
                page.feed(response.content.decode())
            pages[url] = page
        for entry in CrfEntry.objects.filter(participant=participant):
            for name in ("visits_crfentry_audit", "visits_crfentry_audit_csv"):
                url = reverse(f"admin:{name}", args=[entry.pk])
                response = client.get(url)
                page = _Html()
                if response.streaming:
                    page.text.append(b"".join(response.streaming_content).decode())
                else:
                    page.feed(response.content.decode())
                pages[url] = page
    return pages


def test_a_blinded_monitor_never_sees_an_arm_in_the_trail(randomized, client):
    vocabulary = arm_vocabulary(Trial.objects.get(code="ASC-DU"))
    client.force_login(user("monitor.du"))
    pages = _trail_pages(client, randomized)
    leaks = [leak for url, page in pages.items() for leak in scan(url, page, vocabulary)]
    assert not leaks, "\n".join(map(str, leaks))
    assert len(pages) >= 12 and any(url.endswith("audit.csv") for url in pages)
    # What the trail does show her: the allocation with its kit code, not the unblinding.
    rows = participant_trail(user("monitor.du"), randomized[0])
    allocation = [row for row in rows if row.model == "participants.allocation"]
    assert allocation and {c.field for c in allocation[0].changes} >= {"kit_code", "method"}
    assert not {c.field for row in allocation for c in row.changes} & {"arm", "slot"}
    assert not [row for row in rows if row.model == "participants.unblinding" or "unblinded_at" in {c.field for c in row.changes}]
    assert "blinded-note" in client.get(reverse("admin:participants_participant_audit", args=[randomized[0].pk])).content.decode()


def test_the_scan_finds_arms_in_the_trail_of_an_unblinded_reviewer(randomized, client):
    """dsmb.statistician, given a monitor role, sees allocations: the same scan reports the arms
    and the unblinding (so the blinded test above can fail)."""
    dsmb = user("dsmb.statistician")
    study_role_grant(user=dsmb, trial=Trial.objects.get(code="ASC-DU"), site=Site.objects.get(trial__code="ASC-DU", code="TLS"),
                     role=Role.MONITOR, granted_by=system_user(), reason="test")
    vocabulary = arm_vocabulary(Trial.objects.get(code="ASC-DU"))
    client.force_login(dsmb)
    pages = _trail_pages(client, [p for p in randomized if p.site.code == "TLS"])
    found = {leak.found for url, page in pages.items() for leak in scan(url, page, vocabulary)}
    assert found & {"ADMSC", "PLACEBO"}, found
    rows = participant_trail(dsmb, randomized[0])
    assert [row for row in rows if row.model == "participants.unblinding"]
    assert any(c.field == "arm" for row in rows for c in row.changes)


# --- Every model that holds trial data ------------------------------------------------------

# Models that are never changed after creation, by design, and why (each still must be created
# with a user and a reason below).
CREATED_ONLY = {
    "protocol.crfdefinition": "versions are immutable: a changed CRF file becomes a new version",
    "protocol.fielddefinition": "items of an immutable CRF version",
    "participants.consent": "a consent is a fact; a newer document version is a new consent",
    "participants.allocationlist": "a randomization list is generated once, never regenerated",
    "participants.allocationslot": "lines of the list, never changed",
    "participants.allocation": "one allocation per participant, never changed",
    "participants.cohortdecision": "a signed review decision; the next decision is a new row",
    "participants.unblinding": "an event, recorded once",
    "monitoring.querymessage": "a message of a query's thread is written once",
    "monitoring.signaturefailure": "a refused attempt, recorded once",
    "exports.exportdownload": "a download is an event, recorded once",
    "protocol.unblindedaccessevent": "an entry of the unblinded-access log, recorded once",
    "build.amendment": "an applied amendment is a record; the next amendment is a new row",
    "epro.proresponse": "how and when the participant completed a questionnaire, written when she sends it",
    "exports.dsmbpackage": "the stored report of a cut-off, generated once and never changed; a later cut-off is a new row",
}


def audited_models() -> list[type[AuditedModel]]:
    return sorted((m for m in apps.get_models() if issubclass(m, AuditedModel)), key=lambda m: m._meta.label_lower)


def amend_protocol(tmp_path) -> None:  # noqa: ANN001
    """An amended ASC-DU protocol loaded by the loader (its own service): new texts and a new
    VITALS version, which moves the trial's VisitCrf rows to it."""
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    path = next(folder.glob("001_*.yaml"))
    data = yaml.safe_load(path.read_text())
    data["title"] += " (amended)"
    data["sites"][0]["name"] += " (amended)"
    data["arms"][0]["description"] = (data["arms"][0].get("description") or "") + " Amended."
    data["criteria"][0]["text"] += " (amended)"
    data["visits"][-1]["label"] += " (amended)"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    vitals = folder / "crfs" / "vitals.yaml"
    crf = yaml.safe_load(vitals.read_text())
    crf["fields"][0]["help"] = "Amended help text."
    vitals.write_text(yaml.safe_dump(crf, sort_keys=False, allow_unicode=True))
    from trials.protocol.loader import protocol_load

    protocol_load([folder], user=system_user())


def test_every_model_holding_trial_data_records_who_and_why(db, client, tmp_path, settings):
    from django.core.management import call_command

    from tests.monitoring.test_admin_scoping import build_world, serious_ae
    from tests.participants.conftest import MEXICO, checklist, consent, screen
    from trials.exports.models import ExportJob
    from trials.exports.services import export_download, export_run
    from trials.monitoring.deviations.services import deviation_dismiss
    from trials.records.locks import lock_release
    from trials.monitoring.models import ProtocolDeviation, Query
    from trials.records.models import Lock, SdvMark, Signature
    from trials.monitoring.queries.services import query_answer, query_close
    from trials.monitoring.sdv.services import sdv_plan_save
    from trials.protocol.loader import protocol_load
    from trials.protocol.models import ConsentDocument, StudyRole
    from trials.protocol.services import study_role_revoke
    from trials.safety.models import ReportingClock
    from trials.safety.services import ae_save, clock_report
    from trials.visits.schedule import visit_record_date

    exports = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "exports")}}
    settings.STORAGES = {**settings.STORAGES, "exports": exports}
    models = audited_models()
    before = {m: (m.history.order_by("-history_id").values_list("history_id", flat=True).first() or 0) for m in models}

    # Creation: the loader, the demo accounts' roles, and a world of participants and monitoring.
    protocol_load([SEEDS], user=system_user())
    call_command("load_demo", "--no-participants", verbosity=0)
    world = build_world()
    actor, manager = system_user(), user("datamanager")

    # Changes, each through its service.
    amend_protocol(tmp_path)  # Trial, Site, Arm, Criterion, VisitDefinition, VisitCrf
    client.force_login(manager)  # the admin is the data manager's write path for operational fields
    document = ConsentDocument.objects.get(trial__code="ASC-DU")
    response = client.post(reverse("admin:protocol_consentdocument_change", args=[document.pk]), {
        "title": "Information and consent form (v1.0)", "requires_reconsent": "on", "is_active": "on", "change_reason": "Title as approved",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    study_role_revoke(study_role=StudyRole.objects.get(user__username="monitor.lille"), revoked_by=manager, reason="Left the trial")
    mexico = consent(screen(MEXICO))
    participant_services.eligibility_record(participant=mexico, answers=checklist(mexico), user=actor)
    participant_services.eligibility_record(
        participant=mexico, answers={k: (a, "re-checked with the source") for k, (a, _n) in checklist(mexico).items()}, user=actor)
    resave_ulcer(world.tls_entry, actor, "Length corrected", length_mm="9")
    ae = serious_ae(world.gre, days=3, term="Pneumonia")
    ae.grade = 4
    ae_save(ae, user=actor, reason="Grade corrected after the CT scan")
    clock_report(ReportingClock.objects.filter(adverse_event=ae).first(), user=actor)
    query = Query.objects.filter(entry=world.lil_entry).first()
    query_answer(query=query, user=user("investigator.lille"), text="The date is right (source checked).")
    query_close(query=query, user=manager, justification="Answer accepted: the source agrees.")
    sdv_plan_save(trial=Trial.objects.get(code="EASC-RA"), user=manager, scope="all", reason="Back to all data")
    lock_release(lock=Lock.objects.get(entry=world.lil_entry), user=manager, reason="Interim review done")
    resave_ulcer(CrfEntry.objects.get(pk=world.lil_entry.pk), user("investigator.lille"), "Length re-measured", length_mm="7")  # resets SDV
    phone = world.lil.visits.get(label="Phone call")
    visit_record_date(phone, user=user("investigator.lille"), visit_date=phone.visit_date - timedelta(days=1),
                      reason="The call was the day before")  # breaks the visit's signature
    late = world.tls.visits.filter(visit_date__isnull=True, window_end__isnull=False, window_end__lt=world.tls.site.today()).first()
    assert late is not None, "a Toulouse visit whose window has closed"
    visit_record_date(late, user=actor, visit_date=world.tls.site.today() - timedelta(days=1), reason="Done late")
    proposed = ProtocolDeviation.objects.get(visit=late)
    deviation_dismiss(deviation=proposed, user=manager, reason="The window was extended by the sponsor")
    job = ExportJob.objects.first()
    export_run(job.pk)
    _job, handle = export_download(job_id=job.pk, user=manager)
    handle.close()

    # ePRO: a personal link made (and e-mailed) by the coordinator, answered by the participant.
    from trials.epro.services import link_create, link_window, pro_submit, visit_questionnaires

    visit = next(v for v in world.tls.visits.filter(visit_date__isnull=True).order_by("window_start")
                 if timezone.now() < link_window(v)[1] and any(q.crf_code == "PAIN_VAS" for q in visit_questionnaires(v)))
    link, _token = link_create(user=user("coordinator.toulouse"), visit=visit, crf_code="PAIN_VAS", email="participant@example.org")
    pro_submit(visit=visit, crf_code="PAIN_VAS", answers={"pain_vas": 40}, mode="link", link=link)

    # Study build: a study builder granted and ended by a superuser; an amendment previewed and applied.
    from tests.build.amended import amended_files
    from trials.build.services import amendment_apply, build_preview, impact_digest, study_builder_end, study_builder_grant

    root = get_user_model().objects.create_superuser("root.audit", "root@example.org", "Xk39-very-long-secret")
    builder = study_builder_grant(user=user("sponsor.toulouse"), granted_by=root, reason="Builds the next registry")
    study_builder_end(builder=builder, ended_by=root, reason="The registry was built")
    du = Trial.objects.get(code="ASC-DU")
    _code, impact = build_preview(amended_files(), user=manager, trial=du)
    amendment_apply(amended_files(), user=manager, trial=du, version="2.0", effective_date=timezone.localdate(),
                    reason="Protocol amendment 2", previewed=impact_digest(impact))
    lab_range = LabNormalRange.objects.get(site=world.lil.site)
    lab_range.is_active = False  # a range is never edited, only deactivated when a new version replaces it
    lab_range_save(lab_range=lab_range, user=manager, reason="The laboratory changed its analyser")

    # The monitor's per-item SDV: one planned item ticked against the source, then unticked.
    from trials.monitoring.sdv.services import sdv_item_tick, sdv_review_items

    ticked_entry = CrfEntry.objects.get(pk=world.tls_entry.pk)
    planned = next(t for t in sdv_review_items(ticked_entry) if t.blocking)
    sdv_item_tick(entry=ticked_entry, user=user("monitor.du"), item=planned.item, row_id=planned.row_id)
    sdv_item_tick(entry=ticked_entry, user=user("monitor.du"), item=planned.item, row_id=planned.row_id, ticked=False)
    # A DSMB open report stored for a cut-off (the CSV: the PDF's rendering adds nothing to the audit).
    from trials.exports.dsmb import dsmb_package_file

    dsmb_package_file(manager, du, cutoff=timezone.localdate(), closed=False, file_format="csv")

    assert SdvMark.objects.filter(entry=world.lil_entry, state="reset").exists()
    assert Signature.objects.filter(participant=world.lil, state="broken").exists()
    problems = []
    for model in models:
        label = model._meta.label_lower
        rows = model.history.filter(history_id__gt=before[model])
        if not rows.filter(history_type="+").exists():
            problems.append(f"{label}: no creation recorded by the scenario (drive it through its service here)")
        if label not in CREATED_ONLY and not rows.filter(history_type="~").exists():
            problems.append(f"{label}: no change recorded by the scenario (drive one, or list it in CREATED_ONLY with why)")
        unsigned = rows.filter(history_user__isnull=True).count()
        unexplained = rows.filter(history_change_reason__isnull=True).count() + rows.filter(history_change_reason="").count()
        if unsigned or unexplained:
            problems.append(f"{label}: {unsigned} history row(s) without a user, {unexplained} without a reason")
    assert not problems, "\n".join(problems)
    assert len(models) >= 30


def test_every_model_with_a_participants_data_is_in_the_trail():
    """A new model pointing at a participant (directly or through an entry, visit, AE or query) must
    be added to trials.monitoring.audit.trail.SOURCES, or it would be missing from the audit trail."""
    from tests.monitoring.test_admin_scoping import _paths

    in_trail = {s.model for s in SOURCES}
    missing = [m._meta.label for m in audited_models() if m not in in_trail and (m is Participant or _paths(m, Participant))]
    assert not missing, f"add these models to trials.monitoring.audit.trail.SOURCES: {missing}"
