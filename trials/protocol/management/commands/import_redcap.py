"""manage.py import_redcap FILE… --out DIR: a REDCap project as trial and CRF YAML for load_trials."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trials.protocol.imports.redcap import describe, import_redcap


class Command(BaseCommand):
    help = (
        "Convert a REDCap data dictionary (with the optional arms, events and instrument-event mapping CSVs) "
        "into trial and CRF YAML, validated by the loader; nothing is written when a file has a problem."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="the data dictionary CSV, and optionally arms/events/mapping CSVs")
        parser.add_argument("--out", required=True, help="folder for <trial>.yaml and crfs/*.yaml (created if missing)")
        parser.add_argument("--code", help="the trial's code (default: from the dictionary's file name)")
        parser.add_argument("--title", help="the trial's title")
        parser.add_argument("--crf-prefix", default="", help="prefix for the CRF codes (keeps them apart from CRFs already loaded)")

    def handle(self, *args, **options):
        result = import_redcap(
            [Path(f) for f in options["files"]], trial_code=options["code"], title=options["title"],
            crf_prefix=options["crf_prefix"].upper(),
        )
        if result.problems:
            for problem in result.problems:
                self.stderr.write(describe(problem))
            raise CommandError(f"{len(result.problems)} problem(s) found; nothing was written")
        out = Path(options["out"])
        (out / "crfs").mkdir(parents=True, exist_ok=True)
        for relative, text in result.files.items():
            (out / relative).write_text(text, encoding="utf-8")
        for title, findings in (("Not imported", result.not_imported), ("Not translated", result.untranslated), ("Notes", result.notes)):
            if findings:
                self.stdout.write(f"{title}:")
                for finding in findings:
                    self.stdout.write(f"  {finding}")
        self.stdout.write(
            f"Rules translated: {result.rules_translated} of {result.rules_total} "
            f"(branching logic and calculations); {len(result.untranslated)} listed above."
        )
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {out / (result.trial_code.lower() + '.yaml')} and {len(result.crfs)} CRF file(s) "
            f"({result.fields_imported} items, visits {', '.join(result.visits)}). Check the TODO comments, then: "
            f"manage.py load_trials {out}"
        ))
