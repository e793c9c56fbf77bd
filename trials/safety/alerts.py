"""Alerts of reporting clocks: before the deadline (at the fractions of the reporting time set in
the trial's `safety_reporting.alerts_at`, half time by default) and when overdue, once per clock
and stage, to the site's coordinators and investigators, the trial's sponsor users and the
sponsor's safety contacts (`safety_reporting.contacts`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.protocol.models import Role, StudyRole
from trials.safety.models import ClockAlert, ReportingClock

log = logging.getLogger(__name__)


def _recipients(clock: ReportingClock) -> list[str]:
    """Coordinators and investigators of the site (or of all sites) and the trial's sponsor users:
    active users with an active role in this trial (one filter, so every condition is on the same
    role row)."""
    participant = clock.adverse_event.participant
    site_staff = [Role.COORDINATOR, Role.INVESTIGATOR]
    roles = StudyRole.objects.filter(is_active=True, trial=participant.trial_id, user__is_active=True).filter(
        Q(role__in=site_staff, site__isnull=True) | Q(role__in=site_staff, site=participant.site_id) | Q(role=Role.SPONSOR)
    )
    contacts = (participant.trial.safety_reporting or {}).get("contacts", [])
    return sorted(set(roles.exclude(user__email="").values_list("user__email", flat=True)) | set(contacts))


def _stage(clock: ReportingClock, now) -> str | None:  # noqa: ANN001
    """The latest alert stage the clock has reached: "overdue", "elapsed_<percent>" or None."""
    if clock.due_at <= now:
        return "overdue"
    fractions = (clock.adverse_event.participant.trial.safety_reporting or {}).get("alerts_at", [0.5])
    elapsed = (now - clock.started_at) / (clock.due_at - clock.started_at)
    reached = [f for f in fractions if f <= elapsed]
    return f"elapsed_{round(100 * max(reached))}" if reached else None


def clock_alerts_send(now=None) -> int:  # noqa: ANN001
    """Send the alerts that are due; returns how many were sent. Safe to run twice."""
    now = now or timezone.now()
    open_clocks = ReportingClock.objects.filter(reported_at__isnull=True, cancelled=False).select_related(
        "adverse_event__participant__site", "adverse_event__participant__trial"
    )
    due = []  # open clocks are few (SAEs awaiting their report): judged here, portable across databases
    for clock in open_clocks:
        stage = _stage(clock, now)
        if stage is not None:
            due.append((clock, stage))
    sent = 0
    for clock, stage in due:
        try:
            with transaction.atomic():
                ClockAlert.objects.create(clock=clock, stage=stage)
            sent += 1
        except IntegrityError:
            continue  # already alerted at this stage
    clock_alert_emails_deliver()
    return sent


def _deliverable() -> Q:
    """Alerts whose e-mail has not gone out, of clocks still open, claimed by no live worker."""
    stale = timezone.now() - timedelta(minutes=settings.CLOCK_ALERT_EMAIL_RETRY_MINUTES)
    return Q(emailed_at__isnull=True, clock__reported_at__isnull=True, clock__cancelled=False) & (
        Q(email_claimed_at__isnull=True) | Q(email_claimed_at__lt=stale)
    )


def clock_alert_emails_deliver() -> int:
    """Send the e-mails of the alerts not yet e-mailed (an outbox): each is claimed by a guarded
    UPDATE (two workers never send the same one), sent, then stamped `emailed_at`. A mail server
    that refuses leaves it for the next tick, with the error; a worker killed after its claim
    leaves it for a tick CLOCK_ALERT_EMAIL_RETRY_MINUTES later. So an alert's e-mail is never lost;
    it is sent twice only if a worker dies between the mail server's acceptance and the stamp.
    Returns how many e-mails went out."""
    delivered = 0
    pending = ClockAlert.objects.filter(_deliverable()).select_related(
        "clock__adverse_event__participant__site", "clock__adverse_event__participant__trial"
    ).order_by("pk")
    for alert in pending:
        if not ClockAlert.objects.filter(_deliverable(), pk=alert.pk).update(email_claimed_at=timezone.now()):
            continue  # another worker claimed it, or it went out meanwhile
        recipients = _recipients(alert.clock)
        try:
            if recipients:
                subject, body = _message(alert.clock, alert.stage)
                send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception as exc:  # noqa: BLE001 - SMTP errors, refused connections: kept, tried again
            error = f"{type(exc).__name__}: {exc}"[:500]
            ClockAlert.objects.filter(pk=alert.pk).update(email_claimed_at=None, email_error=error)
            log.warning("clock alert %s (%s): e-mail not sent, tried again at the next tick: %s", alert.pk, alert.stage, error)
            continue
        ClockAlert.objects.filter(pk=alert.pk).update(emailed_at=timezone.now(), email_error="")
        delivered += bool(recipients)
    return delivered


def _message(clock: ReportingClock, stage: str) -> tuple[str, str]:
    ae = clock.adverse_event
    participant = ae.participant
    if stage == "overdue":
        what = _("OVERDUE")
    else:
        what = _("%(percent)s%% of the time elapsed") % {"percent": stage.removeprefix("elapsed_")}
    subject = _("[%(trial)s] %(kind)s – %(number)s AE%(ae)s – %(what)s") % {
        "trial": participant.trial.code, "kind": clock.get_kind_display(), "number": participant.number, "ae": ae.number, "what": what}
    body = _(
        "Participant %(number)s (site %(site)s), AE %(ae)s: %(term)s, grade %(grade)s.\n"
        "Site aware of the seriousness: %(aware)s UTC. Report due: %(due)s UTC.\n\nRecord the report in the EDC once it is sent."
    ) % {
        "number": participant.number, "site": participant.site.code, "ae": ae.number, "term": ae.verbatim_term, "grade": ae.grade,
        "aware": f"{clock.started_at:%Y-%m-%d %H:%M}", "due": f"{clock.due_at:%Y-%m-%d %H:%M}",
    }
    return subject, body
