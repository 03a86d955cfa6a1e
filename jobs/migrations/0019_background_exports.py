"""History exports written by a background worker: the file's state (ExportFile), beside the append-only record.

No grant of its own: docs/deploy.md grants the app's role SELECT, INSERT, UPDATE,
DELETE on every table after migrate, and the cleanup deletes these rows' files only."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0018_history_filter_combinations"),
    ]

    operations = [
        migrations.CreateModel(
            name="ExportFile",
            fields=[
                (
                    "export",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="file",
                        serialize=False,
                        to="jobs.historyexport",
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("queued", "queued"), ("running", "running"), ("ready", "ready"),
                                 ("failed", "failed"), ("expired", "expired")],
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("time_zone", models.CharField(help_text="The zone the times are written in: the user's when asked.", max_length=64)),
                ("rows_total", models.PositiveBigIntegerField(blank=True, help_text="Counted by the worker first.", null=True)),
                ("rows_written", models.PositiveBigIntegerField(default=0)),
                ("path", models.CharField(blank=True, help_text="The file's name in settings.EXPORTS_DIR.", max_length=255)),
                ("size", models.PositiveBigIntegerField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                ("companies", models.JSONField(blank=True, null=True, help_text="The companies whose rows the file may hold (ids); empty for a superuser's every row. The download asks that the user may still read each of them.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "indexes": [
                    models.Index(condition=models.Q(("expires_at__isnull", False)), fields=["expires_at"],
                                 name="exportfile_expiry"),
                    models.Index(condition=models.Q(("state__in", ["queued", "running"])), fields=["updated_at"],
                                 name="exportfile_unfinished"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["queued", "running", "ready", "failed", "expired"])),
                        name="exportfile_state_known",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(models.Q(("state", "ready"), _negated=True),
                                           models.Q(models.Q(("path", ""), _negated=True), ("size__isnull", False)),
                                           _connector="OR"),
                        name="exportfile_ready_has_file",
                    ),
                ],
            },
        ),
    ]
