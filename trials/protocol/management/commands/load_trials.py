"""manage.py load_trials [PATH …]: validate and load trial and CRF files (default: seeds/)."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from edc.audit import system_user
from trials.protocol.loader import ProtocolLoadError, protocol_check, protocol_load


class Command(BaseCommand):
    help = "Validate trial and CRF YAML files and load them in one transaction (nothing is written on error)."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", help="files or directories (default: seeds/)")
        parser.add_argument("--user", help="username the changes are recorded under (default: the system account)")
        parser.add_argument("--check", action="store_true", help="only validate the files; write nothing")

    def handle(self, *args, **options):
        paths = [Path(p) for p in options["paths"]] or [Path(settings.BASE_DIR) / "seeds"]
        if options["user"]:
            try:
                user = get_user_model().objects.get(username=options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user '{options['user']}'") from None
        else:
            user = system_user()
        try:
            if options["check"]:
                validated = protocol_check(paths)
                self.stdout.write(
                    f"Valid: {len(validated.trials)} trial file(s), {len(validated.crfs)} CRF file(s); nothing written."
                )
                return
            report = protocol_load(paths, user=user)
        except ProtocolLoadError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s) found; nothing was written") from None
        if not report.changed:
            self.stdout.write(f"Up to date: {', '.join(report.trials) or 'no trials'} (nothing written).")
            return
        for title, bucket in (("created", report.created), ("updated", report.updated), ("deactivated", report.deactivated)):
            if bucket:
                self.stdout.write(f"{title}: " + ", ".join(f"{n} {name}" for name, n in sorted(bucket.items())))
        if report.crf_versions:
            self.stdout.write("new CRF versions: " + ", ".join(report.crf_versions))
        self.stdout.write(self.style.SUCCESS(f"Loaded {', '.join(report.trials) or 'the CRF library'}."))
