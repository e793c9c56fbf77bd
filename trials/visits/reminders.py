"""The coordinator's daily reminder digest: visits opening within 7 days, overdue visits, visits
with required CRFs missing. Each (visit, reason, site-local day) is sent at most once: the log row
is written in the same transaction that decides to send, under a unique key."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q

from edc.ops.services import user_language
from django.utils import translation
from django.utils.translation import gettext as _

from trials.participants.selectors import participants_for_user
from trials.protocol.models import Role, VisitCrf
from trials.protocol.selectors import study_roles_for_user, user_site_language
from trials.visits import hooks
from trials.visits.models import CrfEntry, EntryStatus, ReminderLog, ReminderReason, Visit, VisitStatus
from trials.visits.schedule import SCHEDULED_STATUSES


def coordinators_to_remind() -> list[int]:
    """Active users with an active coordinator role, and staff with unanswered personal links to hear about."""
    ids = list(
        get_user_model().objects.filter(is_active=True, study_roles__role=Role.COORDINATOR, study_roles__is_active=True)
        .distinct().values_list("pk", flat=True)
    )
    return ids + sorted(set(hooks.digest_link_recipients()) - set(ids))


def reminder_items(user) -> list[tuple[Visit, str]]:  # noqa: ANN001
    """(visit, reason) the coordinator should hear about today, by each site's local date."""
    sites = study_roles_for_user(user).filter(role=Role.COORDINATOR).values_list("site", "trial")
    site_ids = {site for site, _trial in sites if site}
    all_sites_trials = {trial for site, trial in sites if not site}
    if not site_ids and not all_sites_trials:
        return []
    missing_required = VisitCrf.objects.filter(visit_definition=OuterRef("definition"), required=True, is_active=True).exclude(
        Exists(CrfEntry.objects.filter(visit=OuterRef(OuterRef("pk")), crf_code=OuterRef("crf_code"), status=EntryStatus.COMPLETE))
    )
    visits = (
        Visit.objects.filter(participant__in=participants_for_user(user), participant__status__in=SCHEDULED_STATUSES)
        .filter(Q(participant__site__in=site_ids) | Q(participant__trial__in=all_sites_trials))
        .exclude(status__in=[VisitStatus.MISSED, VisitStatus.NOT_DONE])
        .annotate(has_data=Exists(CrfEntry.objects.filter(visit=OuterRef("pk"))), missing_crfs=Exists(missing_required))
        .select_related("participant__site", "participant__trial")
        .order_by("participant__site__code", "window_start", "participant__screening_number")
    )
    items = []
    for visit in visits:
        today = visit.participant.site.today()
        if visit.status == VisitStatus.OVERDUE and not visit.has_data:
            items.append((visit, ReminderReason.OVERDUE))
        elif visit.status == VisitStatus.UPCOMING and visit.window_start and today < visit.window_start <= today + timedelta(days=7):
            items.append((visit, ReminderReason.OPENING))
        if visit.missing_crfs and (visit.has_data or visit.status == VisitStatus.DONE):
            items.append((visit, ReminderReason.MISSING_CRFS))
    return items


def reminder_digest_send(user_id: int) -> int:
    """Send the user's digest of what was not sent yet today; returns the number of items sent."""
    user = get_user_model().objects.get(pk=user_id)
    if not user.email:
        return 0
    # In the recipient's language (hers, else her sites'), whatever thread sends it: the e-mail and
    # the audit reasons it stamps on her links.
    with translation.override(user_language(user) or user_site_language(user) or settings.LANGUAGE_CODE):
        return _digest_send(user)


def _digest_send(user) -> int:  # noqa: ANN001
    try:
        with transaction.atomic():
            items = reminder_items(user)
            keys = {(visit.pk, reason, visit.participant.site.today()) for visit, reason in items}
            sent = set(
                ReminderLog.objects.filter(user=user, visit__in=[k[0] for k in keys]).values_list("visit_id", "reason", "day")
            )
            new = [(visit, reason) for visit, reason in items if (visit.pk, reason, visit.participant.site.today()) not in sent]
            # Unanswered personal questionnaire links (trials.epro), each listed once ever, stamped here.
            link_lines = hooks.digest_pro_links(user=user)
            if not new and not link_lines:
                return 0
            ReminderLog.objects.bulk_create(
                [ReminderLog(user=user, visit=visit, reason=reason, day=visit.participant.site.today()) for visit, reason in new]
            )
            subject, body = _digest(user, new, link_lines)
            transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]))
    except IntegrityError:
        return 0  # a concurrent run logged (and sends) these: never twice
    return len(new) + len(link_lines)


def _digest(user, items: list[tuple[Visit, str]], link_lines: list[str] = ()) -> tuple[str, str]:  # noqa: ANN001
    lines = [_("Hello %(name)s,") % {"name": user.get_full_name() or user.username}, ""]
    for reason in ReminderReason:
        chosen = [visit for visit, r in items if r == reason]
        if not chosen:
            continue
        lines.append(f"{reason.label}:")
        for visit in chosen:
            window = f"{visit.window_start:%Y-%m-%d} – {visit.window_end:%Y-%m-%d}" if visit.window_start else "—"
            lines.append(f"  - {visit.participant.trial.code} {visit.participant.site.code} {visit.participant.number}: {visit.label} ({window})")
        lines.append("")
    if link_lines:
        lines.append(_("Questionnaire links not answered yet (each listed once)") + ":")
        lines.extend([*(f"  - {line}" for line in link_lines), ""])
    lines.append(_("This digest is sent once a day, with each reminder at most once a day."))
    return _("[EDC] %(n)s visit reminder(s)") % {"n": len(items) + len(link_lines)}, "\n".join(lines)
