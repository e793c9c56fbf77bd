"""The participant's dashboard: the participant's head (trials.participants), her visit × CRF grid
(trials.visits), with the locks, signatures and queries that monitoring adds; composed here, the
layer that knows all three (the URL stays /participants/<pk>/)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from trials.monitoring.casebook.dashboard import dashboard_participant, dashboard_reads
from trials.monitoring.casebook.grid_html import grid_rows_html
from trials.monitoring.locks.views import dashboard_review
from trials.participants.selectors import participant_summary
from trials.protocol.models import Role
from trials.protocol.selectors import user_holds_role


def _casebook_pdf_allowed(user, participant) -> bool:
    """Whether the casebook PDF link shows: a monitor or data manager of her site (the download,
    in trials.exports.casebook_pdf, checks the same roles)."""
    if user.is_superuser:
        return True
    # The request's one read of the user's roles (edc.request_memo, issue 22).
    return user_holds_role(user, trial_id=participant.trial_id, roles=(Role.MONITOR, Role.DATA_MANAGER), site_id=participant.site_id)


@login_required
def participant_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    """A participant's visits with the status of every CRF due at each."""
    # Issue 22 (third pass): her row with her allocation and consent check, then her visits, entries,
    # CRFs, open queries, locks and signatures: casebook.dashboard's reads; the grid in Python.
    participant = dashboard_participant(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    reads = dashboard_reads(participant)
    grid = reads["grid"]
    summary = participant_summary(
        request.user, participant, next_visit=reads["next_visit"], allocation=participant._dashboard_allocation
    )
    review = dashboard_review(participant, grid)  # locks, freezes and signatures (one query)
    return render(
        request,
        "participants/dashboard.html",
        {
            "participant": participant,
            "grid_html": grid_rows_html(grid, can_act=summary["can_act"], casebook_lock=review["casebook_lock"]),
            "can_enter": summary["can_act"],  # user_enters_data_at, read from the summary's roles (no extra query)
            "summary": summary,
            **review,
            "open_queries": reads["open_queries"],
            "logs": reads["logs"],
            "casebook_pdf": _casebook_pdf_allowed(request.user, participant),
        },
    )
