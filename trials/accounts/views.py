"""Self-service pages: change one's password (required after an administrator set it), keep a
session alive, end one's other sessions."""

import base64

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from trials.accounts import twofactor
from trials.accounts.services import MUST_CHANGE as SESSION_KEY
from trials.accounts.services import has_pin, password_changed, pin_remove, pin_set, sessions_end_others


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


@require_POST
def session_keepalive(request: HttpRequest) -> HttpResponse:
    """"Stay logged in" of the idle warning: the middleware counts this request as activity."""
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    return HttpResponse(status=204)


@login_required
def sessions_page(request: HttpRequest) -> HttpResponse:
    """The user's account page: change the password, end every other session of hers."""
    if request.method == "POST":
        sessions_end_others(user=request.user, request=request)
        messages.success(request, _("Your other sessions are ended: they ask for a login at their next click."))
        return redirect("account")
    return render(request, "registration/account.html")


class TokenForm(forms.Form):
    token = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text=gettext_lazy("The 6-digit code your authenticator app shows now, or one of your recovery codes."),
    )


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("home")


@login_required
def second_factor(request: HttpRequest) -> HttpResponse:
    """After the password: the code of the user's authenticator (or a recovery code)."""
    if not twofactor.has_confirmed_device(request.user):
        return redirect(f"{reverse('second_factor_setup')}?next={_next(request)}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if twofactor.second_factor_verify(request=request, token=form.cleaned_data["token"]):
            return redirect(_next(request))
        form.add_error("token", _("This code is not valid. Wait for the next one and try again."))
    return render(request, "registration/second_factor.html", {"form": form, "next": _next(request)})


@login_required
def second_factor_setup(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator app: scan the QR code (or type the key), confirm with one code; the
    recovery codes are shown once."""
    if twofactor.has_confirmed_device(request.user) and not request.user.is_verified():
        return redirect(f"{reverse('second_factor')}?next={_next(request)}")
    device = twofactor.totp_device_pending(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = twofactor.totp_enrol_confirm(request=request, device=device, token=form.cleaned_data["token"])
        if codes is not None:
            return render(request, "registration/second_factor_codes.html", {"codes": codes, "next": _next(request)})
        form.add_error("token", _("This code is not valid: check the time of your phone and try the next code."))
    uri = device.config_url
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return render(request, "registration/second_factor_setup.html", {
        "form": form, "next": _next(request), "otpauth_uri": uri, "qr_svg": mark_safe(image.to_string(encoding="unicode")),  # noqa: S308 - generated SVG, no user text
        "key": base64.b32encode(device.bin_key).decode(),
    })


class PinForm(forms.Form):
    pin = forms.CharField(
        label=gettext_lazy("New PIN (4 to 8 digits)"), min_length=4, max_length=8,
        widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off", "pattern": "[0-9]{4,8}"}),
    )
    pin_again = forms.CharField(
        label=gettext_lazy("The same PIN again"), max_length=8,
        widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off", "pattern": "[0-9]{4,8}"}),
    )
    password = forms.CharField(label=gettext_lazy("Your password"), widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def clean(self):  # noqa: ANN201
        data = super().clean()
        if data.get("pin") and data.get("pin_again") is not None and data["pin"] != data.get("pin_again"):
            self.add_error("pin_again", _("The two PINs differ."))
        return data


@login_required
def pin_page(request: HttpRequest) -> HttpResponse:
    """Set, replace or remove one's staff PIN (to take a tablet back from participant mode)."""
    form = PinForm(request.POST or None) if request.POST.get("action") != "remove" else PinForm()
    if request.method == "POST":
        if request.POST.get("action") == "remove":
            pin_remove(user=request.user, request=request)
            messages.success(request, _("Your PIN is removed: you take a tablet back with your password."))
            return redirect("account")
        if form.is_valid():
            try:
                pin_set(user=request.user, pin=form.cleaned_data["pin"], password=form.cleaned_data["password"], request=request)
            except ValidationError as error:
                for name, problems in error.message_dict.items():
                    form.add_error(name if name in form.fields else None, problems)
            else:
                messages.success(request, _("Your PIN is set: you may take a tablet back from participant mode with it."))
                return redirect("account")
    return render(request, "registration/pin.html", {"form": form, "has_pin": has_pin(request.user)}, status=400 if form.errors else 200)
