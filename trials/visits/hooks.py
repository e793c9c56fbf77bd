"""What visits need from monitoring, called here and provided there (edc.hooks).

Monitoring sits above visits, yet saving a CRF with an overridden soft check raises a query, a
visit done outside its window proposes a protocol deviation, and the CRF page shows the entry's
query threads. Each is one hook below, called by name where it happens; trials.monitoring
registers its function in MonitoringConfig.ready().
"""

from edc.hooks import Hook

# checks_overridden(*, entry, previous_warnings) -> list: after a CRF save (inside its transaction),
# raise a query for each soft edit check newly overridden (trials.monitoring.queries.services).
checks_overridden = Hook("visits.checks_overridden", provided_by="trials.monitoring")

# visit_dated(*, visit, user) -> deviation or None: after a visit date is recorded (inside its
# transaction), propose or update the visit's out-of-window deviation (trials.monitoring.deviations.services).
visit_dated = Hook("visits.visit_dated", provided_by="trials.monitoring")

# crf_page_queries(user, entry, *, hidden) -> dict: the template context of the CRF page's query
# threads and SDV status (trials.monitoring.queries.views.crf_query_context).
crf_page_queries = Hook("visits.crf_page_queries", provided_by="trials.monitoring")

# crf_page_annotations(entry_column) -> dict of name -> expression: annotations of the CRF page's
# CrfEntry query (`entry_column`: the SQL of the outer entry's id) that spare the page a query each:
# `page_has_queries` (has the entry any query at all; without one crf_page_queries reads none)
# (trials.monitoring.queries.selectors.entry_query_annotations).
crf_page_annotations = Hook("visits.crf_page_annotations", provided_by="trials.monitoring")

# entry_respondent_annotations(entry_column) -> dict of name -> expression: `page_respondent_id`, the
# id of the participant's own response to the entry (the outer row) or NULL, read with the entry;
# entry_respondent then reads nothing for a staff entry (trials.epro.services.entry_source_annotations).
entry_respondent_annotations = Hook("visits.entry_respondent_annotations", provided_by="trials.epro")

# entry_respondent(entry) -> dict or None: for an entry answered by the participant herself
# (participant mode or a personal link), {"mode", "completed_at"}; None for a staff entry. The
# CRF page is then read-only and crf_entry_save refuses a staff change (trials.epro.services.entry_source).
entry_respondent = Hook("visits.entry_respondent", provided_by="trials.epro")

# digest_link_recipients() -> list of user ids: staff members with unanswered personal
# questionnaire links to hear about in their daily digest (trials.epro.reminders.digest_recipients).
digest_link_recipients = Hook("visits.digest_link_recipients", provided_by="trials.epro")

# digest_pro_links(*, user) -> list of lines: inside the digest's transaction, the user's unanswered
# links due a reminder, as lines of the digest, each stamped so it is listed once (trials.epro.reminders.digest_lines).
digest_pro_links = Hook("visits.digest_pro_links", provided_by="trials.epro")
