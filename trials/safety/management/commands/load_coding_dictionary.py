"""manage.py load_coding_dictionary FILE --dictionary NAME --version V: load coding terms (CSV)."""

from django.core.management.base import BaseCommand, CommandError

from trials.safety.coding import CodingLoadError, coding_dictionary_load


class Command(BaseCommand):
    help = "Load a coding dictionary (CSV: llt_code, llt, pt_code, pt, soc_code, soc); all or nothing."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dictionary", required=True, help="e.g. MedDRA")
        parser.add_argument("--version", dest="dict_version", required=True, help="e.g. 27.1")

    def handle(self, *args, **options):
        try:
            created = coding_dictionary_load(options["path"], dictionary=options["dictionary"], version=options["dict_version"])
        except CodingLoadError as error:
            raise CommandError("nothing was loaded:\n" + "\n".join(error.problems)) from None
        self.stdout.write(self.style.SUCCESS(f"{created} new terms."))
