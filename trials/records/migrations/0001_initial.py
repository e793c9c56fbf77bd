"""Lock, Signature and SdvMark (and their history) move here from trials.monitoring (issue 14).

State only: the tables keep their names (monitoring_lock, monitoring_historicallock …, see the
models' db_table and HISTORY_DB_TABLE) and their rows; monitoring 0001-0003 created them."""

import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('monitoring', '0003_signature_failure'),
        ('participants', '0002_allocation_allocationlist_allocationslot_and_more'),
        ('protocol', '0004_trial_safety_reporting'),
        ('visits', '0003_periodic_tasks'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='HistoricalLock',
                    fields=[
                        ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                        ('level', models.CharField(choices=[('entry', 'CRF entry'), ('visit', 'Visit'), ('participant', 'Participant'), ('trial', 'Trial (database lock)')], max_length=20, verbose_name='level')),
                        ('kind', models.CharField(choices=[('freeze', 'Freeze (no data changes; queries still possible)'), ('lock', 'Lock (no changes at all)')], default='lock', max_length=20, verbose_name='kind')),
                        ('reason', models.TextField(verbose_name='reason')),
                        ('locked_at', models.DateTimeField(verbose_name='locked at')),
                        ('released_at', models.DateTimeField(blank=True, null=True, verbose_name='released at')),
                        ('release_reason', models.TextField(blank=True, verbose_name='reason for release')),
                        ('history_id', models.AutoField(primary_key=True, serialize=False)),
                        ('history_date', models.DateTimeField(db_index=True)),
                        ('history_change_reason', models.TextField(null=True)),
                        ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                        ('entry', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='visits.crfentry', verbose_name='CRF entry')),
                        ('history_user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('locked_by', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='locked by')),
                        ('participant', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='participants.participant', verbose_name='participant')),
                        ('released_by', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='released by')),
                        ('trial', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='protocol.trial', verbose_name='trial')),
                        ('visit', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='visits.visit', verbose_name='visit')),
                    ],
                    options={
                        'verbose_name': 'historical lock',
                        'verbose_name_plural': 'historical locks',
                        'db_table': 'monitoring_historicallock',
                        'ordering': ('-history_date', '-history_id'),
                        'get_latest_by': ('history_date', 'history_id'),
                    },
                    bases=(simple_history.models.HistoricalChanges, models.Model),
                ),
                migrations.CreateModel(
                    name='HistoricalSdvMark',
                    fields=[
                        ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                        ('state', models.CharField(choices=[('verified', 'Verified'), ('reset', 'Reset by a later edit')], default='verified', max_length=20, verbose_name='state')),
                        ('items', models.JSONField(blank=True, default=list, verbose_name='verified items')),
                        ('entry_revision', models.PositiveIntegerField(verbose_name='entry revision verified')),
                        ('verified_at', models.DateTimeField(verbose_name='verified at')),
                        ('reset_at', models.DateTimeField(blank=True, null=True, verbose_name='reset at')),
                        ('history_id', models.AutoField(primary_key=True, serialize=False)),
                        ('history_date', models.DateTimeField(db_index=True)),
                        ('history_change_reason', models.TextField(null=True)),
                        ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                        ('entry', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='visits.crfentry', verbose_name='CRF entry')),
                        ('history_user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('reset_by', models.ForeignKey(blank=True, db_constraint=False, help_text='Who made the change that reset the mark.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='reset by')),
                        ('verified_by', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='verified by')),
                    ],
                    options={
                        'verbose_name': 'historical SDV mark',
                        'verbose_name_plural': 'historical SDV marks',
                        'db_table': 'monitoring_historicalsdvmark',
                        'ordering': ('-history_date', '-history_id'),
                        'get_latest_by': ('history_date', 'history_id'),
                    },
                    bases=(simple_history.models.HistoricalChanges, models.Model),
                ),
                migrations.CreateModel(
                    name='HistoricalSignature',
                    fields=[
                        ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                        ('printed_name', models.CharField(max_length=300, verbose_name='printed name')),
                        ('meaning', models.CharField(max_length=300, verbose_name='meaning')),
                        ('signed_at', models.DateTimeField(verbose_name='signed at')),
                        ('state', models.CharField(choices=[('valid', 'Valid'), ('broken', 'Broken by a later change')], default='valid', max_length=20, verbose_name='state')),
                        ('broken_at', models.DateTimeField(blank=True, null=True, verbose_name='broken at')),
                        ('broken_reason', models.TextField(blank=True, verbose_name='why it broke')),
                        ('history_id', models.AutoField(primary_key=True, serialize=False)),
                        ('history_date', models.DateTimeField(db_index=True)),
                        ('history_change_reason', models.TextField(null=True)),
                        ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                        ('history_user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('participant', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='participants.participant', verbose_name='participant')),
                        ('signer', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='signed by')),
                        ('visit', models.ForeignKey(blank=True, db_constraint=False, help_text='Empty for the whole casebook.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='visits.visit', verbose_name='visit')),
                    ],
                    options={
                        'verbose_name': 'historical signature',
                        'verbose_name_plural': 'historical signatures',
                        'db_table': 'monitoring_historicalsignature',
                        'ordering': ('-history_date', '-history_id'),
                        'get_latest_by': ('history_date', 'history_id'),
                    },
                    bases=(simple_history.models.HistoricalChanges, models.Model),
                ),
                migrations.CreateModel(
                    name='SdvMark',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('state', models.CharField(choices=[('verified', 'Verified'), ('reset', 'Reset by a later edit')], default='verified', max_length=20, verbose_name='state')),
                        ('items', models.JSONField(blank=True, default=list, verbose_name='verified items')),
                        ('entry_revision', models.PositiveIntegerField(verbose_name='entry revision verified')),
                        ('verified_at', models.DateTimeField(verbose_name='verified at')),
                        ('reset_at', models.DateTimeField(blank=True, null=True, verbose_name='reset at')),
                        ('entry', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='sdv', to='visits.crfentry', verbose_name='CRF entry')),
                        ('reset_by', models.ForeignKey(blank=True, help_text='Who made the change that reset the mark.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='reset by')),
                        ('verified_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='verified by')),
                    ],
                    options={
                        'verbose_name': 'SDV mark',
                        'verbose_name_plural': 'SDV marks',
                        'db_table': 'monitoring_sdvmark',
                    },
                ),
                migrations.CreateModel(
                    name='Signature',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('printed_name', models.CharField(max_length=300, verbose_name='printed name')),
                        ('meaning', models.CharField(max_length=300, verbose_name='meaning')),
                        ('signed_at', models.DateTimeField(verbose_name='signed at')),
                        ('state', models.CharField(choices=[('valid', 'Valid'), ('broken', 'Broken by a later change')], default='valid', max_length=20, verbose_name='state')),
                        ('broken_at', models.DateTimeField(blank=True, null=True, verbose_name='broken at')),
                        ('broken_reason', models.TextField(blank=True, verbose_name='why it broke')),
                        ('participant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='signatures', to='participants.participant', verbose_name='participant')),
                        ('signer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='signed by')),
                        ('visit', models.ForeignKey(blank=True, help_text='Empty for the whole casebook.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='signatures', to='visits.visit', verbose_name='visit')),
                    ],
                    options={
                        'verbose_name': 'signature',
                        'verbose_name_plural': 'signatures',
                        'db_table': 'monitoring_signature',
                        'ordering': ['participant', '-signed_at'],
                    },
                ),
                migrations.CreateModel(
                    name='Lock',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('level', models.CharField(choices=[('entry', 'CRF entry'), ('visit', 'Visit'), ('participant', 'Participant'), ('trial', 'Trial (database lock)')], max_length=20, verbose_name='level')),
                        ('kind', models.CharField(choices=[('freeze', 'Freeze (no data changes; queries still possible)'), ('lock', 'Lock (no changes at all)')], default='lock', max_length=20, verbose_name='kind')),
                        ('reason', models.TextField(verbose_name='reason')),
                        ('locked_at', models.DateTimeField(verbose_name='locked at')),
                        ('released_at', models.DateTimeField(blank=True, null=True, verbose_name='released at')),
                        ('release_reason', models.TextField(blank=True, verbose_name='reason for release')),
                        ('entry', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='locks', to='visits.crfentry', verbose_name='CRF entry')),
                        ('locked_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='locked by')),
                        ('participant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='locks', to='participants.participant', verbose_name='participant')),
                        ('released_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='released by')),
                        ('trial', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='locks', to='protocol.trial', verbose_name='trial')),
                        ('visit', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='locks', to='visits.visit', verbose_name='visit')),
                    ],
                    options={
                        'verbose_name': 'lock',
                        'verbose_name_plural': 'locks',
                        'db_table': 'monitoring_lock',
                        'ordering': ['trial', '-locked_at'],
                        'indexes': [models.Index(fields=['trial', 'released_at'], name='lock_trial_active_idx')],
                        'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('entry__isnull', True), ('level', 'trial'), ('participant__isnull', True), ('visit__isnull', True)), models.Q(('entry__isnull', True), ('level', 'participant'), ('participant__isnull', False), ('visit__isnull', True)), models.Q(('entry__isnull', True), ('level', 'visit'), ('visit__isnull', False)), models.Q(('entry__isnull', False), ('level', 'entry')), _connector='OR'), name='lock_target_matches_level')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
