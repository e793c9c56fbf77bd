"""Helpers of the fault drills (.ci/cluster/faults.sh), run on the host with the cluster's settings.

    drill.py export [FORMAT]   request an export (ODM by default) of the load-test trial as its data manager; prints the job id
    drill.py job ID            the job's state
    drill.py wait ID STATE S   wait up to S seconds for the job to reach STATE; prints the state
    drill.py retry ID          request it again (the export page's Retry)
    drill.py integrity         entries whose revision differs from their number of audit rows (0: no partial write)
    drill.py scan MINUTES      the hourly export housekeeping, run as if MINUTES had passed (re-enqueues lost messages)
    drill.py stale MINUTES     the every-minute stale-export scan, run as if MINUTES had passed (re-queues lost workers' jobs)
    drill.py attempts ID       the job's attempts and its history reasons, oldest first; the files in its folder
    drill.py sched-prepare N   N enrolled participants in CLU without their visits, 3 serious AEs whose clocks are past half
                               time (alerts due), the safety summary states reset; prints nothing
    drill.py sched-enqueue     the periodic work, as beat sends it: a schedule batch of the new participants, the
                               reminder scan, the clock alerts, the nightly summaries (each task once)
    drill.py sched-progress    participants of the drill with their visits / without
    drill.py sched-rescan M    the scans again, as the next beat ticks would (a nightly tick delivered twice; the
                               summary stale scan as if M minutes had passed)
    drill.py sched-check       duplicates (visits, reminders, clock alerts, summaries of one night) and gaps: all 0
"""

import os
import sys

import django

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edc.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from edc.audit import system_user  # noqa: E402
from trials.exports.models import ExportJob  # noqa: E402
from trials.exports.services import export_request, export_retry  # noqa: E402
from trials.protocol.models import Role, Trial  # noqa: E402
from trials.protocol.services import study_role_grant  # noqa: E402


def manager():  # noqa: ANN201
    user, created = get_user_model().objects.get_or_create(username="drill-dm", defaults={"is_staff": True})
    if created:
        study_role_grant(user=user, trial=Trial.objects.get(code="CLU"), role=Role.DATA_MANAGER, site=None,
                         granted_by=system_user(), reason="fault drill")
    return user


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "export":
        print(export_request(user=manager(), format=argv[1] if len(argv) > 1 else "odm", trial=Trial.objects.get(code="CLU")).pk)
    elif command == "job":
        job = ExportJob.objects.get(pk=int(argv[1]))
        print(job.state, job.rows_done, job.rows_total, (job.error or "")[:200])
    elif command == "wait":
        import time

        deadline = time.monotonic() + int(argv[3])
        job = ExportJob.objects.get(pk=int(argv[1]))
        while job.state != argv[2] and time.monotonic() < deadline:
            time.sleep(0.5)
            job.refresh_from_db()
        print(job.state, job.rows_done, job.rows_total, (job.error or "")[:200])
    elif command == "retry":
        print(export_retry(job_id=int(argv[1]), user=manager()).pk)
    elif command == "integrity":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM visits_crfentry e WHERE e.revision <> "
                "(SELECT count(*) FROM visits_historicalcrfentry h WHERE h.id = e.id)"
            )
            print(cursor.fetchone()[0])
    elif command == "scan":
        from datetime import timedelta

        from django.utils import timezone

        from trials.exports.services import exports_scan

        print(exports_scan(now=timezone.now() + timedelta(minutes=int(argv[1]))))
    elif command == "stale":
        from datetime import timedelta

        from django.utils import timezone

        from trials.exports.services import exports_stale_requeue

        print(exports_stale_requeue(now=timezone.now() + timedelta(minutes=int(argv[1]))))
    elif command == "attempts":
        from trials.exports.services import export_storage

        job = ExportJob.objects.get(pk=int(argv[1]))
        reasons = list(job.history.order_by("history_id").values_list("history_change_reason", flat=True))
        try:
            files = export_storage().listdir(str(job.pk))[1]
        except FileNotFoundError:
            files = []
        print(f"attempts={job.attempts} state={job.state} finished={reasons.count('Export finished')} files={len(files)} history={reasons}")
    elif command.startswith("sched-"):
        schedule_drill(command, argv[1:])
    else:
        raise SystemExit(__doc__)


DRILL_PREFIX = "KD"  # screening numbers of the drill's participants


def schedule_drill(command: str, args: list[str]) -> None:
    from datetime import date, timedelta

    from django.db.models import Count, QuerySet
    from django.utils import timezone

    from trials.participants.models import Participant, ParticipantStatus
    from trials.safety.models import AdverseEvent, ClockAlert, SafetySummary, SummaryState
    from trials.visits import tasks as visit_tasks
    from trials.visits.models import ReminderLog, Visit
    from trials.visits.schedule import participants_missing_visits

    trial = Trial.objects.get(code="CLU")
    drill_participants = Participant.objects.filter(trial=trial, screening_number__startswith=DRILL_PREFIX)
    if command == "sched-prepare":
        count = int(args[0])
        today = date.today()
        sites = list(trial.sites.order_by("code"))
        start = drill_participants.count()
        rows = [
            Participant(trial=trial, site=sites[n % len(sites)], screening_number=f"{DRILL_PREFIX}{n:05d}",
                        subject_number=f"{DRILL_PREFIX}S{n:05d}", status=ParticipantStatus.ENROLLED,
                        consent_date=today - timedelta(days=20), screening_date=today - timedelta(days=20),
                        enrolment_date=today - timedelta(days=n % 15))
            for n in range(start, start + count)
        ]
        QuerySet.bulk_create(Participant.objects.all(), rows)  # lab rows, schedules missing on purpose
        # The load-test coordinators get an address, so their digests are sent (and logged).
        for coordinator in get_user_model().objects.filter(username__startswith="load", email=""):
            coordinator.email = f"{coordinator.username}@lab.invalid"
            coordinator.save(update_fields=["email"])
        from trials.safety.services import ae_save

        coordinator = get_user_model().objects.get(username="load000")
        site = coordinator.study_roles.get(role=Role.COORDINATOR).site
        for participant in trial.participants.filter(site=site).exclude(screening_number__startswith=DRILL_PREFIX).order_by("pk")[:3]:
            ae_save(AdverseEvent(
                participant=participant, verbatim_term="Fall", onset_date=date.today() - timedelta(days=1), ongoing=True,
                grade=3, seriousness=["hospitalisation"], related_product="not_related", procedure="none",
                related_procedure="not_related", action_taken="none", outcome="not_recovered",
                aware_at=timezone.now() - timedelta(hours=13),
            ), user=coordinator)  # a 24-hour clock past half time: its alert is due
    elif command == "sched-enqueue":
        from trials.safety import tasks as safety_tasks
        from trials.safety.tasks_clocks import reporting_clock_alerts

        ids = list(drill_participants.filter(visits__isnull=True).values_list("pk", flat=True))
        visit_tasks.schedule_batch.delay(ids)
        visit_tasks.reminders_scan.delay()
        reporting_clock_alerts.delay()
        safety_tasks.safety_summaries_nightly.delay()
        print(len(ids))
    elif command == "sched-wait":  # sched-wait N: until N more drill participants have visits (polled in-process)
        import time

        start = drill_participants.filter(visits__isnull=False).distinct().count()
        deadline = time.monotonic() + 120
        while drill_participants.filter(visits__isnull=False).distinct().count() < start + int(args[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
    elif command == "sched-progress":
        done = drill_participants.filter(visits__isnull=False).distinct().count()
        print(done, drill_participants.count() - done)
    elif command == "sched-rescan":
        from trials.safety import tasks as safety_tasks
        from trials.safety.summary import summaries_stale_requeue
        from trials.safety.tasks_clocks import reporting_clock_alerts

        visit_tasks.schedule_scan.delay()
        visit_tasks.reminders_scan.delay()
        reporting_clock_alerts.delay()
        safety_tasks.safety_summaries_nightly.delay()  # the same night's tick, delivered again
        print("summary refreshes enqueued again:", summaries_stale_requeue(now=timezone.now() + timedelta(minutes=int(args[0]))))
    elif command == "sched-check":
        visits = (Visit.objects.filter(participant__in=drill_participants, definition__isnull=False)
                  .values("participant", "definition").annotate(n=Count("id")).filter(n__gt=1).count())
        missing = sum(1 for _ in participants_missing_visits())
        reminders = ReminderLog.objects.values("user", "visit", "reason", "day").annotate(n=Count("id")).filter(n__gt=1).count()
        alerts = ClockAlert.objects.values("clock", "stage").annotate(n=Count("id")).filter(n__gt=1).count()
        night = timezone.localdate()
        pairs = SafetySummary.objects.filter(trial=trial, computed_at__date=night).values("cutoff_at").annotate(n=Count("id"))
        state = SummaryState.objects.filter(trial=trial).first()
        print(
            f"duplicate visits={visits} participants missing visits={missing} duplicate reminders={reminders} "
            f"(sent today {ReminderLog.objects.filter(day=night).count()}) duplicate clock alerts={alerts} "
            f"(alerts {ClockAlert.objects.count()}) CLU summaries today: cut-offs={len(pairs)} "
            f"rows per cut-off={sorted({p['n'] for p in pairs})} nightly_on={state and state.nightly_on} "
            f"queued={state and state.queued} runs={state and state.runs}"
        )
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
