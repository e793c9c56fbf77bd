from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProtocolConfig(AppConfig):
    name = "trials.protocol"
    label = "protocol"
    verbose_name = _("Protocol")

    def ready(self) -> None:
        from edc.ops import hooks
        from trials.protocol import selectors

        hooks.user_default_language.register(selectors.user_site_language)
        from trials.protocol import trial_cache  # noqa: F401 - connects the cache's invalidation
