"""The participant page of every participant for every user, in English, French and Spanish, written
to DUMP_DIR (one file per user, language and participant, whitespace collapsed, CSRF tokens and
nonces blanked): the before/after check of issue 22's third pass (docs/benchmarks.md "Third pass:
participant page"). Not part of the suite; run it explicitly in each checkout, on a fresh test
database each time (the pages hold row ids):

    DUMP_DIR=/tmp/dump-before .venv/bin/pytest -p no:cacheprovider -q --create-db tests/bench/dump_participant_pages.py

The four seed trials with the demo participants and users, a participant with a medication log
(one record with hostile texts, one empty), and a synthetic trial with locks, freezes, valid and
broken signatures, open / answered / closed queries (one on an AE), a missed visit, a visit out
of its window, and `<script>` in visit labels, reasons, CRF titles and names; its coordinator,
investigator, monitor and data manager. Compare two dumps with whitespace normalised; the kit
codes and the randomised arms of ASC-DU differ from run to run (random allocation lists).
"""
import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user

from django.db.models import QuerySet

def mk(model, **kw):
    from edc.audit import audited_save, system_user
    obj = model(**kw)
    audited_save(obj, user=system_user(), reason="dump")
    return obj


def QS(model):
    return QuerySet(model=model)


H = '<script>alert("x")</script>&\'"'


@pytest.mark.django_db
@pytest.mark.skipif(not os.environ.get("DUMP_DIR"), reason="a tool: set DUMP_DIR")
def test_dump(seeds):
    out = Path(os.environ["DUMP_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    with time_machine.travel("2026-11-20T11:00:00+00:00", tick=False):
        _run(out)


def _run(out):
    from trials.demo.participants import participant_register
    from trials.demo.synthetic import SynthParams, synth_trial_generate
    from trials.monitoring.models import Query
    from trials.participants.models import Participant
    from trials.protocol.models import CrfDefinition, Role, Site
    from trials.protocol.services import study_role_grant
    from trials.records.models import Lock, Signature
    from trials.safety.models import AdverseEvent
    from trials.visits.models import CrfEntry, Visit
    from trials.visits.services import crf_entry_save_answers, log_record_add

    call_command("load_demo", verbosity=0)
    actor = system_user()
    User = get_user_model()
    # A participant with logs (ASC-DU Toulouse)
    today = timezone.localdate()
    p = participant_register(site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=actor,
                             consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=10))
    coord = User.objects.get(username="coordinator.toulouse")
    for med in ("nifedipine", H):
        rec = log_record_add(user=coord, participant=p, crf_code="CONMED")
        crf_entry_save_answers(user=coord, visit=rec, crf_code="CONMED", answers={
            "medication": med, "drug_class": "calcium_channel_blocker", "indication": H,
            "dose": "30", "dose_unit": "mg", "route": "oral", "frequency": "QD", "start_date": date(2025, 6, 1), "ongoing": True}, complete=True, reason="")
    log_record_add(user=coord, participant=p, crf_code="CONMED")  # an empty record
    syn = synth_trial_generate(SynthParams(code="DUMP-SYN", participants=6, visits=4, crfs=3, items=5, sites=2, randomized=True, repeating_group=True)).trial
    s1 = syn.sites.order_by("code").first()
    names = {}
    for role in (Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR, Role.DATA_MANAGER):
        u = User.objects.create_user(f"syn.{role}", password="x", first_name=H)
        study_role_grant(user=u, trial=syn, role=role, site=None if role == Role.DATA_MANAGER else s1, granted_by=actor, reason="dump")
        names[role] = u
    # hostile strings and review states on the synthetic participants
    sp = list(Participant.objects.filter(trial=syn).order_by("pk"))
    QS(Participant).filter(pk=sp[0].pk).update(status_reason=H)
    v = list(Visit.objects.filter(participant=sp[0]).order_by("order"))
    QS(Visit).filter(pk=v[0].pk).update(label=H, status_reason=H, status="missed")
    QS(Visit).filter(pk=v[1].pk).update(out_of_window=True)
    QS(CrfDefinition).filter(code__startswith="DUMP-SYN").update(title=H)
    entries = list(CrfEntry.objects.filter(visit__participant=sp[0]).order_by("pk"))
    dm = names[Role.DATA_MANAGER]
    now = timezone.now()
    mk(Lock, trial=syn, level="entry", kind="lock", participant=sp[0], visit=entries[0].visit, entry=entries[0], reason=H, locked_by=dm, locked_at=now)
    mk(Lock, trial=syn, level="entry", kind="freeze", participant=sp[0], visit=entries[1].visit, entry=entries[1], reason=H, locked_by=dm, locked_at=now)
    mk(Lock, trial=syn, level="visit", kind="freeze", participant=sp[0], visit=v[2], reason=H, locked_by=coord, locked_at=now)
    mk(Lock, trial=syn, level="participant", kind="lock", participant=sp[1], reason=H, locked_by=dm, locked_at=now)
    inv = names[Role.INVESTIGATOR]
    mk(Signature, participant=sp[0], visit=v[1], signer=inv, printed_name=H, meaning=H, signed_at=now)
    mk(Signature, participant=sp[0], visit=v[3], signer=inv, printed_name=H, meaning=H, signed_at=now, state="broken", broken_at=now, broken_reason=H)
    mk(Signature, participant=sp[0], visit=None, signer=inv, printed_name=H, meaning=H, signed_at=now)
    mk(Signature, participant=sp[2], visit=None, signer=inv, printed_name=H, meaning=H, signed_at=now, state="broken", broken_at=now, broken_reason=H)
    for e, state in ((entries[2], "open"), (entries[2], "answered"), (entries[3], "closed"), (entries[4], "open")):
        mk(Query, trial=syn, site=e.visit.participant.site, participant=sp[0], entry=e, item="", state=state, text=H, raised_by=dm, raised_at=now)
    ae = AdverseEvent.objects.filter(participant=sp[3]).first()
    if ae:
        mk(Query, trial=syn, site=sp[3].site, participant=sp[3], adverse_event=ae, item="", state="open", text=H, raised_by=dm, raised_at=now)
    users = list(User.objects.exclude(username=actor.username).order_by("username"))
    pids = list(Participant.objects.order_by("pk").values_list("pk", flat=True))
    n = 0
    for u in users:
        for lang in ("en", "fr", "es"):
            c = Client()
            c.force_login(u)
            c.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
            for pk in pids:
                r = c.get(reverse("participant_dashboard", args=[pk]))
                body = r.content.decode() if r.status_code == 200 else ""
                body = re.sub(r'(csrfmiddlewaretoken" value=")[^"]+', r"\1X", body)
                body = re.sub(r'nonce="[^"]+"', 'nonce="X"', body)
                body = re.sub(r"\s+", " ", body)
                (out / f"{u.username}-{lang}-{pk}.html").write_text(f"{r.status_code}\n{body}")
                n += 1
    print("dumped", n)
