"""Reads of participants, scoped to the user's sites."""

from django.db.models import Q, QuerySet

from edc.audit import SYSTEM_USERNAME
from trials.participants.models import Participant
from trials.protocol.models import Role
from trials.protocol.selectors import sites_for_user, study_roles_for_user

DATA_ENTRY_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR})


def participants_for_user(user) -> QuerySet[Participant]:  # noqa: ANN001
    """Participants at the sites the user may see."""
    return Participant.objects.filter(site__in=sites_for_user(user)).select_related("trial", "site")


def user_enters_data_at(user, participant: Participant) -> bool:  # noqa: ANN001
    """Coordinators and investigators of the participant's site (or of all sites) enter CRF data;
    so does the system user (imports, synthetic demo data), audited as itself."""
    if user.username == SYSTEM_USERNAME:
        return True
    return study_roles_for_user(user).filter(
        Q(site__isnull=True) | Q(site=participant.site_id), trial=participant.trial_id, role__in=DATA_ENTRY_ROLES
    ).exists()
