from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RecordsConfig(AppConfig):
    """Locks and freezes, and what a change of data does to its review (signatures broken, SDV
    reset): the rules every writer of trial data obeys, below the writers."""

    name = "trials.records"
    label = "records"
    verbose_name = _("Records")
