"""manage.py import_ctgov FILE… --out DIR: ClinicalTrials.gov records -> trial skeleton YAML, checked by the loader."""

from django.core.management.base import BaseCommand

from trials.protocol.imports.common import ImportCommand
from trials.protocol.imports.ctgov import import_ctgov


class Command(ImportCommand, BaseCommand):
    help = (
        "Import ClinicalTrials.gov records (API v2 JSON, or the legacy XML) as trial skeletons: identifiers, "
        "design, arms, masking, criteria, sites, outcome time frames as proposed visits, with # TODO: and "
        "# Assumption: comments. The YAML is validated by the loader and written under --out only when "
        "everything is valid; review it, then load it with load_trials."
    )
    files_help = "ClinicalTrials.gov record files (.json or legacy .xml)"
    importer = staticmethod(import_ctgov)
