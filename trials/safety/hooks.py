"""What the AE pages need from monitoring, called here and provided there (edc.hooks).

Monitoring sits above safety, yet the AE pages show each AE's query threads and open-query
badges; trials.monitoring registers these reads in MonitoringConfig.ready().
"""

from edc.hooks import Hook

# ae_queries(user, ae) -> list: the queries of one adverse event (None: a new one) with their
# threads, as the user may see them (trials.monitoring.queries.selectors.ae_queries).
ae_queries = Hook("safety.ae_queries", provided_by="trials.monitoring")

# ae_open_query_counts(user, participant) -> {AE id: n}: open queries per adverse event of the
# participant, as the user may see them (trials.monitoring.queries.selectors.open_query_counts).
ae_open_query_counts = Hook("safety.ae_open_query_counts", provided_by="trials.monitoring")
