"""manage.py synth_trial --code SYN-2000 --participants 2000 …: a synthetic trial with its data.

See trials/demo/synthetic.py and docs/benchmarks.md ("Synthetic trials"). Refused in production.
"""

import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError

from edc.audit import system_user
from trials.protocol.loader import ProtocolLoadError
from trials.protocol.models import Role
from trials.protocol.services import study_role_grant
from trials.demo.synthetic import SynthParams, synth_trial_generate


class Command(BaseCommand):
    help = (
        "Generate a synthetic trial (protocol loaded from generated YAML, then participants, visits, complete CRF "
        "entries and AEs written in bulk with their history) for benchmarks and load tests."
    )

    def add_arguments(self, parser):
        parser.add_argument("--code", required=True, help="trial code, e.g. SYN-2000 (CRFs are <code>-C01 …)")
        parser.add_argument("--participants", type=int, required=True)
        parser.add_argument("--visits", type=int, default=10, help="visit definitions, every CRF at each (default 10)")
        parser.add_argument("--crfs", type=int, default=5, help="CRFs (default 5)")
        parser.add_argument("--items", type=int, default=30, help="items per CRF (default 30)")
        parser.add_argument("--sites", type=int, default=4, help="sites (default 4)")
        parser.add_argument("--seed", type=int, default=1, help="the same seed and sizes give the same data (default 1)")
        parser.add_argument("--randomized", action="store_true",
                            help="a blinded randomized trial with an allocation list (default: open-label, assigned arms)")
        parser.add_argument("--repeating-group", action="store_true", help="the last CRF also has a repeating group (1-3 rows)")
        parser.add_argument("--aes", type=float, default=1.0, help="adverse events per participant on average, 0-4 (default 1)")
        parser.add_argument("--yaml-dir", help="where the generated protocol files are written (default: a temporary folder)")
        parser.add_argument("--user", help="username the rows are recorded under (default: the system account)")
        parser.add_argument("--grant", action="append", default=[], metavar="USERNAME:ROLE",
                            help="give an existing user a role at all sites of the trial (repeatable), e.g. sponsor:sponsor")

    def handle(self, *args, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("synth_trial refuses to run with DJANGO_ENV=production: synthetic data never sit beside real data")
        User = get_user_model()
        grants = []
        for grant in options["grant"]:
            username, _sep, role = grant.partition(":")
            if role not in Role.values:
                raise CommandError(f"--grant {grant}: give USERNAME:ROLE with a role among {', '.join(Role.values)}")
            try:
                grants.append((User.objects.get(username=username), role))
            except User.DoesNotExist:
                raise CommandError(f"--grant {grant}: no user '{username}'") from None
        try:
            user = User.objects.get(username=options["user"]) if options["user"] else system_user()
        except User.DoesNotExist:
            raise CommandError(f"no user '{options['user']}'") from None
        params = SynthParams(
            code=options["code"], participants=options["participants"], visits=options["visits"], crfs=options["crfs"],
            items=options["items"], sites=options["sites"], seed=options["seed"], randomized=options["randomized"],
            repeating_group=options["repeating_group"], aes_per_participant=options["aes"],
        )
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if options["verbosity"] >= 1:
                rate = done / max(time.perf_counter() - started, 1e-9)
                self.stdout.write(f"  {done}/{total} participants ({rate:.0f}/s)")

        try:
            result = synth_trial_generate(
                params, user=user, folder=Path(options["yaml_dir"]) if options["yaml_dir"] else None, progress=progress
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except (ProtocolLoadError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        for grantee, role in grants:
            # Granted from the shell: recorded under the system account (a user never grants herself a role).
            study_role_grant(user=grantee, trial=result.trial, role=role, granted_by=system_user(), reason=f"{role} of a synthetic trial")
        if not result.created:
            self.stdout.write(f"Up to date: {params.code} was already made with these parameters (nothing written).")
            return
        counts = ", ".join(f"{n} {name}" for name, n in sorted(result.counts.items()))
        self.stdout.write(f"created: {counts}")
        self.stdout.write(self.style.SUCCESS(f"Made synthetic trial {params.code} in {result.seconds:.1f} s."))
