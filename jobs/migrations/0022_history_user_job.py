"""History: a user's runs of some jobs (issue 18), index execution_user_job.

Built CONCURRENTLY on PostgreSQL, as 0018 explains (presses go on during the
build): this migration is not atomic. SQLite: a plain CREATE INDEX."""

import importlib

import django.db.models.functions.text
from django.db import migrations, models

# 0018's operation (CONCURRENTLY on PostgreSQL, plain elsewhere); a module name that starts with a digit.
_0018 = importlib.import_module("jobs.migrations.0018_history_filter_combinations")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0021_notifications")]

    operations = [
        _0018.AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(django.db.models.functions.text.Lower("username"), models.F("job"),
                               models.OrderBy(models.F("requested_at"), descending=True),
                               models.OrderBy(models.F("id"), descending=True), name="execution_user_job"),
        ),
    ]
