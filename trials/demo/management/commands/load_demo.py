"""manage.py load_demo: the demo accounts of fixtures/demo_users.yaml with their study roles (idempotent)."""

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from edc.audit import system_user
from trials.protocol.models import Site, Trial
from trials.protocol.services import study_role_grant


class Command(BaseCommand):
    help = "Create the demo users and their study roles, and synthetic participants (refused in production)."

    def add_arguments(self, parser):
        parser.add_argument("--no-participants", action="store_true", help="Only the users and their roles.")

    def handle(self, *args, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("load_demo refuses to run with DJANGO_ENV=production: demo passwords are public")
        path = settings.EDC_DEMO_USERS_FILE
        with open(path, encoding="utf-8") as handle:
            spec = yaml.safe_load(handle)
        actor = system_user()
        User = get_user_model()
        with transaction.atomic():
            for entry in spec["users"]:
                user, created = User.objects.get_or_create(username=entry["username"])
                if created or not user.check_password(entry["password"]):
                    user.set_password(entry["password"])
                for attr in ("first_name", "last_name", "email"):
                    setattr(user, attr, entry.get(attr, ""))
                user.save()
                for grant in entry.get("roles", []):
                    try:
                        trial = Trial.objects.get(code=grant["trial"])
                        site = Site.objects.get(trial=trial, code=grant["site"]) if grant.get("site") else None
                    except (Trial.DoesNotExist, Site.DoesNotExist):
                        raise CommandError(
                            f"{path}: user {entry['username']}: no trial/site {grant} (run load_trials first)"
                        ) from None
                    study_role_grant(
                        user=user, trial=trial, site=site, role=grant["role"], granted_by=actor, reason="Demo account (load_demo)"
                    )
            created = 0 if options["no_participants"] else self._participants(actor)
            self._coding_terms()
        self.stdout.write(
            self.style.SUCCESS(f"{len(spec['users'])} demo users ready (passwords in the README); {created} new demo participants.")
        )

    def _coding_terms(self) -> None:
        """A small synthetic coding dictionary (fixtures/coding_demo.csv) for the AE form's search."""
        from trials.safety.coding import coding_dictionary_load

        coding_dictionary_load(settings.BASE_DIR / "fixtures" / "coding_demo.csv", dictionary="EDC-DEMO", version="1")

    def _participants(self, actor) -> int:  # noqa: ANN001
        """Synthetic participants through the real services (a trial that has participants is skipped)."""
        from datetime import timedelta

        from django.utils import timezone

        from trials.demo.participants import participant_register
        from trials.participants.models import Participant

        path = settings.BASE_DIR / "fixtures" / "demo_participants.yaml"
        with open(path, encoding="utf-8") as handle:
            rows = yaml.safe_load(handle)["participants"]
        today = timezone.localdate()
        started = set(Participant.objects.values_list("trial__code", flat=True).distinct())
        created = 0
        for row in rows:
            if row["trial"] in started:
                continue
            site = Site.objects.get(trial__code=row["trial"], code=row["site"])
            anchor = row.get("anchor_days_ago")
            treated = row.get("first_treatment_days_ago")
            participant_register(
                site=site,
                user=actor,
                consent_date=today - timedelta(days=row["consent_days_ago"]),
                anchor_date=today - timedelta(days=anchor) if anchor is not None else None,
                first_treatment_date=today - timedelta(days=treated) if treated is not None else None,
                arm_code=row.get("arm"),
            )
            created += 1
        return created
