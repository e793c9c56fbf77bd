from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SafetyConfig(AppConfig):
    name = "trials.safety"
    label = "safety"
    verbose_name = _("Safety")

    def ready(self) -> None:
        from trials.safety import tasks_clocks  # noqa: F401 - registers the clock task with Celery

        # The 3+3 rule counts DLT adverse events for the dose cohorts (trials.participants.hooks:
        # participants sit below safety).
        from trials.participants import hooks
        from trials.safety import escalation

        hooks.dlt_replaced_by_cohort.register(escalation.replaced_by_cohort)
        hooks.cohort_review.register(escalation.cohort_review)
