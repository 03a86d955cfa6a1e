"""Missed runs (issue 19): a per-job grace, the fire time the watcher still expects, and MissedRun.

No grant of its own: docs/deploy.md grants the app's role SELECT, INSERT, UPDATE,
DELETE on every table after migrate."""

import datetime
import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0019_background_exports'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='expected_fire_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='missed_grace',
            field=models.DurationField(default=datetime.timedelta(seconds=900), help_text='How long after a fire time IPS may take to start the run (hh:mm:ss).', validators=[django.core.validators.MinValueValidator(datetime.timedelta(0))], verbose_name='grace before a run counts as missed'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('expected_fire_at__isnull', False)), fields=['company', 'expected_fire_at'], name='job_expected_fire'),
        ),
        migrations.CreateModel(
            name='MissedRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('fire_time', models.DateTimeField(help_text='The first fire time that passed with no run.')),
                ('last_fire_time', models.DateTimeField(help_text='The latest fire time this one stands for.')),
                ('fires_missed', models.PositiveIntegerField(default=1)),
                ('detected_at', models.DateTimeField(help_text="On IPS's clock.")),
                ('cleared_at', models.DateTimeField(blank=True, null=True)),
                ('cleared_by_execution', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='cleared_missed_runs', to='jobs.execution')),
                ('company', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='missed_runs', to='jobs.company')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='missed_runs', to='jobs.job')),
            ],
            options={
                'ordering': ['-fire_time'],
                'indexes': [models.Index(condition=models.Q(('cleared_at__isnull', True)), fields=['company'], name='missedrun_open_by_company')],
                'constraints': [models.UniqueConstraint(fields=('job', 'fire_time'), name='missedrun_once_per_fire'), models.UniqueConstraint(condition=models.Q(('cleared_at__isnull', True)), fields=('job',), name='missedrun_one_open')],
            },
        ),
    ]
