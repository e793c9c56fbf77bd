"""No write path escapes the audit trail of a protocol model."""

import pytest
from django.contrib.auth import get_user_model

from edc.audit import AuditError, audited_bulk_create, audited_save, system_user
from trials.protocol.models import Arm, Criterion, Site, StudyRole, Trial, VisitCrf, VisitDefinition

pytestmark = pytest.mark.django_db

AUDITED_MODELS = [Trial, Site, Arm, Criterion, VisitDefinition, VisitCrf, StudyRole]


@pytest.mark.parametrize("model", AUDITED_MODELS, ids=lambda m: m.__name__)
def test_bypassing_writes_are_refused(seeds, model):
    queryset = model.objects.all()
    with pytest.raises(AuditError, match="update"):
        queryset.update(is_active=False) if hasattr(model, "is_active") else queryset.update(title="x")
    with pytest.raises(AuditError, match="never deleted"):
        queryset.delete()
    with pytest.raises(AuditError, match="bulk_update"):
        queryset.bulk_update(list(queryset[:1]), ["pk"])
    with pytest.raises(AuditError, match="bulk_create"):
        model.objects.bulk_create([])


def test_save_without_reason_and_delete_are_refused(seeds):
    site = Site.objects.get(trial__code="ASC-DU", code="GRE")
    site.recruitment_status = "recruiting"
    with pytest.raises(AuditError, match="reason for change"):
        site.save()
    with pytest.raises(AuditError, match="never deleted"):
        site.delete()
    with pytest.raises(AuditError, match="reason for change is required"):
        audited_save(site, user=None, reason="   ")
    site.refresh_from_db()
    assert site.recruitment_status == "not_yet_recruiting"


def test_audited_save_records_who_when_old_new_and_why(seeds):
    user = get_user_model().objects.create_user("dm", password="x-long-password-1")
    site = Site.objects.get(trial__code="ASC-DU", code="GRE")
    site.recruitment_status = "recruiting"
    audited_save(site, user=user, reason="Site initiation visit done on 2026-11-20")

    latest = site.history.first()
    assert latest.history_user == user
    assert latest.history_change_reason == "Site initiation visit done on 2026-11-20"
    assert latest.history_date is not None
    delta = latest.diff_against(latest.prev_record)
    assert [(c.field, c.old, c.new) for c in delta.changes] == [("recruitment_status", "not_yet_recruiting", "recruiting")]


def test_a_reason_is_not_reused_by_the_next_save(seeds):
    site = Site.objects.get(trial__code="ASC-DU", code="GRE")
    site.name = "CHU Grenoble Alpes"
    audited_save(site, user=None, reason="name from the site contract")
    site.city = "La Tronche"
    with pytest.raises(AuditError):
        site.save()


def test_audited_bulk_create_writes_history_rows(seeds):
    trial = Trial.objects.get(code="SSC-FATGRAFT-REG")
    rows = [
        Criterion(trial=trial, code=f"X{i}", kind="exclusion", text=f"Extra {i}", order=100 + i) for i in range(3)
    ]
    audited_bulk_create(Criterion, rows, user=system_user(), reason="bulk test")
    history = Criterion.history.filter(code__startswith="X", history_change_reason="bulk test")
    assert history.count() == 3
