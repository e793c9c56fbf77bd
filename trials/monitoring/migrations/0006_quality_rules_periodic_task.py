"""The nightly data-quality run in django-celery-beat (editable in the admin, created once)."""

import json

from django.db import migrations

NAME = "Nightly data-quality rules"
TASK = "trials.monitoring.tasks.quality_rules_nightly"


def create(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.create(name=NAME, task=TASK, crontab=schedule, kwargs=json.dumps({}))


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0005_quality_rules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
