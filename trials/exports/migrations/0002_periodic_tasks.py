"""The export housekeeping task in django-celery-beat (editable in the admin, created once)."""

import json

from django.db import migrations

TASKS = [
    ("Export housekeeping", "trials.exports.tasks.exports_scan", {"every": 1, "period": "hours"}),
]


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    for name, task, interval in TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        schedule, _ = IntervalSchedule.objects.get_or_create(**interval)
        PeriodicTask.objects.create(name=name, task=task, interval=schedule, kwargs=json.dumps({}))


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0001_export_jobs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
