"""The schedule's periodic tasks, stored in the database (django-celery-beat) so that they can be
changed in the admin. Created once: later edits in the admin are kept."""

import json

from django.db import migrations

TASKS = [
    # name, task, kind, spec
    ("Visit states refresh", "trials.visits.tasks.visit_states_refresh", "interval", {"every": 15, "period": "minutes"}),
    ("Visit schedule scan", "trials.visits.tasks.schedule_scan", "interval", {"every": 1, "period": "hours"}),
    ("Coordinator reminder digest", "trials.visits.tasks.reminders_scan", "crontab", {"minute": "0", "hour": "6"}),
]


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    for name, task, kind, spec in TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        if kind == "interval":
            interval, _ = IntervalSchedule.objects.get_or_create(**spec)
            PeriodicTask.objects.create(name=name, task=task, interval=interval, kwargs=json.dumps({}))
        else:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC", **spec
            )
            PeriodicTask.objects.create(name=name, task=task, crontab=crontab, kwargs=json.dumps({}))


class Migration(migrations.Migration):
    dependencies = [
        ("visits", "0002_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
