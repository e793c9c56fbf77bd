"""Study pages of signatures and deviations: the investigator signs a visit or a casebook; the
site's staff and monitors keep the participant's deviation log. Locks are applied in the admin
(locks/admin.py); here is the helper that shows them on the participant's dashboard."""

from __future__ import annotations


from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from edc.forms import add_service_errors
from trials.accounts.services import SIGNED_IN_SESSION
from trials.monitoring.deviations import services as deviations
from trials.monitoring.signatures import services as signatures
from trials.monitoring.locks.forms import DeviationDecisionForm, DeviationForm, SignForm
from trials.records.locks import lock_covering, lock_message
from trials.monitoring.models import DeviationState, ProtocolDeviation
from trials.records.models import SIGNATURE_MEANING, Signature, SignatureState
from trials.participants.selectors import participants_for_user
from trials.protocol.models import VisitCrf
from trials.visits.models import CrfEntry, Visit
from trials.visits.selectors import visit_for_user

# --- What the participant, visit and CRF pages show ------------------------------------------


def dashboard_review(participant, grid: list[dict]) -> dict:  # noqa: ANN001
    """Locks and signatures for the participant's dashboard, in one query: each grid row gets its
    visit's `lock` and `signature`, each cell its entry's `lock`."""
    state = signatures.participant_review_state(participant)
    for row in grid:
        row["lock"] = state["visit_locks"].get(row["visit"].pk)
        row["signature"] = state["visit_signatures"].get(row["visit"].pk)
        for cell in row["cells"]:
            entry = cell.get("entry")
            cell["lock"] = state["entry_locks"].get(entry.pk) if entry is not None else None
    casebook_lock = state["casebook_lock"]
    return {
        "casebook_lock": casebook_lock,
        "casebook_lock_message": lock_message(casebook_lock) if casebook_lock else "",
        "casebook_signature": state["casebook_signature"],
    }


# --- Signatures ------------------------------------------------------------------------------


def _participant(request: HttpRequest, pk: int):  # noqa: ANN202
    participant = participants_for_user(request.user).filter(pk=pk).first()
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    return participant


def _what_is_signed(participant, visit: Visit | None) -> list[dict]:  # noqa: ANN001
    """The visits (one, or all of the casebook) with their CRFs and statuses, as the page lists them."""
    visits = (
        [visit]
        if visit is not None
        else list(participant.visits.select_related("definition").order_by("order", "sequence"))
    )
    entries: dict[int, dict[str, CrfEntry]] = {}
    for entry in CrfEntry.objects.filter(visit__in=visits).only(
        "id", "visit_id", "crf_code", "status", "revision", "updated_at"
    ):
        entries.setdefault(entry.visit_id, {})[entry.crf_code] = entry
    links: dict[int, list[VisitCrf]] = {}
    for link in VisitCrf.objects.filter(
        visit_definition__in={v.definition_id for v in visits if v.definition_id}, is_active=True
    ).order_by("order"):
        links.setdefault(link.visit_definition_id, []).append(link)
    rows = []
    for item in visits:
        crfs = [
            {"code": link.crf_code, "required": link.required, "entry": entries.get(item.pk, {}).get(link.crf_code)}
            for link in links.get(item.definition_id, [])
        ]
        rows.append({"visit": item, "crfs": crfs})
    return rows


def _sign_page(request: HttpRequest, participant, visit: Visit | None) -> HttpResponse:  # noqa: ANN001
    form = SignForm(request.POST or None)
    first_signing = not request.session.get(SIGNED_IN_SESSION)
    if not first_signing:
        del form.fields["username"]
    may_sign = signatures.user_signs_for(request.user, participant)
    if request.method == "POST" and may_sign and form.is_valid():
        try:
            if first_signing and form.cleaned_data["username"].strip() != request.user.get_username():
                raise ValidationError({"username": _("This is not your user name.")})
            signatures.signature_sign(
                participant=participant, visit=visit, user=request.user, password=form.cleaned_data["password"]
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            request.session[SIGNED_IN_SESSION] = True
            messages.success(request, _("Signed. Any later change to these data will break the signature."))
            return redirect(request.path)
    elif request.method == "POST" and not may_sign:
        form.add_error(None, _("Only an investigator of site %(site)s signs.") % {"site": participant.site.code})
    history = (
        Signature.objects.filter(participant=participant, visit=visit)
        .select_related("signer")
        .order_by("-signed_at", "-pk")
    )
    lock = lock_covering(trial=participant.trial_id, participant=participant, visit=visit)
    return render(
        request,
        "monitoring/sign_page.html",
        {
            "participant": participant,
            "visit": visit,
            "form": form,
            "may_sign": may_sign,
            "title": _("Visit signature") if visit else _("Casebook signature"),
            "blockers": signatures.signature_blockers(participant, visit),
            "signed": _what_is_signed(participant, visit),
            "history": history,
            "current": next((s for s in history if s.state == SignatureState.VALID), None),
            "meaning": SIGNATURE_MEANING,
            "printed_name": request.user.get_full_name() or request.user.username,
            "lock": lock,
            "lock_message": lock_message(lock) if lock else "",
            "aes": participant.adverse_events.order_by("number") if visit is None else None,
        },
    )


@login_required
def signature_visit(request: HttpRequest, visit_pk: int) -> HttpResponse:
    """The investigator's signature of one visit (and its history)."""
    visit = visit_for_user(request.user, visit_pk)
    if visit is None:
        raise Http404(_("No such visit in your sites."))
    return _sign_page(request, visit.participant, visit)


@login_required
def signature_casebook(request: HttpRequest, pk: int) -> HttpResponse:
    """The investigator's signature of the participant's whole casebook (and its history)."""
    return _sign_page(request, _participant(request, pk), None)


# --- Protocol deviations ---------------------------------------------------------------------


@login_required
def deviation_log(request: HttpRequest, pk: int) -> HttpResponse:
    """A participant's protocol deviations, and the form to record one."""
    participant = _participant(request, pk)
    may_log = deviations.user_logs_deviations(request.user, participant)
    form = DeviationForm(
        request.POST or None, participant=participant, initial={"identified_on": participant.site.today()}
    )
    if request.method == "POST" and may_log and form.is_valid():
        try:
            deviations.deviation_record(participant=participant, user=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Protocol deviation recorded."))
            return redirect("deviation_log", participant.pk)
    elif request.method == "POST" and not may_log:
        form.add_error(None, _("Only the coordinators, investigators and monitors of the site log deviations."))
    return render(
        request,
        "monitoring/deviation_log.html",
        {
            "participant": participant,
            "form": form,
            "may_log": may_log,
            "may_dismiss": deviations.user_dismisses_deviations(request.user, participant),
            "deviations": deviations.participant_deviations(participant),
            "title": _("Protocol deviations"),
            "proposed": DeviationState.PROPOSED,
        },
    )


@login_required
@require_POST
def deviation_decide(request: HttpRequest, pk: int, deviation_pk: int) -> HttpResponse:
    """Confirm or dismiss a proposed deviation."""
    participant = _participant(request, pk)
    deviation = ProtocolDeviation.objects.filter(pk=deviation_pk, participant=participant).first()
    if deviation is None:
        raise Http404(_("No such deviation."))
    form = DeviationDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose to confirm or dismiss."))
        return redirect("deviation_log", participant.pk)
    data = form.cleaned_data
    try:
        if data["decision"] == "confirm":
            deviations.deviation_confirm(
                deviation=deviation,
                user=request.user,
                severity=data["severity"] or None,
                corrective_action=data["corrective_action"],
                reason=data["reason"],
            )
            messages.success(request, _("Deviation confirmed."))
        else:
            deviations.deviation_dismiss(deviation=deviation, user=request.user, reason=data["reason"])
            messages.success(request, _("Deviation dismissed."))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("deviation_log", participant.pk)
