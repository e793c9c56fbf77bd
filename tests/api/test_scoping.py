"""Site and trial scoping (IDOR sweep) and blinding, as the pages' rules say."""

from pathlib import Path

import yaml
from django.conf import settings

SEED = yaml.safe_load((Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml").read_text())
ARM_WORDS = {a["code"] for a in SEED["arms"]} | {a["label"] for a in SEED["arms"]}  # ADMSC/AdMSC, PLACEBO/Placebo


def _ids(participant):
    visit = participant.visits.order_by("order").first()
    entry = participant.crf_entries.first()
    ids = {"participants": participant.pk, "visits": visit.pk}
    if entry is not None:  # ASC-DU's screening DU_ASSESS (lesion eligibility); ADSVF has none at registration
        ids["entries"] = entry.pk
    return ids


def test_objects_of_other_sites_and_trials_answer_404_for_every_role(client_for, tls, mrs, other_trial):
    # monitor.du works at TLS and GRE, coordinator.toulouse at TLS: Marseille (MRS) is another site.
    # The sponsor and the DSMB work at every ASC-DU site; none of the four works in ADSVF-SSC-HANDS.
    foreign = {
        "coordinator": [mrs, other_trial], "monitor": [mrs, other_trial], "sponsor": [other_trial], "dsmb": [other_trial],
    }
    for role, participants in foreign.items():
        client = client_for(role)
        for participant in participants:
            for kind, pk in _ids(participant).items():
                for url in (f"/api/v1/{kind}/{pk}/", *( [f"/api/v1/{kind}/{pk}/audit/"] if kind in {"participants", "entries"} else [])):
                    answer = client.get(url)
                    assert answer.status_code == 404, (role, url, answer.status_code)
            listed = client.get(f"/api/v1/entries/?participant={participant.pk}").json()["results"]
            assert listed == [], role
            site = participant.site
            assert client.get(f"/api/v1/sites/{site.pk}/").status_code == (200 if role in {"sponsor", "dsmb"} and site.trial.code == "ASC-DU" else 404)
        # Her own participant is there.
        assert client.get(f"/api/v1/participants/{tls.pk}/").status_code == 200, role
        seen_sites = {p["site"] for p in client.get("/api/v1/participants/?trial=ASC-DU").json()["results"]}
        assert seen_sites == ({"TLS"} if role in {"coordinator", "monitor"} else {"TLS", "MRS"}), role


def test_blinded_tokens_never_receive_an_arm(client_for, tls):
    # ASC-DU masks care provider, investigator and outcomes assessor (seed file): every role but
    # the DSMB is blinded. The participant is randomised to AdMSC or placebo.
    assert set(SEED["masking"]["masked"]) & {"care_provider", "investigator", "outcomes_assessor"}
    dsmb = client_for("dsmb").get(f"/api/v1/participants/{tls.pk}/").json()
    assert any(word in dsmb["allocation"] for word in ARM_WORDS)  # the unblinded role sees it (the test can fail)
    for role in ("coordinator", "monitor", "sponsor"):
        client = client_for(role)
        bodies = [
            client.get(url).content.decode()
            for url in (
                "/api/v1/participants/", f"/api/v1/participants/{tls.pk}/", f"/api/v1/participants/{tls.pk}/audit/",
                "/api/v1/visits/", "/api/v1/entries/", "/api/v1/visit-plan/?trial=ASC-DU", "/api/v1/adverse-events/",
            )
        ]
        participant = client.get(f"/api/v1/participants/{tls.pk}/").json()
        assert participant["allocation"] and not any(w.lower() in participant["allocation"].lower() for w in ARM_WORDS)
        for body in bodies:
            lowered = body.lower()
            assert '"arm' not in lowered, role
            assert not any(f'{w.lower()}' in lowered for w in ARM_WORDS if len(w) > 3), (role, [w for w in ARM_WORDS if w.lower() in lowered])


def test_the_entry_list_gives_each_entry_as_its_detail_does(client_for, tls):
    """The list reads rows (trials/api/views.py, for speed), the detail a serializer: the same JSON."""
    from tests.api.test_writes import VITALS, screening

    writer = client_for("coordinator", scope="write")
    writer.post("/api/v1/entries/", {"visit": screening(tls).pk, "crf_code": "VITALS", "expected_revision": 0, "answers": VITALS}, format="json")
    for role in ("coordinator", "sponsor", "dsmb"):
        client = client_for(role)
        listed = client.get(f"/api/v1/entries/?participant={tls.pk}").json()["results"]
        assert len(listed) >= 2, role  # DU_ASSESS (registration) and VITALS
        assert listed == [client.get(f"/api/v1/entries/{row['id']}/").json() for row in listed], role


def test_the_entry_list_filters_by_trial_and_site_code_within_the_scope(client_for, tls, other_trial):
    """The list matches ?trial= and ?site= against the scope's sites (no join, trials/api/views.py):
    the participant's own codes keep its entries, another code or one outside the scope gives none."""
    client = client_for("coordinator")
    own = client.get(f"/api/v1/entries/?participant={tls.pk}").json()["results"]
    assert own
    trial, site = tls.trial.code, tls.site.code
    assert client.get(f"/api/v1/entries/?participant={tls.pk}&trial={trial}&site={site}").json()["results"] == own
    assert all(row["trial"] == trial and row["site"] == site for row in own)
    assert client.get(f"/api/v1/entries/?participant={tls.pk}&site=NO-SUCH-SITE").json()["results"] == []
    assert client.get(f"/api/v1/entries/?trial={other_trial.trial.code}").json()["results"] == []
