"""The safety summary stale scan in django-celery-beat, every 5 minutes (editable in the admin, created once)."""

import json

from django.db import migrations

NAME = "Safety summary stale scan"


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    schedule, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.create(
        name=NAME, task="trials.safety.tasks.safety_summaries_stale_scan", interval=schedule, kwargs=json.dumps({})
    )


class Migration(migrations.Migration):
    dependencies = [
        ("safety", "0005_summarystate_queued_at_nightly_on"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
