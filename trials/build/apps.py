from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BuildConfig(AppConfig):
    name = "trials.build"
    label = "build"
    verbose_name = _("Study build")
