"""Coordinators for the load test (one per simulated user, each at her own participant so two users
never race for the same CRF entry), written to the JSON file locust reads. Run by cluster.sh once."""

import json
import os
import sys

import django

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edc.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.urls import reverse  # noqa: E402

from edc.audit import system_user  # noqa: E402
from trials.protocol.models import Role, Trial  # noqa: E402
from trials.protocol.services import study_role_grant  # noqa: E402

USERS = int(os.environ.get("LOADTEST_USERS", "40"))
PASSWORD = "Cluster-load-test-2026"  # a lab database only


def main(path: str) -> None:
    trial = Trial.objects.get(code="CLU")
    sites = list(trial.sites.order_by("code"))
    rows = []
    for n in range(USERS):
        site = sites[n % len(sites)]
        user, created = get_user_model().objects.get_or_create(username=f"load{n:03d}")
        if created:
            user.set_password(PASSWORD)
            user.save()
            study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, site=site, granted_by=system_user(), reason="load test")
        participant = trial.participants.filter(site=site).order_by("screening_number")[n // len(sites)]
        visit = participant.visits.order_by("order").first()
        rows.append({
            "username": user.username, "password": PASSWORD,
            "list": reverse("participant_list", args=[trial.code, site.code]),
            "participant": reverse("participant_dashboard", args=[participant.pk]),
            "crf": reverse("crf_entry", args=[visit.pk, f"{trial.code}-C01"]),
        })
    with open(path, "w") as out:
        json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
