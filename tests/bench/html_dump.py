"""Dump pages' HTML, whitespace normalised, for the before/after comparisons of issue 22 (docs/benchmarks.md,
third pass): 12 pages (the participant list's pages, searches and filters, the participant page, a
CRF page, home, account) × coordinator, monitor, sponsor (blinded), data manager × en, fr, es, on a
synthetic trial with `<script>`, `<b>`, quotes and `&` in a site name, a participant's numbers and
a user's name. Run from each checkout: `python tests/bench/html_dump.py OUTDIR`, then
`python tests/bench/html_dump.py --compare BEFORE AFTER`."""
import difflib
import os
import re
import sys

if sys.argv[1] == "--compare":
    a_dir, b_dir = sys.argv[2], sys.argv[3]
    differing = 0
    for n in sorted(os.listdir(a_dir)):
        a, b = open(os.path.join(a_dir, n)).read(), open(os.path.join(b_dir, n)).read()
        if a != b:
            differing += 1
            for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()[:3]:
                if op[0] != "equal":
                    print(n, op[0], repr(a[op[1] - 60:op[2] + 60])[:400], "||", repr(b[op[3] - 60:op[4] + 60])[:400])
    print("files differing:", differing, "of", len(os.listdir(a_dir)))
    sys.exit(0)

import benchenv  # noqa: E402, F401
from django.conf import settings
from django.db import connection
from django.test import Client
from django.contrib.auth import get_user_model
from django.urls import reverse

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
settings.DEBUG = False
settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
try:
    from edc.audit import system_user
    from trials.demo.synthetic import SynthParams, synth_trial_generate
    from trials.protocol.models import Role
    from trials.protocol.services import study_role_grant
    trial = synth_trial_generate(SynthParams(code="DUMP", participants=240, visits=2, crfs=2, items=5, sites=4, aes_per_participant=0)).trial
    site = trial.sites.order_by("code").first()
    site.name = 'Site <b>"bold"</b> & <script>alert(1)</script>'
    from edc.audit import audited_save
    audited_save(site, user=system_user(), reason='dump')
    ps = list(trial.participants.filter(site=site).order_by("screening_number"))
    ps[0].screening_number = "<script>x</script>&1"; ps[0].subject_number = '"><img src=x>'
    audited_save(ps[0], user=system_user(), reason='dump')
    U = get_user_model()
    users = {}
    for name, role, at_site, staff in [("coord", Role.COORDINATOR, site, False), ("monitor", Role.MONITOR, None, True),
                                        ("sponsor", Role.SPONSOR, None, False), ("dm", Role.DATA_MANAGER, None, True)]:
        u = U.objects.create_user(name, password="x", first_name="<script>alert('n')</script>" if name == "coord" else "", last_name="O'Hara & co" if name == "monitor" else "")
        if staff:
            u.is_staff = True; u.save()
        study_role_grant(user=u, trial=trial, role=role, site=at_site, granted_by=system_user(), reason="dump")
        users[name] = u
    participant = ps[2]
    visit = participant.visits.order_by("order").last()
    lurl = reverse("participant_list", args=[trial.code, site.code])
    pages = {
        "list": lurl, "list_p2": lurl + "?page=2", "list_pbad": lurl + "?page=abc", "list_p99": lurl + "?page=99",
        "list_q": lurl + "?q=%3Cscript", "list_qnone": lurl + "?q=zzzz&status=screened", "list_status": lurl + "?status=screening&q=0",
        "list_qamp": lurl + "?q=a%26b%3Cc&page=1",
        "participant": reverse("participant_dashboard", args=[participant.pk]),
        "crf": reverse("crf_entry", args=[visit.pk, "DUMP-C01"]), "home": reverse("home"), "account": reverse("account"),
    }
    norm_re = [(re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"'), 'name="csrfmiddlewaretoken" value="X"'),
               (re.compile(r'data-edc-idle-remaining="\d+"'), 'data-edc-idle-remaining="N"')]
    for uname, u in users.items():
        for lang in ("en", "fr", "es"):
            c = Client()
            c.force_login(u)
            c.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
            for pname, url in pages.items():
                r = c.get(url)
                body = r.content.decode()
                for rx, rep in norm_re:
                    body = rx.sub(rep, body)
                body = re.sub(r"\s+", " ", body)
                body = re.sub(r"> <", "><", body)
                with open(os.path.join(out, f"{uname}-{lang}-{pname}.html"), "w") as f:
                    f.write(f"{r.status_code}\n{body}")
    print("dumped", len(os.listdir(out)))
finally:
    connection.creation.destroy_test_db(old, verbosity=0)
