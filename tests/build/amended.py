"""A changed ASC-DU file, as a data manager would upload it: the changes are written here as text
substitutions of the seed files, so each test states what it changed and derives what to expect."""

from pathlib import Path

from django.conf import settings

SEEDS = Path(settings.BASE_DIR) / "seeds"

# 1. Week 2's window widened from -3/+3 to -5/+5 days.
W2_BEFORE = """  - code: W2
    label: Week 2
    kind: follow_up
    anchor: first_treatment
    day_offset: 14
    window_before_days: 3
    window_after_days: 3
"""
W2_AFTER = W2_BEFORE.replace("window_before_days: 3", "window_before_days: 5").replace("window_after_days: 3", "window_after_days: 5")
# 2. Lesion inclusion LI01: an ulcer of the thumb (finger 1) no longer qualifies.
LI01_BEFORE = 'expression: "beyond_pip == true"'
LI01_AFTER = "expression: \"beyond_pip == true && finger != 1\""
# 3. A second consent version, approved for the amendment.
CONSENT_BEFORE = """    title: Participant information and informed consent form
"""
CONSENT_AFTER = CONSENT_BEFORE + """  - version: "2.0"
    approved_on: 2026-01-15
    title: Participant information and informed consent form (amendment 1)
"""
# 4. DU_ASSESS: "Palm" is no longer a choice of an ulcer's location (a palm ulcer is not digital).
PALM = "    - {code: palm, label: Palm}\n"


def amended_trial_text() -> str:
    text = (SEEDS / "001_nct04356755_du.yaml").read_text(encoding="utf-8")
    for before, after in ((W2_BEFORE, W2_AFTER), (LI01_BEFORE, LI01_AFTER), (CONSENT_BEFORE, CONSENT_AFTER)):
        assert text.count(before) == 1, before
        text = text.replace(before, after)
    return text


def amended_du_assess_text() -> str:
    text = (SEEDS / "crfs" / "du_assess.yaml").read_text(encoding="utf-8")
    assert text.count(PALM) == 1
    return text.replace(PALM, "")


def amended_files() -> dict[str, bytes]:
    return {
        "001_nct04356755_du.yaml": amended_trial_text().encode(),
        "crfs/du_assess.yaml": amended_du_assess_text().encode(),
    }
