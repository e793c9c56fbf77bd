from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EproConfig(AppConfig):
    name = "trials.epro"
    label = "epro"
    verbose_name = _("Participant-reported outcomes")

    def ready(self) -> None:
        # The CRF page and the staff save ask whether the participant answered an entry herself.
        from trials.epro import reminders, services
        from trials.visits import hooks

        hooks.entry_respondent.register(services.entry_source)
        hooks.entry_respondent_annotations.register(services.entry_source_annotations)
        # The coordinator's daily digest lists unanswered personal links, once each.
        hooks.digest_link_recipients.register(reminders.digest_recipients)
        hooks.digest_pro_links.register(reminders.digest_lines)
