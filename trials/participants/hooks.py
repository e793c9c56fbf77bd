"""What participants need from the apps above them, called here and provided there (edc.hooks).

Participants sit below visits and safety, yet enrolment makes visits, eligibility reads the
screening CRFs and the 3+3 rule counts DLT adverse events. Each of these is one hook below, called
by name at the place it happens; the app above registers its function in its AppConfig.ready().
"""

from edc.hooks import Hook

# --- provided by trials.visits (VisitsConfig.ready) ------------------------------------------

# schedule_generate(participant, *, user, reason, kinds) -> int: create the participant's missing
# visits (of `kinds`); called by participant_screen and participant_enrol in the same transaction.
schedule_generate = Hook("participants.schedule_generate", provided_by="trials.visits")

# schedule_recompute(participant, *, user, reason) -> int: re-plan the visits not done yet after
# the first treatment or a corrected anchor date; returns the number of visits moved.
schedule_recompute = Hook("participants.schedule_recompute", provided_by="trials.visits")

# screening_entries(participant, codes) -> {crf_code: entry}: the participant's first CRF entry of
# each code (the screening one), each with `.crf` and `.answers`; read by eligibility.evaluate.
screening_entries = Hook("participants.screening_entries", provided_by="trials.visits")

# --- provided by trials.safety (SafetyConfig.ready) ------------------------------------------

# dlt_replaced_by_cohort(trial) -> {arm id: [participant, ...]}: participants of each dose cohort
# who are not DLT-evaluable for good (trials.safety.escalation); read by cohort_states.
dlt_replaced_by_cohort = Hook("participants.dlt_replaced_by_cohort", provided_by="trials.safety")

# cohort_review(cohort, *, expanded) -> CohortReview: the 3+3 recommendation from the recorded
# DLTs (trials.safety.escalation); read by cohort_decide and the cohorts page.
cohort_review = Hook("participants.cohort_review", provided_by="trials.safety")

# medication_log(participant) -> list[dict] | None: the participant's CONMED log records as the
# criteria read them (`meds`), or None when it holds none; read by eligibility.evaluate.
medication_log = Hook("participants.medication_log", provided_by="trials.visits")
