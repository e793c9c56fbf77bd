"""Exports and safety summaries go to their own queue (issue 22); the rest stays on the default."""

from edc.celery import app


def queue_of(task: str) -> str:
    app.loader.import_default_modules()  # the apps' tasks modules, as a worker loads them
    assert task in app.tasks, f"no task {task}"
    route = app.amqp.router.route({}, task, args=(), kwargs={})
    return route["queue"].name


def test_exports_and_summaries_are_routed_to_the_reports_queue():
    for task in ("trials.exports.tasks.export_run_task", "trials.safety.tasks.safety_summary_refresh",
                 "trials.safety.tasks.safety_summaries_nightly", "trials.safety.tasks.safety_summaries_stale_scan"):
        assert queue_of(task) == "reports", task


def test_the_coordinators_work_stays_on_the_default_queue():
    for task in ("trials.visits.tasks.schedule_participant", "trials.visits.tasks.reminder_digest",
                 "trials.safety.tasks_clocks.reporting_clock_alerts", "trials.exports.tasks.exports_scan",
                 "edc.ops.tasks.heartbeat_answer"):
        assert queue_of(task) == "celery", task
