from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EproConfig(AppConfig):
    name = "trials.epro"
    label = "epro"
    verbose_name = _("Participant-reported outcomes")
