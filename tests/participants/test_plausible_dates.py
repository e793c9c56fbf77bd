"""Plausible dates (issue 16): a screening date before the trial started, or decades ago, is
refused with a message naming the limit. On main, 1900-01-01 was accepted."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from tests.participants.conftest import MEXICO, TLS, site, user
from trials.participants import services
from trials.participants.models import Participant

pytestmark = pytest.mark.django_db


def test_a_screening_before_the_trial_start_is_refused(demo):  # noqa: ARG001
    toulouse = site(TLS)  # ASC-DU started on 2020-09-22 (seeds/001_nct04356755_du.yaml)
    for when in (date(1900, 1, 1), date(2020, 9, 21)):
        with pytest.raises(ValidationError) as refused:
            services.participant_screen(site=toulouse, user=user("coordinator.toulouse"), screening_date=when)
        assert refused.value.message_dict["screening_date"] == ["This date is before the start of ASC-DU (22 Sep 2020)."]
    assert not Participant.objects.exists()
    assert services.participant_screen(site=toulouse, user=user("coordinator.toulouse"), screening_date=date(2020, 9, 22))


def test_without_a_start_date_a_screening_decades_ago_is_refused(demo):  # noqa: ARG001
    mexico = site(MEXICO)
    assert mexico.trial.start_date is None
    with pytest.raises(ValidationError) as refused:
        services.participant_screen(site=mexico, user=user("coordinator.mexico"), screening_date=date(1900, 1, 1))
    assert "more than 10 years ago" in refused.value.message_dict["screening_date"][0]
    recent = mexico.today() - timedelta(days=365)
    assert services.participant_screen(site=mexico, user=user("coordinator.mexico"), screening_date=recent)


@pytest.fixture
def frozen():  # noqa: ANN201
    """A fixed today (the limits below are dates; 'in the future' depends on the day)."""
    import time_machine

    with time_machine.travel(datetime(2026, 3, 10, 12, 0, tzinfo=UTC), tick=False):
        yield


def test_a_consent_before_the_trial_start_is_refused_on_its_field(demo, frozen):  # noqa: ARG001
    from tests.participants.conftest import consent_time, screen

    participant = screen(TLS)
    # ASC-DU's consent version 1.0 was approved on 2020-07-01, the trial started on 2020-09-22.
    for when, message in ((date(1900, 1, 1), "Version 1.0 was approved on 1 Jul 2020, after this consent time."),
                          (date(2020, 9, 21), "This date is before the start of ASC-DU (22 Sep 2020).")):
        with pytest.raises(ValidationError) as refused:
            services.participant_consent(
                participant=participant, document=services.current_consent_document(participant.trial),
                consented_at=consent_time(participant, when), user=user("coordinator.toulouse"),
            )
        assert refused.value.message_dict["consented_at"] == [message]
    participant.refresh_from_db()
    assert participant.consent_date is None


def test_a_screening_visit_on_1900_01_01_is_refused_and_a_visit_in_the_future_too(demo, frozen):  # noqa: ARG001
    """The screening visit had no lower bound (only later visits were bound by the consent)."""
    from tests.participants.conftest import screen
    from trials.visits.models import VisitStatus
    from trials.visits.schedule import visit_record_date

    participant = screen(TLS)
    visit = participant.visits.order_by("order").first()
    coordinator = user("coordinator.toulouse")
    with pytest.raises(ValidationError) as refused:
        visit_record_date(visit, user=coordinator, visit_date=date(1900, 1, 1))
    assert refused.value.message_dict["visit_date"] == ["This date is before the start of ASC-DU (22 Sep 2020)."]
    with pytest.raises(ValidationError) as refused:
        visit_record_date(visit, user=coordinator, visit_date=date(2026, 3, 11))
    assert "in the future" in refused.value.message_dict["visit_date"][0]
    visit.refresh_from_db()
    assert visit.visit_date is None and visit.status != VisitStatus.DONE
    assert visit_record_date(visit, user=coordinator, visit_date=date(2026, 2, 28)).visit_date == date(2026, 2, 28)
