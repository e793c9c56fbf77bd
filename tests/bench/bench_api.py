"""Benchmark of the REST API (issue 19; run with `make bench` or directly).

Setup (timed apart): the seed trials (for the LABS CRF) and `manage.py synth_trial`'s generator:
a trial of BENCH_PARTICIPANTS (default 2,000) participants x 10 visits x 5 CRFs x 30 items
(100,000 complete entries), a coordinator with a role at every site and a read-and-write token.
LABS is then added to the first BENCH_LAB_VISITS (default 5) visits: 2,000 x 5 = 10,000 lab rows.

(a) Paged read, interleaved, medians of BENCH_REPEATS (default 3):
  sql  - the baseline: a hand-written keyset-paged SELECT returning each page's rows as one JSON
         array (json_build_object on PostgreSQL, json_object on SQLite), the same fields as the
         API's entry, BENCH_PAGES (default 50) pages of 100.
  api  - GET /api/v1/entries/?trial=…&page_size=100 and its `next` links, the same pages, through
         the whole Django + DRF stack in process (token authentication, scoping, the call log,
         JSON rendering), no network.
  Both return the same entry ids, page by page (checked). Target: api <= 2x sql.
(b) Lab import of BENCH_LAB_ROWS (default 10,000) rows, once each (each in a transaction rolled
    back afterwards, so both start from the same database):
  loop - the baseline: for each row, its visit looked up and `crf_entry_save_answers` called with
         the row's values already typed (no CSV, no HTTP).
  api  - the same rows as one CSV POSTed to /api/v1/labs/import/ (parsing, per-row checks, the
         report). Target: api <= 3x loop.
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
BENCH_PROFILE=read (or import) profiles the API side with cProfile.
BENCH_KEEPDB=1 keeps the test database (and its trial) and reuses it on the next run: generate once,
measure many times (drop it by hand afterwards, or run once more without BENCH_KEEPDB).
"""

import cProfile
import os
import pstats
import statistics
import time
from datetime import timedelta
from decimal import Decimal

os.environ.setdefault("DJANGO_DEBUG", "0")

import benchenv  # noqa: F401 - the project root on sys.path, Django set up
from django.db import connection, transaction

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "2000"))
PAGES = int(os.environ.get("BENCH_PAGES", "50"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
LAB_VISITS = int(os.environ.get("BENCH_LAB_VISITS", "5"))
LAB_ROWS = int(os.environ.get("BENCH_LAB_ROWS", "10000"))
PROFILE = os.environ.get("BENCH_PROFILE", "")
KEEPDB = os.environ.get("BENCH_KEEPDB", "") == "1"
READ_TARGET, IMPORT_TARGET = 2.0, 3.0
CODE = "SYN-API"
LAB_VALUES = {"haemoglobin_g_dl": "13.5", "wbc_10e9_l": "6.50", "platelets_10e9_l": "250", "creatinine_umol_l": "80", "alt_u_l": "20", "ast_u_l": "22"}


def setup():
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from edc.audit import audited_bulk_create, system_user
    from trials.api.services import token_create
    from trials.demo.synthetic import SynthParams, synth_trial_generate
    from trials.protocol.models import CrfDefinition, Role, VisitCrf, VisitDefinition
    from trials.protocol.services import study_role_grant

    call_command("load_trials", verbosity=0)
    result = synth_trial_generate(SynthParams(code=CODE, participants=PARTICIPANTS))
    trial = result.trial
    labs = CrfDefinition.objects.filter(code="LABS").order_by("-version").first()
    definitions = list(VisitDefinition.objects.filter(trial=trial).order_by("order")[:LAB_VISITS])
    audited_bulk_create(VisitCrf, [VisitCrf(visit_definition=d, crf=labs, crf_code="LABS", order=99) for d in definitions],
                        user=system_user(), reason="benchmark: LABS at the first visits")
    user = get_user_model().objects.create_user("bench-coordinator", password="bench-not-a-password-1")
    study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, granted_by=system_user(), reason="benchmark")
    raw = token_create(user=user, name="bench", scope="write", trials=[trial], days=1).raw
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return trial, user, raw, [d.code for d in definitions], result.seconds


def reused():
    """With BENCH_KEEPDB: the trial of an earlier run, if it is there (a new token for its user)."""
    from django.contrib.auth import get_user_model

    from trials.api.services import token_create
    from trials.protocol.models import Trial, VisitCrf

    trial = Trial.objects.filter(code=CODE).first()
    user = get_user_model().objects.filter(username="bench-coordinator").first()
    if trial is None or user is None:
        return None, None, None, None, 0.0
    raw = token_create(user=user, name="bench", scope="write", trials=[trial], days=1).raw
    codes = list(VisitCrf.objects.filter(visit_definition__trial=trial, crf_code="LABS")
                 .order_by("visit_definition__order").values_list("visit_definition__code", flat=True))
    return trial, user, raw, codes, 0.0


# --- (a) paged read ----------------------------------------------------------------------------


def sql_pages(trial_id: int) -> list[list[int]]:
    """The baseline: keyset pages of 100 entries as JSON, by hand."""
    from trials.participants.models import Participant
    from trials.protocol.models import CrfDefinition, Site, Trial, VisitDefinition
    from trials.visits.models import CrfEntry, Visit

    e, p, s, t = CrfEntry._meta.db_table, Participant._meta.db_table, Site._meta.db_table, Trial._meta.db_table
    v, vd, c = Visit._meta.db_table, VisitDefinition._meta.db_table, CrfDefinition._meta.db_table
    if connection.vendor == "postgresql":
        row = ("json_build_object('id', e.id, 'participant', e.participant_id, 'subject', COALESCE(NULLIF(p.subject_number, ''), p.screening_number), "
               "'trial', t.code, 'site', s.code, 'visit', e.visit_id, 'visit_code', vd.code, 'crf_code', e.crf_code, 'crf_version', c.version, "
               "'status', e.status, 'revision', e.revision, 'answers', e.answers, 'missing', e.missing, 'warnings', e.warnings, 'updated_at', e.updated_at)")
        wrap = "SELECT COALESCE(json_agg(r ORDER BY (r->>'id')::bigint), '[]')::text FROM ({inner}) q(r)"
    else:
        row = ("json_object('id', e.id, 'participant', e.participant_id, 'subject', COALESCE(NULLIF(p.subject_number, ''), p.screening_number), "
               "'trial', t.code, 'site', s.code, 'visit', e.visit_id, 'visit_code', vd.code, 'crf_code', e.crf_code, 'crf_version', c.version, "
               "'status', e.status, 'revision', e.revision, 'answers', json(e.answers), 'missing', json(e.missing), 'warnings', json(e.warnings), 'updated_at', e.updated_at)")
        wrap = "SELECT COALESCE(json_group_array(json(r)), '[]') FROM ({inner}) q(r)"
    inner = (f"SELECT {row} FROM {e} e JOIN {p} p ON p.id = e.participant_id JOIN {s} s ON s.id = p.site_id JOIN {t} t ON t.id = p.trial_id "
             f"JOIN {v} vv ON vv.id = e.visit_id LEFT JOIN {vd} vd ON vd.id = vv.definition_id JOIN {c} c ON c.id = e.crf_id "
             f"WHERE p.trial_id = %s AND e.id > %s ORDER BY e.id LIMIT 100")
    import json

    pages, last = [], 0
    with connection.cursor() as cursor:
        for _ in range(PAGES):
            cursor.execute(wrap.format(inner=inner), [trial_id, last])
            rows = json.loads(cursor.fetchone()[0])
            if not rows:
                break
            pages.append([r["id"] for r in rows])
            last = rows[-1]["id"]
    return pages


def api_pages(client) -> list[list[int]]:
    pages, url = [], f"/api/v1/entries/?trial={CODE}&page_size=100"
    for _ in range(PAGES):
        body = client.get(url).json()
        pages.append([r["id"] for r in body["results"]])
        if not body["next"]:
            break
        url = body["next"].replace("http://testserver", "")
    return pages


# --- (b) lab import ----------------------------------------------------------------------------


def lab_rows(trial, visit_codes: list[str]) -> list[tuple[str, str]]:
    from trials.participants.models import Participant

    numbers = list(Participant.objects.filter(trial=trial).order_by("pk").values_list("subject_number", flat=True))
    rows = [(n, code) for n in numbers for code in visit_codes]
    return rows[:LAB_ROWS]


def import_loop(user, trial, rows, day) -> int:
    from trials.visits.models import Visit
    from trials.visits.services import crf_entry_save_answers

    answers = {"sample_date": day, **{k: (int(v) if k == "platelets_10e9_l" else Decimal(v)) for k, v in LAB_VALUES.items() if k != "platelets_10e9_l"},
               "platelets_10e9_l": int(LAB_VALUES["platelets_10e9_l"])}
    for subject, code in rows:
        visit = Visit.objects.select_related("participant__trial", "participant__site", "definition").get(
            participant__trial=trial, participant__subject_number=subject, definition__code=code)
        crf_entry_save_answers(user=user, visit=visit, crf_code="LABS", answers=answers, complete=True, reason="")
    return len(rows)


def import_api(client, rows, day) -> dict:
    header = "subject,visit,sample_date," + ",".join(LAB_VALUES)
    lines = [header, *(f"{s},{c},{day.isoformat()}," + ",".join(LAB_VALUES.values()) for s, c in rows)]
    answer = client.post(f"/api/v1/labs/import/?trial={CODE}", "\n".join(lines) + "\n", content_type="text/csv")
    body = answer.json()
    assert answer.status_code == 200, [r for r in body.get("rows", [body]) if r.get("status") != "created"][:3]
    return body


def rolled_back(fn):
    started = time.perf_counter()
    with transaction.atomic():
        result = fn()
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed, result


def profiled(fn):
    profile = cProfile.Profile()
    profile.enable()
    try:
        return fn()
    finally:
        profile.disable()
        pstats.Stats(profile).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(40)


def main() -> None:
    from django.conf import settings
    from django.test.utils import setup_test_environment
    from django.utils import timezone
    from rest_framework.test import APIClient

    setup_test_environment()
    settings.EDC_API_RATE = "1000000/min"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=KEEPDB)
    try:
        started = time.perf_counter()
        trial, user, raw, visit_codes, generated_s = reused() if KEEPDB else (None, None, None, None, 0.0)
        if trial is None:
            trial, user, raw, visit_codes, generated_s = setup()
        print(f"setup: {PARTICIPANTS} participants generated in {generated_s:.1f} s, setup {time.perf_counter() - started:.1f} s ({connection.vendor})")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

        assert api_pages(client) == sql_pages(trial.pk), "the API and the SQL baseline return different pages"
        if PROFILE == "read":
            profiled(lambda: api_pages(client))
        times = {"sql": [], "api": []}
        for _ in range(REPEATS):
            for name, fn in (("sql", lambda: sql_pages(trial.pk)), ("api", lambda: api_pages(client))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        sql_s, api_s = statistics.median(times["sql"]), statistics.median(times["api"])
        read_ratio = api_s / sql_s
        print(f"\n(a) paged read, {PAGES} pages of 100 entries, medians of {REPEATS}")
        print(f"  sql  {sql_s:8.3f} s  ({1000 * sql_s / PAGES:.1f} ms/page)")
        print(f"  api  {api_s:8.3f} s  ({1000 * api_s / PAGES:.1f} ms/page)")
        print(f"  ratio api/sql = {read_ratio:.2f}  (target <= {READ_TARGET})  {'OK' if read_ratio <= READ_TARGET else 'MISSED'}")

        rows = lab_rows(trial, visit_codes)
        if not rows:
            return
        day = timezone.localdate() - timedelta(days=1)
        loop_s, done = rolled_back(lambda: import_loop(user, trial, rows, day))
        if PROFILE == "import":
            rolled_back(lambda: profiled(lambda: import_api(client, rows, day)))
        api_import_s, report = rolled_back(lambda: import_api(client, rows, day))
        assert done == len(rows) == len(report["rows"]) and all(r["status"] == "created" for r in report["rows"])
        import_ratio = api_import_s / loop_s
        print(f"\n(b) lab import, {len(rows)} rows, once each")
        print(f"  loop {loop_s:8.1f} s  ({1000 * loop_s / len(rows):.2f} ms/row)")
        print(f"  api  {api_import_s:8.1f} s  ({1000 * api_import_s / len(rows):.2f} ms/row)")
        print(f"  ratio api/loop = {import_ratio:.2f}  (target <= {IMPORT_TARGET})  {'OK' if import_ratio <= IMPORT_TARGET else 'MISSED'}")
    finally:
        if not KEEPDB:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
