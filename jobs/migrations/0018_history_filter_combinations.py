"""Indexes for History's filters and sorts in combination (issue 18).

On PostgreSQL each is built CONCURRENTLY: a plain CREATE INDEX holds a lock
that blocks every INSERT on the audit trail (every press of Run) for as long
as the build takes, seconds a million rows; concurrently, presses go on (the
build reads the table twice, so takes longer). That cannot run inside a
transaction: this migration is not atomic. SQLite has no such build and
nobody presses during its migrations: plain CREATE INDEX."""

import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class AddIndexWithoutBlockingWrites(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL; a plain AddIndex elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexWithoutBlockingWrites(RemoveIndexConcurrently):
    """DROP INDEX CONCURRENTLY on PostgreSQL; a plain RemoveIndex elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


def _desc(name):
    return models.OrderBy(models.F(name), descending=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0017_watch_every_run")]

    operations = [
        # Built before the one it replaces is dropped: no moment without an index for a job's history.
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["job", "-requested_at", "-id", "outcome", "ips_result"],
                               name="execution_job_status_recent"),
        ),
        RemoveIndexWithoutBlockingWrites(model_name="execution", name="execution_job_recent"),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(django.db.models.functions.text.Lower("username"), models.F("outcome"),
                               _desc("requested_at"), _desc("id"), name="execution_user_outcome"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(django.db.models.functions.text.Lower("username"), models.F("ips_result"),
                               _desc("requested_at"), _desc("id"), name="execution_user_result"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["company", "outcome", "-requested_at", "-id"], name="execution_company_outcome"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["company", "ips_result", "-requested_at", "-id"], name="execution_company_result"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["outcome", "-ips_runtime_ms", "-id"], name="execution_outcome_runtime"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["outcome", "-duration_ms", "-id"], name="execution_outcome_req_time"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["ips_result", "-ips_runtime_ms", "-id"], name="execution_result_runtime"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["ips_result", "-duration_ms", "-id"], name="execution_result_req_time"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["job", "-ips_runtime_ms", "-id"], name="execution_job_runtime"),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="execution",
            index=models.Index(fields=["job", "-duration_ms", "-id"], name="execution_job_req_time"),
        ),
    ]
