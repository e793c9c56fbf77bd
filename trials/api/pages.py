"""The user's API tokens page (in her account): create one (shown once), list, revoke."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from trials.api.forms import TokenCreateForm
from trials.api.models import ApiToken
from trials.api.services import token_create, token_revoke
from trials.protocol.selectors import trials_for_user


@login_required
def tokens_page(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST or None, trials=trials_for_user(request.user).order_by("code"))
    created = None
    if request.method == "POST" and form.is_valid():
        created = token_create(
            user=request.user, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"],
            trials=form.cleaned_data["trials"], days=form.cleaned_data["days"],
        )
        messages.success(request, _("Token created. Copy it now: it is not shown again."))
        form = TokenCreateForm(trials=trials_for_user(request.user).order_by("code"))
    tokens = ApiToken.objects.filter(user=request.user).prefetch_related("trials")
    response = render(request, "api/tokens.html", {"form": form, "tokens": tokens, "created": created})
    response["Cache-Control"] = "no-store"  # the new token is on this page once
    return response


@login_required
@require_POST
def token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    token_revoke(user=request.user, token=token)
    messages.success(request, _("Token %(prefix)s… revoked: it no longer works.") % {"prefix": token.prefix})
    return redirect("api_tokens")


@login_required
def docs_page(request: HttpRequest) -> HttpResponse:
    return render(request, "api/docs.html")
