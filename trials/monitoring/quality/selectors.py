"""Reads of the data-quality rules for the data manager's report, through what the user may see.

The hits are read from the rules' queries (open = the data hit the rule at the last run), scoped to
the user's sites, so a data manager of one site never sees another site's counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from trials.monitoring.models import OPEN_QUERY_STATES, QualityRunState, Query, QueryOrigin, QueryState
from trials.monitoring.quality.rules import QualityRule, trial_rules
from trials.monitoring.queries.selectors import queries_for_user
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import study_roles_for_user


def quality_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials whose data-quality rules the user runs and reviews: her trials as a data manager."""
    if user.is_authenticated and user.is_superuser:
        return Trial.objects.all()
    return Trial.objects.filter(pk__in=study_roles_for_user(user).filter(role=Role.DATA_MANAGER).values("trial_id"))


@dataclass
class RuleRow:
    rule: QualityRule
    open: int = 0
    answered: int = 0
    closed: int = 0
    queries: list[Query] = field(default_factory=list)  # the open and answered ones (the hits)


def rule_report(user, trial: Trial, *, shown: int = 50) -> tuple[list[RuleRow], QualityRunState | None]:  # noqa: ANN001
    """Per rule of the trial: its queries in the user's scope by state and the current hits."""
    rows = {rule.code: RuleRow(rule) for rule in trial_rules(trial)}
    queries = (
        queries_for_user(user).filter(trial=trial, origin=QueryOrigin.QUALITY_RULE, rule_code__in=rows)
        .select_related("participant", "entry__visit", "adverse_event")
        .order_by("rule_code", "participant__screening_number", "entry__visit__order", "adverse_event__number")
    )
    for query in queries:
        row = rows[query.rule_code]
        if query.state == QueryState.OPEN:
            row.open += 1
        elif query.state == QueryState.ANSWERED:
            row.answered += 1
        elif query.state == QueryState.CLOSED:
            row.closed += 1
        if query.state in OPEN_QUERY_STATES and len(row.queries) < shown:
            row.queries.append(query)
    return list(rows.values()), QualityRunState.objects.filter(trial=trial).first()
