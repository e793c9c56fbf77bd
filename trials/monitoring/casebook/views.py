"""The participant's dashboard: the participant's head (trials.participants), her visit × CRF grid
(trials.visits), with the locks, signatures and queries that monitoring adds; composed here, the
layer that knows all three (the URL stays /participants/<pk>/)."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.monitoring.locks.views import dashboard_review
from trials.participants.selectors import participant_summary
from trials.protocol.models import Role
from trials.protocol.selectors import user_holds_role
from trials.visits import selectors


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
    participant = selectors.participant_for_user(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    # Each entry's open or answered queries, for the "query open" chip.
    open_queries = Count("queries", filter=Q(queries__state__in=list(OPEN_QUERY_STATES)))
    grid = selectors.participant_grid(participant, entry_annotations={"open_queries": open_queries})
    summary = participant_summary(request.user, participant, next_visit=selectors.next_visit(participant))
    return render(
        request,
        "visits/participant_dashboard.html",
        {
            "participant": participant,
            "grid": grid,
            "can_enter": summary["can_act"],  # user_enters_data_at, read from the summary's roles (no extra query)
            "summary": summary,
            **dashboard_review(participant, grid),  # locks, freezes and signatures (one query)
            # The participant was read through the user's scoping just above: her queries are counted directly.
            "open_queries": Query.objects.filter(participant=participant, state__in=OPEN_QUERY_STATES).count(),
            "logs": selectors.participant_logs(participant),
            "casebook_pdf": _casebook_pdf_allowed(request.user, participant),
        },
    )
