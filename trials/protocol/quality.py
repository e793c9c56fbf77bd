"""What a data-quality rule (the trial file's `quality_rules:`) may read besides a CRF's own context.

The names are declared here, in the protocol layer, so that the loader checks a rule against them
(file:line) and trials.monitoring.quality builds exactly these values from stored data.

A rule on a CRF (`subject: crf`, the default) reads the CRF checks' context (its items,
`visit.`/`previous.`/`baseline.<CRF>.<item>`, `visit_date`, `consent_date`, `today`) and also:

- `aes`: the participant's adverse events, a list (empty when none is recorded: for a data-quality
  rule an empty AE log is the finding, "a grade 3 value without an AE") of maps with the
  `AE_FIELDS` below (dates as ISO strings, `end_date` null while ongoing), e.g.
  `aes.exists(a, a.onset_date <= sample_date && (a.end_date == null || a.end_date >= sample_date))`;
- `lab`: the CRF's laboratory items graded against the site's normal range (LabNormalRange, by the
  participant's sex and age from DEMOG and the sample date, CTCAE v5.0 as the CRF page grades them),
  a map from the item name to a map of `LAB_KEYS`; an item without a value or without a range at
  the site is absent (a rule reading it is then not evaluated, not a hit), e.g.
  `lab.all(n, lab[n].grade < 3)`;
- `study_end_date` (the date of the participant's end of participation: completed, withdrawn, lost
  to follow-up or died; null before), `death_date` (null unless she died), `enrolment_date`.

A rule on the AE log (`subject: adverse_event`) is evaluated once per adverse event, over that
event's `AE_FIELDS` by name (`onset_date`, `grade`, …), `aes` (all the participant's AEs, this one
included), `study_end_date`, `death_date`, `enrolment_date`, `consent_date` and `today`; its query
is raised on the adverse event (on `item`, one of `AE_FIELDS` a query may name).
"""

from __future__ import annotations

import re

# An adverse event as a rule sees it (trials.safety.models.AdverseEvent): `coded_term` is the MedDRA
# preferred term (null until coded), `soc` its system organ class; `seriousness` a list of criteria.
AE_FIELDS = (
    "number", "verbatim_term", "coded_term", "soc", "onset_date", "end_date", "ongoing", "grade", "serious",
    "seriousness", "outcome", "related_product", "procedure", "related_procedure", "expected", "action_taken",
    "is_dlt", "leads_to_withdrawal",
)
# The AE fields a query may point at (trials.monitoring.queries.services.AE_QUERY_ITEMS).
AE_ITEMS = tuple(name for name in AE_FIELDS if name not in {"number", "soc"})
# One graded laboratory value: CDISC test code, the value, the site's limits, LBNRIND (LOW, NORMAL,
# HIGH), the CTCAE grade (0 within the range, 1-4) and term.
LAB_KEYS = ("test", "value", "lln", "uln", "indicator", "grade", "term")
PARTICIPANT_NAMES = ("study_end_date", "death_date", "enrolment_date")
# Names a rule on a CRF may use besides the CRF checks' context.
CRF_RULE_NAMES = ("aes", "lab", *PARTICIPANT_NAMES)
# Names a rule on the AE log may use.
AE_RULE_NAMES = (*AE_FIELDS, "aes", "consent_date", "today", *PARTICIPANT_NAMES)

_AES_MACRO = re.compile(r"(?<![\w.])aes\s*\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_LAB_MEMBER = re.compile(r"(?<![\w.])lab\s*\.\s*([A-Za-z_]\w*)(?:\s*\.\s*([A-Za-z_]\w*))?")


def ae_member_names(expression: str) -> list[str]:
    """The field names read on the events an `aes.<macro>(a, …)` binds (`a.onset_date` -> onset_date)."""
    names: list[str] = []
    for variable in _AES_MACRO.findall(expression):
        names += re.findall(rf"(?<![\w.]){re.escape(variable)}\s*\.\s*([A-Za-z_]\w*)", expression)
    return names


def lab_references(expression: str) -> list[tuple[str, str | None]]:
    """`lab.<item>` and `lab.<item>.<key>` read by an expression, as (item, key or None)."""
    return [(item, key or None) for item, key in _LAB_MEMBER.findall(expression)]
