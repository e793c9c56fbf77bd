from datetime import date, timedelta
import pytest
from django.utils import timezone
from edc.audit import system_user
from trials.participants.demo import participant_register
from trials.participants import services, eligibility
from trials.protocol.models import Site

@pytest.mark.parametrize("trial,site", [("ASC-DU","TLS"),("ADSVF-SSC-HANDS","INCMNSZ"),("SSC-FATGRAFT-REG","MES"),("EASC-RA","MAD-LP")])
def test_register(demo_users, trial, site):
    s = Site.objects.get(trial__code=trial, code=site)
    today = timezone.localdate()
    p = participant_register(site=s, user=system_user(), consent_date=today - timedelta(days=5), anchor_date=today-timedelta(days=1))
    print(trial, p.screening_number, p.subject_number, p.status, getattr(p, "allocation", None))
    print([(a.criterion.code, a.lesion, a.answer, a.automatic) for a in p.eligibility_answers.all()][:5])
    print(p.visits.count(), [v.label for v in p.visits.all()][:3])
