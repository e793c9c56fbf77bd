"""Participant-reported outcomes: which questionnaires a participant answers, personal links, saving her answers.

The answers are saved through `trials.visits.services.crf_entry_save_answers` (the CRF's own
validation and scores), as the system account on the participant's behalf, with a reason naming the
participant as the source and the completion time; `ProResponse` records the same facts as data and
makes the entry read-only for staff (docs/architecture.md, "ePRO").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from edc.audit import audited_save, system_user
from trials.accounts.services import PIN_PATTERN, has_pin, pin_check
from trials.epro.models import Mode, ProLink, ProResponse
from trials.participants.selectors import user_enters_data_at
from trials.protocol.engine import CrfSchema, schema_for
from trials.visits.models import CrfEntry, EntryStatus, Visit, VisitStatus
from trials.visits.services import crf_entry_for, crf_entry_save_answers

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, 43 characters
# Wrong tokens tried from one address before it is refused for RATE_WINDOW seconds.
RATE_LIMIT = 10
RATE_WINDOW = 600
CLOSED_VISITS = {VisitStatus.MISSED, VisitStatus.NOT_DONE}


def token_hash(token: str) -> str:
    """What is stored and looked up: the token itself never reaches the database."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- What the participant answers ---------------------------------------------------------


@dataclass
class Questionnaire:
    crf_code: str
    schema: CrfSchema
    entry: CrfEntry  # unsaved when not started

    @property
    def done(self) -> bool:
        return self.entry.pk is not None and self.entry.status == EntryStatus.COMPLETE


def visit_questionnaires(visit: Visit) -> list[Questionnaire]:
    """The visit's participant-reported CRFs (`respondent: participant`), in the visit's order."""
    if visit.definition is None:
        return []
    found = []
    for link in visit.definition.visit_crfs.filter(is_active=True).select_related("crf").order_by("order"):
        if link.crf.definition.get("respondent") != "participant":
            continue
        entry = crf_entry_for(visit, link.crf_code)
        # Texts in the page's language (the participant's: trials.epro.views), codes unchanged.
        found.append(Questionnaire(link.crf_code, schema_for(entry.crf, get_language()), entry))
    return found


def due_questionnaires(visit: Visit) -> list[Questionnaire]:
    """What the participant still has to answer at this visit (participant mode shows only these)."""
    return [q for q in visit_questionnaires(visit) if not q.done]


def questionnaire(visit: Visit, crf_code: str) -> Questionnaire:
    for found in visit_questionnaires(visit):
        if found.crf_code == crf_code:
            return found
    raise ValidationError(_("%(code)s is not a participant questionnaire of this visit.") % {"code": crf_code})


def participant_initials(participant) -> str:  # noqa: ANN001
    """Her initials for her own questionnaire pages, only if the trial file allows it
    (`epro: {show_initials: true}`): the `initials` answer of her CRFs (DEMOG), else nothing."""
    if not (participant.trial.epro_settings or {}).get("show_initials"):
        return ""
    answers = (
        CrfEntry.objects.filter(participant=participant, answers__has_key="initials")
        .order_by("-pk").values_list("answers", flat=True).first()
    )
    value = (answers or {}).get("initials")
    return value.strip() if isinstance(value, str) else ""


# --- Personal links -------------------------------------------------------------------------


def link_window(visit: Visit) -> tuple[datetime, datetime]:
    """From the opening to the end of the closing day of the visit's window, in the site's time
    zone (a visit without a window: today, at the site)."""
    zone = ZoneInfo(visit.participant.site.time_zone)
    today = timezone.localdate(timezone=zone)
    first = visit.window_start or visit.planned_date or today
    last = visit.window_end or visit.planned_date or today
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def _check_staff(user, visit: Visit) -> None:  # noqa: ANN001
    if not user_enters_data_at(user, visit.participant):
        raise PermissionDenied(_("You do not enter data at this site."))
    if visit.status in CLOSED_VISITS:
        raise ValidationError(_("This visit is marked missed or not done."))


@transaction.atomic
def link_create(*, user, visit: Visit, crf_code: str, email: str = "", base_url: str = "") -> tuple[ProLink, str]:  # noqa: ANN001
    """A personal link to one questionnaire; returns the link and its token (shown once, never stored).

    `email`: sent there through Django's e-mail backend and not kept (only the time it was sent).
    `base_url`: the site's address the link is built on (the page passes the request's)."""
    _check_staff(user, visit)
    found = questionnaire(visit, crf_code)
    if found.done:
        raise ValidationError(_("This questionnaire is already answered."))
    valid_from, expires_at = link_window(visit)
    if timezone.now() >= expires_at:
        raise ValidationError(_("The visit's window has closed: a link would already be expired."))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = ProLink(
        participant=visit.participant, visit=visit, crf_code=crf_code, token_sha256=token_hash(token),
        valid_from=valid_from, expires_at=expires_at, created_by=user,
    )
    audited_save(link, user=user, reason=_("Personal questionnaire link created"))
    if email:
        url = base_url.rstrip("/") + link_path(token)
        send_mail(
            subject=_("Your questionnaire: %(title)s") % {"title": found.schema.title},
            message=_(
                "Please answer the questionnaire \"%(title)s\" for your study visit.\n\n%(url)s\n\n"
                "This personal link works once, until %(until)s (%(zone)s time). Do not share it."
            ) % {
                "title": found.schema.title, "url": url, "zone": visit.participant.site.time_zone,
                "until": (expires_at - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M"),
            },
            from_email=None, recipient_list=[email],
        )
        link.emailed_at = timezone.now()
        audited_save(link, user=user, reason=_("Personal questionnaire link e-mailed"))
    return link, token


@transaction.atomic
def link_revoke(*, user, link: ProLink, reason: str) -> ProLink:  # noqa: ANN001
    """Withdraw an unanswered personal link, with a reason (audited); it then answers 410 to the participant."""
    _check_staff(user, link.visit)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why the link is withdrawn."))
    link = ProLink.objects.select_for_update().get(pk=link.pk)
    if link.used_at is not None:
        raise ValidationError(_("This link was answered: an answered questionnaire is not withdrawn (raise a query instead)."))
    if link.revoked:
        raise ValidationError(_("This link is already withdrawn."))
    link.revoked, link.revoked_at, link.revoked_by, link.revoked_reason = True, timezone.now(), user, reason
    audited_save(link, user=user, reason=_("Personal questionnaire link withdrawn: %(reason)s") % {"reason": reason})
    return link


def link_path(token: str) -> str:
    from django.urls import reverse

    return reverse("epro_link", args=[token])


class LinkNotFound(Exception):
    """No such link (a wrong or mistyped token): 404."""


class LinkGone(Exception):
    """The link existed and may no longer be used (used, expired, revoked, not open yet): 410."""

    def __init__(self, reason: str, link: ProLink | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # lazy: read in the language of the page that shows it (the participant's)
        self.link = link


def rate_limited(key: str) -> bool:
    """True when `key` (an address) has tried RATE_LIMIT wrong tokens within RATE_WINDOW seconds."""
    return (cache.get(f"epro:fail:{key}") or 0) >= RATE_LIMIT


def _count_failure(key: str) -> None:
    cache.add(f"epro:fail:{key}", 0, RATE_WINDOW)
    try:
        cache.incr(f"epro:fail:{key}")
    except ValueError:  # expired between add and incr
        cache.set(f"epro:fail:{key}", 1, RATE_WINDOW)


def link_for_token(token: str, *, client: str = "") -> ProLink:
    """The usable link of a token, or LinkNotFound / LinkGone. Failures count against `client`."""
    link = (
        ProLink.objects.select_related("participant__site", "participant__trial", "visit__definition")
        .filter(token_sha256=token_hash(token or "")).first()
    )
    if link is None:
        _count_failure(client)
        raise LinkNotFound
    now = timezone.now()
    answered = CrfEntry.objects.filter(visit=link.visit_id, crf_code=link.crf_code, status=EntryStatus.COMPLETE).exists()
    if link.used_at is not None or answered:
        raise LinkGone(gettext_lazy("This questionnaire has already been answered. Thank you."), link)
    if link.revoked or link.visit.status in CLOSED_VISITS:
        raise LinkGone(gettext_lazy("This link has been withdrawn by the study team."), link)
    if now >= link.expires_at:
        raise LinkGone(gettext_lazy("This link has expired. Please contact the study team."), link)
    if now < link.valid_from:
        raise LinkGone(gettext_lazy("This link is not open yet. Please use it on the day of your visit."), link)
    return link


LINK_STATES = {
    "used": gettext_lazy("answered"),
    "expired": gettext_lazy("expired, not answered"),
    "late": gettext_lazy("late: not answered, the visit's planned date has passed"),
    "pending": gettext_lazy("not open yet"),
    "open": gettext_lazy("open"),
    "revoked": gettext_lazy("withdrawn"),
}


def link_state(link: ProLink, *, now: datetime | None = None) -> str:
    """For the coordinator: used, expired, late (unanswered after the planned date), pending, open."""
    now = now or timezone.now()
    if link.used_at is not None:
        return "used"
    if link.revoked:
        return "revoked"
    if now >= link.expires_at:
        return "expired"
    if now < link.valid_from:
        return "pending"
    planned = link.visit.planned_date
    if planned and timezone.localdate(now, timezone=ZoneInfo(link.participant.site.time_zone)) > planned:
        return "late"
    return "open"


# --- Saving the participant's answers -----------------------------------------------------


@transaction.atomic
def pro_submit(
    *, visit: Visit, crf_code: str, answers: dict, missing: dict | None = None, mode: str,
    link: ProLink | None = None, handed_over_by=None,  # noqa: ANN001
) -> CrfEntry:
    """Save the participant's answers as the visit's entry, complete, with the participant as source.

    Same validator and scores as a staff save (any error raises ValidationError, nothing written).
    A link is checked again under a row lock, so two submissions of one link save once."""
    if mode == Mode.LINK:
        link = ProLink.objects.select_for_update().get(pk=link.pk)
        if link.used_at is not None:
            raise LinkGone(_("This questionnaire has already been answered. Thank you."))
        if link.revoked:
            raise LinkGone(_("This link has been withdrawn by the study team."))
        if timezone.now() >= link.expires_at:
            raise LinkGone(_("This link has expired. Please contact the study team."))
    completed_at = timezone.now()
    how = Mode(mode).label
    reason = _("Answered by the participant (%(how)s), completed %(when)s UTC") % {
        "how": how, "when": completed_at.strftime("%Y-%m-%d %H:%M:%S"),
    }
    entry = crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code=crf_code, answers=answers, missing=missing, complete=True,
        reason=reason, participant_source=True, language=get_language(),  # her page's language, for any check's message
    )
    response = ProResponse.objects.filter(entry=entry).first() or ProResponse(entry=entry)
    response.mode, response.link, response.handed_over_by, response.completed_at = mode, link, handed_over_by, completed_at
    # Who: the participant has no account; the system user stands for her (as on the entry), the
    # staff member who handed the tablet over is recorded on the response.
    audited_save(response, user=handed_over_by or system_user(), reason=reason)
    if link is not None:
        link.used_at = completed_at
        audited_save(link, user=system_user(), reason=reason)
    return entry


def entry_source(entry: CrfEntry) -> dict | None:
    """visits.hooks.entry_respondent: how and when the participant answered this entry, if she did.
    An entry read with `entry_source_annotations` says so itself when she did not (no query)."""
    if "page_respondent_id" in entry.__dict__ and entry.page_respondent_id is None:
        return None
    response = ProResponse.objects.filter(entry=entry.pk).first()
    if response is None:
        return None
    return {"mode": response.mode, "mode_label": response.get_mode_display(), "completed_at": response.completed_at}


def entry_source_annotations(entry_column: str) -> dict:
    """visits.hooks.entry_respondent_annotations: the id of the participant's response to the entry
    (`entry_column`: the outer CrfEntry query's id column), NULL for a staff entry."""
    from django.db.models import IntegerField
    from django.db.models.expressions import RawSQL

    sql = f"(SELECT r.id FROM {ProResponse._meta.db_table} r WHERE r.entry_id = {entry_column} ORDER BY r.id LIMIT 1)"
    return {"page_respondent_id": RawSQL(sql, [], output_field=IntegerField())}


def tablet_exit_allowed(user, secret: str, *, request=None) -> bool:  # noqa: ANN001
    """The staff member who handed the tablet over takes it back with her own PIN or password.

    4-8 digits are tried as her staff PIN first (wrong PINs counted, PinLocked after too many),
    then as her password; anything else is tried as her password only."""
    if not secret or not user.is_authenticated:
        return False
    if PIN_PATTERN.match(secret) and has_pin(user):
        if user.check_password(secret):  # a password of digits only (validators normally refuse it)
            return True
        return pin_check(user=user, pin=secret, request=request)
    return user.check_password(secret)


def qr_svg(url: str) -> str:
    """The link as an inline SVG QR code (to print or show at the site)."""
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12, border=2)
    return image.to_string(encoding="unicode")

