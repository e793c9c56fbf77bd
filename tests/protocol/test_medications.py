"""The CEL functions criteria use over the medication log (trials.protocol.medications)."""

from trials.protocol import medications as m

ON = "2026-03-16"
LOG = [
    {"name": "Nifedipine", "class": "calcium_channel_blocker", "start": "2025-06-01", "stop": "2026-02-28", "stop_reason": "dose_change"},
    {"name": "nifedipine", "class": "calcium_channel_blocker", "start": "2026-03-01", "stop": None},
    {"name": "methotrexate", "class": "csdmard", "start": "2024-05-01", "stop": "2026-02-01", "stop_reason": "intolerance"},
]


def test_taking_matches_a_class_or_a_name_on_a_date():
    assert m.taking(LOG, "calcium_channel_blocker", ON) and m.taking(LOG, "NIFEDIPINE", ON)
    assert not m.taking(LOG, "csdmard", ON) and m.taking(LOG, ["statin", "csdmard"], "2026-01-01")


def test_days_taking_counts_the_current_course_and_days_treated_bridges_a_dose_change():
    assert m.days_taking(LOG, "calcium_channel_blocker", ON) == 15  # 1 March to 16 March
    assert m.days_treated(LOG, "calcium_channel_blocker", ON) == 288  # 1 June 2025 to 16 March 2026
    assert m.days_taking(LOG, "statin", ON) == 0


def test_took_within_and_changed_within_look_back_a_number_of_days():
    assert m.took_within(LOG, "csdmard", ON, 44) and not m.took_within(LOG, "csdmard", ON, 43)  # stopped 43 days before
    assert m.changed_within(LOG, "calcium_channel_blocker", ON, 30) and not m.changed_within(LOG, "csdmard", ON, 30)


def test_courses_failed_counts_different_medications_stopped_for_failure():
    assert m.courses_failed(LOG, "csdmard", ON) == 1 and m.courses_failed(LOG, "calcium_channel_blocker", ON) == 0
