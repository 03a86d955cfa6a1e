"""History: a user's runs by IPS runtime or by request time (issue 18), indexes
execution_user_runtime and execution_user_req_time.

Built CONCURRENTLY on PostgreSQL, as 0018 explains (presses go on during the
build): this migration is not atomic. SQLite: a plain CREATE INDEX."""

import importlib

from django.db import migrations, models
from django.db.models.functions import Lower

# 0018's operation (CONCURRENTLY on PostgreSQL, plain elsewhere); a module name that starts with a digit.
_0018 = importlib.import_module("jobs.migrations.0018_history_filter_combinations")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0023_verbose_names")]

    operations = [
        _0018.AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(Lower("username"), models.OrderBy(models.F("ips_runtime_ms"), descending=True),
                               models.OrderBy(models.F("id"), descending=True), name="execution_user_runtime"),
        ),
        _0018.AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(Lower("username"), models.OrderBy(models.F("duration_ms"), descending=True),
                               models.OrderBy(models.F("id"), descending=True), name="execution_user_req_time"),
        ),
    ]
