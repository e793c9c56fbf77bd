"""Helpers of the fault drills (.ci/cluster/faults.sh), run on the host with the cluster's settings.

    drill.py export            request an ODM export of the load-test trial as its data manager; prints the job id
    drill.py job ID            the job's state
    drill.py wait ID STATE S   wait up to S seconds for the job to reach STATE; prints the state
    drill.py retry ID          request it again (the export page's Retry)
    drill.py integrity         entries whose revision differs from their number of audit rows (0: no partial write)
    drill.py scan MINUTES      the hourly export housekeeping, run as if MINUTES had passed (re-enqueues lost messages)
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
        print(export_request(user=manager(), format="odm", trial=Trial.objects.get(code="CLU")).pk)
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
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
