"""manage.py import_odm FILE… --out DIR: CDISC ODM metadata -> CRF and trial YAML, checked by the loader."""

from django.core.management.base import BaseCommand

from trials.protocol.imports.common import ImportCommand
from trials.protocol.imports.odm import import_odm


class Command(ImportCommand, BaseCommand):
    help = (
        "Import CDISC ODM 1.3.2 metadata (FormDef, ItemGroupDef, ItemDef, CodeList, RangeCheck, MethodDef, "
        "ConditionDef, StudyEventDef) as CRF and trial YAML. The YAML is validated by the loader and written "
        "under --out only when everything is valid; load it with load_trials."
    )
    files_help = "ODM XML files"
    importer = staticmethod(import_odm)
