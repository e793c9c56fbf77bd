"""manage.py import_odm FILE… --out DIR: CDISC ODM metadata -> CRF and trial YAML, checked by the loader."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trials.protocol.imports.common import ImportFailed
from trials.protocol.imports.odm import import_odm


class Command(BaseCommand):
    help = (
        "Import CDISC ODM 1.3.2 metadata (FormDef, ItemGroupDef, ItemDef, CodeList, RangeCheck, MethodDef, "
        "ConditionDef, StudyEventDef) as CRF and trial YAML. The YAML is validated by the loader and written "
        "under --out only when everything is valid; load it with load_trials."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="ODM XML files")
        parser.add_argument("--out", help="directory for the YAML (crfs/<code>.yaml, <trial>.yaml); without it, only check")

    def handle(self, *args, **options):
        try:
            result = import_odm([Path(f) for f in options["files"]], Path(options["out"]) if options["out"] else None)
        except ImportFailed as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s) found; nothing was written") from None
        for line in result.report:
            self.stdout.write(line)
        where = f"written under {options['out']}" if options["out"] else "checked, nothing written (no --out)"
        self.stdout.write(self.style.SUCCESS(f"{len(result.files)} file(s) {where}: " + ", ".join(sorted(result.files))))
