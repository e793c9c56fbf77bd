"""What the protocol loader needs from monitoring, called here and provided there (edc.hooks).

Monitoring sits above protocol, yet a trial file that changes a trial's data-quality rules must have
them run again over the stored data (issue 21: "re-run after an amendment"); trials.monitoring
registers the coalesced run request in MonitoringConfig.ready().
"""

from edc.hooks import Hook

# quality_rules_changed(trial_id) -> bool: the loader wrote different `quality_rules:` for an
# existing trial; request a run of its rules at the commit (coalesced: at most one queued;
# trials.monitoring.quality.services.quality_run_request). Queries of a removed rule close at it.
quality_rules_changed = Hook("protocol.quality_rules_changed", provided_by="trials.monitoring")
