from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "trials.accounts"
    label = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        # Django and django-axes announce logins, logouts, failures and lockouts only as signals:
        # the receivers write the login audit (trials.accounts.services.login_event_record).
        from trials.accounts import receivers  # noqa: F401
