"""The dead-export scan in django-celery-beat, every minute (editable in the admin, created once)."""

import json

from django.db import migrations

NAME = "Export dead-job scan"


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    schedule, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.create(
        name=NAME, task="trials.exports.tasks.exports_dead_scan", interval=schedule, kwargs=json.dumps({})
    )


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0003_exportjob_heartbeat_at"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
