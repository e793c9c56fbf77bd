"""The safety periodic tasks in django-celery-beat (editable in the admin, created once)."""

import json

from django.db import migrations

TASKS = [
    ("Reporting clock alerts", "trials.safety.tasks_clocks.reporting_clock_alerts", {"every": 15, "period": "minutes"}, None),
    ("Nightly safety summaries", "trials.safety.tasks.safety_summaries_nightly", None, {"minute": "30", "hour": "1"}),
]


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    for name, task, interval, crontab in TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        if interval:
            schedule, _ = IntervalSchedule.objects.get_or_create(**interval)
            PeriodicTask.objects.create(name=name, task=task, interval=schedule, kwargs=json.dumps({}))
        else:
            schedule, _ = CrontabSchedule.objects.get_or_create(
                day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC", **crontab
            )
            PeriodicTask.objects.create(name=name, task=task, crontab=schedule, kwargs=json.dumps({}))


class Migration(migrations.Migration):
    dependencies = [
        ("safety", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
