from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    name = "trials.monitoring"
    label = "monitoring"
    verbose_name = _("Monitoring")

    def ready(self) -> None:
        # What the data apps below ask of monitoring (their hooks.py say where each is called).
        from trials.monitoring.deviations import services as deviations
        from trials.monitoring.quality import services as quality
        from trials.monitoring.queries import selectors
        from trials.monitoring.queries import services as queries
        from trials.monitoring.queries import views as views_queries
        from trials.protocol import hooks as protocol_hooks
        from trials.safety import hooks as safety_hooks
        from trials.visits import hooks as visits_hooks

        visits_hooks.checks_overridden.register(queries.edit_check_queries_raise)
        visits_hooks.visit_dated.register(deviations.deviation_propose_window)
        visits_hooks.crf_page_queries.register(views_queries.crf_query_context)
        visits_hooks.crf_page_annotations.register(selectors.entry_query_annotations)
        safety_hooks.ae_queries.register(selectors.ae_queries)
        safety_hooks.ae_open_query_counts.register(selectors.ae_open_query_counts)
        protocol_hooks.quality_rules_changed.register(quality.quality_run_request)
