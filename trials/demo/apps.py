from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DemoConfig(AppConfig):
    """Demo accounts, synthetic participants and synthetic trials (load_demo, synth_trial): the top
    layer, which may use every app and which no app imports."""

    name = "trials.demo"
    label = "demo"
    verbose_name = _("Demo data")
