"""A download checks again, at that moment, every right the export needed (issue 13): an export
role at each of its sites, the right to see the arms for an unblinded export, the data-manager
role for identifying items. Losing one makes the file unavailable (404) even while another role
still lets the user export the trial."""

from __future__ import annotations

import pytest
from django.urls import reverse

from edc.audit import system_user
from tests.exports.conftest import user
from trials.exports.models import ExportDownload, ExportState
from trials.protocol.models import Role, Site, StudyRole, Trial
from trials.protocol.services import study_role_grant, study_role_revoke

pytestmark = pytest.mark.django_db


def download(client, username: str, job) -> int:  # noqa: ANN001
    client.force_login(user(username))
    return client.get(reverse("export_download", args=[job.pk])).status_code


def end(username: str, role: str, site: Site | None = None) -> None:
    study_role = StudyRole.objects.get(user__username=username, trial__code="ASC-DU", role=role, site=site)
    study_role_revoke(study_role=study_role, revoked_by=system_user(), reason="Left")


def grant(username: str, role: str, site: Site | None = None) -> None:
    trial = Trial.objects.get(code="ASC-DU")
    study_role_grant(user=user(username), trial=trial, site=site, role=role, granted_by=system_user(), reason="Also")


def test_an_unblinded_export_is_refused_once_its_requester_no_longer_sees_the_arms(demo, client, export) -> None:  # noqa: ANN001, ARG001
    grant("dsmb.statistician", Role.SPONSOR)  # a role that still exports ASC-DU, blinded
    job = export("dsmb.statistician", "ASC-DU", blinded=False, reason="DSMB meeting")
    assert job.state == ExportState.DONE and not job.blinded
    assert download(client, "dsmb.statistician", job) == 200
    end("dsmb.statistician", Role.DSMB)
    assert download(client, "dsmb.statistician", job) == 404
    assert ExportDownload.objects.filter(job=job).count() == 1  # the refused one is not a download


def test_an_export_is_refused_once_its_requester_lost_one_of_its_sites(demo, client, export) -> None:  # noqa: ANN001, ARG001
    job = export("sponsor.toulouse", "ASC-DU")  # all seven sites
    grenoble = Site.objects.get(trial__code="ASC-DU", code="GRE")
    grant("sponsor.toulouse", Role.SPONSOR, site=grenoble)
    end("sponsor.toulouse", Role.SPONSOR)  # the all-sites role; Grenoble's remains
    assert download(client, "sponsor.toulouse", job) == 404
    # An export of Grenoble only is still hers.
    job = export("sponsor.toulouse", "ASC-DU", sites=[grenoble])
    assert download(client, "sponsor.toulouse", job) == 200


def test_identifying_items_are_refused_once_the_requester_is_no_longer_data_manager(demo, client, export) -> None:  # noqa: ANN001, ARG001
    grant("datamanager", Role.SPONSOR)
    job = export("datamanager", "ASC-DU", identifiers=True, reason="Source data check")
    assert job.identifiers and download(client, "datamanager", job) == 200
    end("datamanager", Role.DATA_MANAGER)
    assert download(client, "datamanager", job) == 404
