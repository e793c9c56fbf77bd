"""DSMB packages stored per cut-off, disposition as of the cut-off from the audit history, the
cut-off day in the trial's time zone, and every PDF download (casebook, DSMB, blank/annotated CRF)
recorded in the export download log (issue 21)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.exports.conftest import user
from trials.exports.models import DownloadKind, DsmbPackage, ExportDownload
from trials.participants.models import ParticipantStatus
from trials.participants.services import participant_transition

pytestmark = pytest.mark.django_db


def get(client, username: str, path: str):  # noqa: ANN001, ANN201
    client.force_login(user(username))
    return client.get(path)


def paris_today() -> str:
    return timezone.localdate(timezone=__import__("zoneinfo").ZoneInfo("Europe/Paris")).isoformat()


def disposition(csv_text: str) -> dict[str, str]:
    """The Disposition table of the open report's CSV: row label → the pooled count."""
    lines = csv_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Disposition"))
    rows = {}
    for line in lines[start + 2:]:
        if not line:
            break
        label, count = line.rsplit(",", 1)
        rows[label] = count
    return rows


def test_a_package_is_stored_once_per_cutoff_and_downloads_identically(du, client) -> None:
    cutoff = paris_today()
    first = get(client, "sponsor.toulouse", f"/trials/ASC-DU/dsmb/open.pdf?cutoff={cutoff}")
    assert first.status_code == 200
    again = get(client, "datamanager", f"/trials/ASC-DU/dsmb/open.pdf?cutoff={cutoff}")
    assert again.content == first.content  # the stored bytes, not a new rendering
    package = DsmbPackage.objects.get(report="open", file_format="pdf")
    assert package.sha256 == hashlib.sha256(first.content).hexdigest() == again["X-Content-SHA256"]
    assert package.generated_by == user("sponsor.toulouse") and package.history.get().history_user == user("sponsor.toulouse")
    # The DSMB's closed report is stored too, and listed for the DSMB only.
    closed = get(client, "dsmb.statistician", f"/trials/ASC-DU/dsmb/closed.csv?cutoff={cutoff}")
    assert closed.status_code == 200
    page = get(client, "dsmb.statistician", "/trials/ASC-DU/dsmb/").content.decode()
    assert f'data-testid="dsmb-stored-closed-csv-{cutoff}"' in page and f'data-testid="dsmb-stored-open-pdf-{cutoff}"' in page
    page = get(client, "sponsor.toulouse", "/trials/ASC-DU/dsmb/").content.decode()
    assert f'data-testid="dsmb-stored-open-pdf-{cutoff}"' in page and "closed" not in page.split('data-testid="dsmb-packages"')[1]
    assert get(client, "sponsor.toulouse", f"/trials/ASC-DU/dsmb/closed.csv?cutoff={cutoff}").status_code == 404


def test_every_pdf_download_is_logged(du, client) -> None:
    cutoff = paris_today()
    get(client, "sponsor.toulouse", f"/trials/ASC-DU/dsmb/open.pdf?cutoff={cutoff}")
    get(client, "sponsor.toulouse", f"/trials/ASC-DU/dsmb/open.pdf?cutoff={cutoff}")
    participant = du["participants"][0]
    casebook = get(client, "monitor.du", f"/participants/{participant.pk}/casebook.pdf")
    assert casebook.status_code == 200
    crf = get(client, "datamanager", "/trials/ASC-DU/crfs/DU_ASSESS/v1/?annotated=1&format=pdf")
    assert crf.status_code == 200
    rows = list(ExportDownload.objects.filter(job__isnull=True).order_by("pk"))
    assert [(r.kind, r.downloaded_by.username) for r in rows] == [
        (DownloadKind.DSMB, "sponsor.toulouse"), (DownloadKind.DSMB, "sponsor.toulouse"),
        (DownloadKind.CASEBOOK, "monitor.du"), (DownloadKind.CRF_PRINT, "datamanager"),
    ]
    assert rows[0].document == f"ASC-DU_dsmb_open_{cutoff}.pdf" and rows[0].trial.code == "ASC-DU"
    assert rows[2].sha256 == hashlib.sha256(casebook.content).hexdigest() and str(participant) in rows[2].document
    assert rows[3].document == "ASC-DU/DU_ASSESS-v1-annotated.pdf"
    assert all(r.history.get().history_user == r.downloaded_by for r in rows)  # audited, who and when


def test_disposition_is_as_recorded_at_the_cutoff(du, client) -> None:
    """A withdrawal dated 5 days ago but entered today: a report cut 3 days ago, read from the
    history, still counts the participant on study; today's report counts the withdrawal."""
    participant = du["participants"][1]
    site_today = participant.site.today()
    participant_transition(participant=participant, to=ParticipantStatus.WITHDRAWN, user=user("coordinator.toulouse"),
                           reason="Moved abroad", on=site_today - timedelta(days=5))
    client.force_login(user("sponsor.toulouse"))
    now = disposition(client.get(f"/trials/ASC-DU/dsmb/open.csv?cutoff={site_today.isoformat()}").content.decode())
    assert (now["On study at the cut-off"], now["Withdrawn"]) == ("2", "1")


def test_disposition_ignores_a_later_status_change(du, client) -> None:
    participant = du["participants"][1]
    site_today = participant.site.today()
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):
        participant_transition(participant=participant, to=ParticipantStatus.WITHDRAWN, user=user("coordinator.toulouse"),
                               reason="Moved abroad", on=site_today)  # dated on the cut-off, entered 2 days later
        client.force_login(user("sponsor.toulouse"))
        then = disposition(client.get(f"/trials/ASC-DU/dsmb/open.csv?cutoff={site_today.isoformat()}").content.decode())
    # As recorded at the end of the cut-off day: nobody had withdrawn yet.
    assert (then["Enrolled"], then["On study at the cut-off"], then["Withdrawn"]) == ("3", "3", "0")


def test_the_cutoff_day_is_the_trials_not_the_servers(du, client) -> None:
    """At 23:30 UTC on 10 March 2026 it is already 11 March in Paris (UTC+1): the cut-off
    "2026-03-11" is today for ASC-DU's French sites, not a future date (the server runs in UTC)."""
    with time_machine.travel(datetime(2026, 3, 10, 23, 30, tzinfo=UTC), tick=False):
        assert timezone.localdate() == date(2026, 3, 10)
        client.force_login(user("sponsor.toulouse"))
        assert client.get("/trials/ASC-DU/dsmb/open.csv?cutoff=2026-03-11").status_code == 200
        assert client.get("/trials/ASC-DU/dsmb/open.csv?cutoff=2026-03-12").status_code == 400
        page = client.get("/trials/ASC-DU/dsmb/").content.decode()
        assert 'value="2026-03-11"' in page  # the default cut-off: the trial's today


def test_the_casebook_export_reads_the_data_as_of_its_cutoff(du) -> None:
    """The weight entered at setup (61.5, conftest `vitals`) corrected to 70 two days later: a
    casebook cut the day before the correction prints 61.5 and no trace of the correction."""
    from trials.exports import selectors
    from trials.exports.casebook_pdf import casebook_context
    from trials.exports.spec import ExportSpec
    from tests.exports.conftest import enter, vitals

    participant = du["participants"][0]
    setup_day = timezone.localdate()
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):
        enter(participant, "VITALS", vitals("70"))

        def weight(context) -> str:  # noqa: ANN001
            items = [i for v in context["visits"] for e in v["entries"] if e["entry"].crf_code == "VITALS" for i in e["items"]]
            return next(i["value"] for i in items if i.get("name") == "weight_kg")

        now = casebook_context(participant, sees_allocation=False, identifiers=False)
        assert weight(now).startswith("70")
        spec = ExportSpec(user_id=user("datamanager").pk, trial_id=participant.trial_id, site_ids=(participant.site_id,), cutoff=setup_day)
        as_of = selectors.cutoff_end(spec)
        then = casebook_context(participant, sees_allocation=False, identifiers=False, as_of=as_of)
        assert weight(then).startswith("61.5")
        assert all(row["row"].at < as_of for row in then["trail"])
        assert len(then["trail"]) < len(now["trail"])
        # and it renders (the historical rows stand in for the current ones in the template)
        from trials.exports.casebook_pdf import casebook_pdf

        html_text = __import__("django.template.loader", fromlist=["x"]).render_to_string("exports/pdf/casebook.html", {**then, "blinded": True})
        assert "61.5" in html_text and "Screening" in html_text and "as recorded before" in html_text
        assert casebook_pdf(participant, sees_allocation=False, identifiers=False, blinded=True, as_of=as_of)[:5] == b"%PDF-"
