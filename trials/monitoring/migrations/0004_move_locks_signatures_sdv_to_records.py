"""Lock, Signature and SdvMark now belong to trials.records (issue 14): removed from monitoring's
state only; their tables and rows stay (records 0001 takes them over)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0001_initial'),
        ('monitoring', '0003_signature_failure'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='historicalsdvmark',
                    name='entry',
                ),
                migrations.RemoveField(
                    model_name='historicalsdvmark',
                    name='history_user',
                ),
                migrations.RemoveField(
                    model_name='historicalsdvmark',
                    name='reset_by',
                ),
                migrations.RemoveField(
                    model_name='historicalsdvmark',
                    name='verified_by',
                ),
                migrations.RemoveField(
                    model_name='historicalsignature',
                    name='history_user',
                ),
                migrations.RemoveField(
                    model_name='historicalsignature',
                    name='participant',
                ),
                migrations.RemoveField(
                    model_name='historicalsignature',
                    name='signer',
                ),
                migrations.RemoveField(
                    model_name='historicalsignature',
                    name='visit',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='entry',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='locked_by',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='participant',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='released_by',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='trial',
                ),
                migrations.RemoveField(
                    model_name='lock',
                    name='visit',
                ),
                migrations.RemoveField(
                    model_name='sdvmark',
                    name='entry',
                ),
                migrations.RemoveField(
                    model_name='sdvmark',
                    name='reset_by',
                ),
                migrations.RemoveField(
                    model_name='sdvmark',
                    name='verified_by',
                ),
                migrations.RemoveField(
                    model_name='signature',
                    name='participant',
                ),
                migrations.RemoveField(
                    model_name='signature',
                    name='signer',
                ),
                migrations.RemoveField(
                    model_name='signature',
                    name='visit',
                ),
                migrations.DeleteModel(
                    name='HistoricalLock',
                ),
                migrations.DeleteModel(
                    name='HistoricalSdvMark',
                ),
                migrations.DeleteModel(
                    name='HistoricalSignature',
                ),
                migrations.DeleteModel(
                    name='Lock',
                ),
                migrations.DeleteModel(
                    name='SdvMark',
                ),
                migrations.DeleteModel(
                    name='Signature',
                ),
            ],
            database_operations=[],
        ),
    ]
