from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VisitsConfig(AppConfig):
    name = "trials.visits"
    label = "visits"
    verbose_name = _("Visits and CRF data")

    def ready(self) -> None:
        # Enrolment and anchor dates make and move visits; eligibility reads the screening CRFs
        # (trials.participants.hooks: participants sit below visits).
        from trials.participants import hooks
        from trials.visits import schedule, selectors

        hooks.schedule_generate.register(schedule.schedule_generate)
        hooks.schedule_recompute.register(schedule.schedule_recompute)
        hooks.screening_entries.register(selectors.screening_entries)
        hooks.medication_log.register(selectors.medication_log)
