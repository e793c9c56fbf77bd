"""The hooks through which a lower app calls an app above it (edc.hooks; docs/architecture.md, *Layers*):
once Django has started, each is provided by the function the documentation names, and a hook with
no provider, or a second provider, is an error rather than a silent no-op."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from edc.hooks import Hook
from trials.epro import reminders as epro_reminders
from trials.epro import services as epro
from trials.monitoring.deviations import services as deviations
from trials.monitoring.queries import selectors as query_selectors
from trials.monitoring.queries import services as queries
from trials.monitoring.queries import views as query_views
from trials.participants import hooks as participants_hooks
from trials.safety import escalation
from trials.safety import hooks as safety_hooks
from trials.visits import hooks as visits_hooks
from trials.visits import schedule
from trials.visits import selectors as visit_selectors

# The table of docs/architecture.md, *Layers*: hook -> the function registered in AppConfig.ready().
PROVIDERS = [
    (participants_hooks.schedule_generate, schedule.schedule_generate),
    (participants_hooks.schedule_recompute, schedule.schedule_recompute),
    (participants_hooks.screening_entries, visit_selectors.screening_entries),
    (participants_hooks.medication_log, visit_selectors.medication_log),
    (participants_hooks.dlt_replaced_by_cohort, escalation.replaced_by_cohort),
    (participants_hooks.cohort_review, escalation.cohort_review),
    (visits_hooks.checks_overridden, queries.edit_check_queries_raise),
    (visits_hooks.visit_dated, deviations.deviation_propose_window),
    (visits_hooks.crf_page_queries, query_views.crf_query_context),
    (visits_hooks.entry_respondent, epro.entry_source),
    (visits_hooks.crf_page_annotations, query_selectors.entry_query_annotations),
    (visits_hooks.entry_respondent_annotations, epro.entry_source_annotations),
    (visits_hooks.digest_link_recipients, epro_reminders.digest_recipients),
    (visits_hooks.digest_pro_links, epro_reminders.digest_lines),
    (safety_hooks.ae_queries, query_selectors.ae_queries),
    (safety_hooks.ae_open_query_counts, query_selectors.ae_open_query_counts),
]


def _declared() -> set[Hook]:
    return {value for module in (participants_hooks, visits_hooks, safety_hooks) for value in vars(module).values() if isinstance(value, Hook)}


def test_every_declared_hook_is_in_the_documented_table():
    assert _declared() == {hook for hook, _ in PROVIDERS}


@pytest.mark.parametrize(("hook", "provider"), PROVIDERS, ids=[hook.name for hook, _ in PROVIDERS])
def test_each_hook_is_provided_by_the_documented_function(hook, provider):
    assert hook._provider is provider


def test_a_hook_nobody_provides_is_a_configuration_error():
    hook = Hook("tests.nobody", provided_by="trials.nowhere")
    with pytest.raises(ImproperlyConfigured, match="tests.nobody has no provider: is trials.nowhere in INSTALLED_APPS"):
        hook()


def test_a_second_provider_is_refused_and_the_first_one_still_runs():
    hook = Hook("tests.twice", provided_by="tests")
    hook.register(lambda x: x + 1)
    hook.register(hook._provider)  # the same function again (ready() run twice): accepted
    with pytest.raises(ImproperlyConfigured, match="already provided"):
        hook.register(lambda x: x * 10)
    assert hook(1) == 2
