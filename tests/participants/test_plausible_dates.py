"""Plausible dates (issue 16): a screening date before the trial started, or decades ago, is
refused with a message naming the limit. On main, 1900-01-01 was accepted."""

from datetime import date, timedelta

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
        assert refused.value.message_dict["screening_date"] == ["This date is before the start of ASC-DU (2020-09-22)."]
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
