"""Self-service pages: change one's password (required after an administrator set it)."""

from django.contrib.auth import views as auth_views
from django.urls import reverse_lazy

from trials.accounts.middleware import SESSION_KEY
from trials.accounts.services import password_changed


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, which also lifts the "change at next login" requirement."""

    success_url = reverse_lazy("password_change_done")

    def form_valid(self, form):  # noqa: ANN001, ANN201
        response = super().form_valid(form)
        password_changed(user=form.user)
        self.request.session[SESSION_KEY] = False
        return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset by e-mailed link (single use: the token is bound to the password it replaces)."""

    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):  # noqa: ANN001, ANN201
        response = super().form_valid(form)
        password_changed(user=form.user)
        return response
