"""Reminders for unanswered personal links, listed once in the staff member's daily digest.

The digest itself is trials.visits.reminders (one e-mail a day per coordinator); it asks this module,
through two hooks (trials.visits.hooks), who has links to hear about and which lines to add. A link
is listed in the digest of the staff member who created it (she gave it to the participant), once:
`ProLink.reminded_at` is stamped in the digest's own transaction, so a second run, a redelivered
task or a concurrent digest never lists it again, and a digest that fails lists nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import audited_save, system_user
from trials.epro.models import ProLink
from trials.visits.models import CrfEntry, EntryStatus, VisitStatus

CREATED_LONG_AGO = timedelta(hours=24)


def links_to_remind(*, now: datetime | None = None) -> QuerySet[ProLink]:
    """Open links, unanswered, never reminded, whose window closes within EDC_PRO_REMINDER_HOURS
    or that were created more than 24 hours ago. Never a used, revoked or expired link."""
    now = now or timezone.now()
    closing = now + timedelta(hours=settings.EDC_PRO_REMINDER_HOURS)
    answered = CrfEntry.objects.filter(visit=OuterRef("visit"), crf_code=OuterRef("crf_code"), status=EntryStatus.COMPLETE)
    return (
        ProLink.objects.filter(
            reminded_at__isnull=True, used_at__isnull=True, revoked=False, valid_from__lte=now, expires_at__gt=now,
            created_by__is_active=True,
        )
        .filter(Q(expires_at__lte=closing) | Q(created_at__lte=now - CREATED_LONG_AGO))
        .exclude(visit__status__in=[VisitStatus.MISSED, VisitStatus.NOT_DONE])
        .exclude(Exists(answered))
    )


def digest_recipients() -> list[int]:
    """visits.hooks.digest_link_recipients: the staff members with a link to hear about now."""
    return list(links_to_remind().values_list("created_by", flat=True).distinct())


def digest_lines(*, user) -> list[str]:  # noqa: ANN001
    """visits.hooks.digest_pro_links: the user's links to remind about, one digest line each, stamped as reminded.

    Called inside the digest's transaction: the rows are locked and stamped there, so the stamp and
    the e-mail stand or fall together."""
    links = list(
        links_to_remind().filter(created_by=user).select_for_update(of=("self",))
        .select_related("participant__site", "participant__trial", "visit").order_by("expires_at", "pk")
    )
    if not links:
        return []
    now = timezone.now()
    lines = []
    for link in links:
        zone = ZoneInfo(link.participant.site.time_zone)
        closes = (link.expires_at - timedelta(minutes=1)).astimezone(zone)
        lines.append(
            f"{link.participant.trial.code} {link.participant.site.code} {link.participant.number}: {link.visit.label}, "
            f"{link.crf_code} "
            + _("(valid until %(time)s, %(zone)s time)") % {"time": f"{timefmt.date_text(closes)} {closes:%H:%M}", "zone": link.participant.site.time_zone}
        )
        link.reminded_at = now
        audited_save(link, user=system_user(), reason=_("Listed once in %(user)s's reminder digest") % {"user": user.get_username()})
    return lines
