from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SafetyConfig(AppConfig):
    name = "trials.safety"
    label = "safety"
    verbose_name = _("Safety")

    def ready(self) -> None:
        from trials.safety import tasks_clocks  # noqa: F401 - registers the clock task with Celery
