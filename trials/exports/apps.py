from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExportsConfig(AppConfig):
    name = "trials.exports"
    label = "exports"
    verbose_name = _("Exports")

    def ready(self) -> None:
        from trials.build import hooks as build_hooks
        from trials.exports import services

        build_hooks.document_downloaded.register(services.document_download_record)
