"""Every append-only table under one guard: executions, history exports, membership changes.

On PostgreSQL one trigger function, ipsadmin_append_only(), replaces the
tables' own (0014's jobs_execution_audit_guard, 0013's jobs_historyexport_guard)
and guards jobs_membershipchange too, which had none. Each table hands it its
rules as JSON, the same the model's ORM guard reads (``Model.RULES``; frozen
here, and test_database_roles.py checks the triggers carry the models' rules).
Beyond what 0013/0014 held:

* Inserts and updates are judged AFTER the row is written, as stored: a BEFORE
  trigger that fires later (by name) can no longer rewrite a row past the guard.
* A role that cannot drop the trigger (anyone but the table's owner and
  superusers) writes times ("requested_at", "finished_at", ...) only as the
  present, give or take CLOCK_SKEW, and a new row only as the service writes
  it (a 'sending' row has no message, no IPS result, ...).
* A key (job, company, user, actor) becomes NULL only through the ON DELETE
  SET NULL of the row it points to, which the foreign keys now do themselves:
  an UPDATE that nulls a key whose row still exists is refused. Django's own
  SET_NULL (an UPDATE first) is left to SQLite (set_null_by_database).
* Membership changes are never changed, deleted nor truncated, like the rest.

The function reads the catalogues with search_path = pg_catalog, pg_temp (a
session's temporary tables come first by default) and the referenced tables
by their schema-qualified names.
"""

import importlib
import json

from django.conf import settings
from django.db import migrations, models

import jobs.models.append_only

CLOCK_SKEW_SECONDS = 120
IPS_COLUMNS = [
    "ips_duplicate_count", "ips_ended_at", "ips_error_count", "ips_fatal", "ips_log_type", "ips_progress",
    "ips_result", "ips_result_at", "ips_run_handle", "ips_run_name", "ips_runtime_ms", "ips_started_at",
    "ips_state", "ips_success_count", "ips_total_count", "ips_update_count", "ips_warning_count",
]
FINISH_COLUMNS = ["outcome", "message", "fault_family", "fault_code", "fault_reason", "sent_at", "finished_at",
                  "duration_ms", "ips_run_handle", "ips_run_name"]
EXPORT_FINISH_COLUMNS = ["row_count", "completed", "finished_at"]

# The models' RULES (jobs/models/append_only.py) as they were when this migration was written.
RULES = {
    "jobs_execution": {
        "kind": "an audit trail",
        "row": "execution",
        "done": "finished",
        "born": [
            {"when": {"outcome": ["sending"]},
             "fresh": sorted({*FINISH_COLUMNS, *IPS_COLUMNS} - {"outcome"})},
            {"when": {"outcome": ["denied", "already_running", "job_gone", "not_running"]},
             "fresh": sorted({"fault_family", "fault_code", "fault_reason", "sent_at", *IPS_COLUMNS})},
        ],
        "born_as": "sending or as a refusal made here",
        "later": ["ips_result"],
        "stages": [
            {"when": {"outcome": ["sending"]}, "writable": FINISH_COLUMNS},
            {"when": {"ips_result": [""], "operation": ["executeJob"], "outcome": ["accepted"]},
             "writable": IPS_COLUMNS},
        ],
        "once": ["ips_run_handle"],
        "clock": ["requested_at", "sent_at", "finished_at", "ips_result_at"],
        "deleted_by": "manage.py prune_executions",
    },
    "jobs_historyexport": {
        "kind": "a record",
        "row": "export",
        "done": "completed",
        "born": [{"when": {}, "fresh": []}],
        "born_as": "an export that has just started",
        "later": EXPORT_FINISH_COLUMNS,
        "stages": [{"when": {"finished_at": [None]}, "writable": EXPORT_FINISH_COLUMNS}],
        "once": [],
        "clock": ["at", "finished_at"],
        "deleted_by": "",
    },
    "jobs_membershipchange": {
        "kind": "a record",
        "row": "membership change",
        "done": "final",
        "born": [{"when": {}, "fresh": []}],
        "born_as": "a new change",
        "later": [],
        "stages": [],
        "once": [],
        "clock": ["at"],
        "deleted_by": "",
    },
}

#: The keys PostgreSQL sets NULL itself when their row is deleted.
UNLINKED_BY_DATABASE = {
    "jobs_execution": ["job_id", "company_id", "user_id"],
    "jobs_historyexport": ["user_id"],
    "jobs_membershipchange": ["actor_id", "user_id", "company_id"],
}

FUNCTION = f"""
CREATE OR REPLACE FUNCTION ipsadmin_append_only() RETURNS trigger
LANGUAGE plpgsql
-- pg_catalog first, pg_temp last: a session's temporary tables (searched first
-- by default) cannot stand in for what is read here.
SET search_path = pg_catalog, pg_temp
AS $guard$
DECLARE
    rules constant jsonb := TG_ARGV[0]::jsonb;
    what constant text := format('%s is %s', TG_TABLE_NAME, rules->>'kind');
    skew constant interval := interval '{CLOCK_SKEW_SECONDS} seconds';
    -- Who can drop this trigger anyway (the table's owner, a superuser) is held
    -- to the rules but not to what only binds those who cannot: the present
    -- time, the empty columns of a row as the service writes it.
    bound constant boolean := NOT pg_has_role(current_user,
        (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER');
    new_row jsonb;
    old_row jsonb;
    born jsonb;
    stage_no bigint;
    writable jsonb;
    col text;
    target record;
    still_there boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- The test runner's superuser empties tables so; the application never.
        IF NOT pg_has_role(current_user, 'ipsadmin_prune', 'MEMBER') THEN
            RAISE EXCEPTION '%: it is never truncated', what USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NULL;
    END IF;

    IF TG_OP = 'DELETE' THEN
        IF coalesce(rules->>'deleted_by', '') = '' THEN
            RAISE EXCEPTION '%: its rows are never deleted', what USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- Inside ipsadmin_prune_executions() only (migration 0007: SECURITY DEFINER).
        IF current_user <> 'ipsadmin_prune' THEN
            RAISE EXCEPTION '%: rows are deleted only by %', what, rules->>'deleted_by'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;

    new_row := to_jsonb(NEW);

    IF TG_OP = 'INSERT' THEN
        SELECT b INTO born FROM jsonb_array_elements(rules->'born') AS b
        WHERE NOT EXISTS (SELECT FROM jsonb_each(b->'when') AS w
                          WHERE NOT jsonb_build_array(new_row->w.key) <@ w.value)
        LIMIT 1;
        IF born IS NULL THEN
            RAISE EXCEPTION '%: a row starts as %, not %', what, rules->>'born_as',
                (SELECT jsonb_object_agg(k, new_row->k) FROM (
                    SELECT DISTINCT jsonb_object_keys(b->'when') AS k FROM jsonb_array_elements(rules->'born') AS b
                 ) AS keys)
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        FOR col IN SELECT jsonb_array_elements_text(rules->'later')
                   UNION ALL SELECT jsonb_array_elements_text(born->'fresh') WHERE bound LOOP
            IF new_row->col NOT IN ('null', '""') THEN
                RAISE EXCEPTION '%: a new % has no % yet', what, rules->>'row', col
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END LOOP;
        FOR col IN SELECT jsonb_array_elements_text(rules->'clock') WHERE bound LOOP
            IF (new_row->>col)::timestamptz NOT BETWEEN clock_timestamp() - skew AND clock_timestamp() + skew THEN
                RAISE EXCEPTION '%: % is the present time when it is written (the database''s clock, give or take %), not %',
                    what, col, skew, new_row->>col USING ERRCODE = 'insufficient_privilege';
            END IF;
        END LOOP;
        RETURN NULL;
    END IF;

    -- UPDATE: what may change is what the stage of the stored row lets change.
    old_row := to_jsonb(OLD);
    SELECT s.ord, s.stage->'writable' INTO stage_no, writable
    FROM jsonb_array_elements(rules->'stages') WITH ORDINALITY AS s(stage, ord)
    WHERE NOT EXISTS (SELECT FROM jsonb_each(s.stage->'when') AS w
                      WHERE NOT jsonb_build_array(old_row->w.key) <@ w.value)
    ORDER BY s.ord LIMIT 1;

    FOR col IN SELECT n.key FROM jsonb_each(new_row) AS n WHERE n.value IS DISTINCT FROM old_row->n.key LOOP
        SELECT format('%I.%I', tn.nspname, tc.relname) AS qualified, ta.attname AS key_column INTO target
        FROM pg_constraint AS c
        JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_class AS tc ON tc.oid = c.confrelid
        JOIN pg_namespace AS tn ON tn.oid = tc.relnamespace
        JOIN pg_attribute AS ta ON ta.attrelid = c.confrelid AND ta.attnum = c.confkey[1]
        WHERE c.conrelid = TG_RELID AND c.contype = 'f' AND a.attname = col;
        IF FOUND THEN
            -- A key: NULL only through the ON DELETE SET NULL of the row it points to.
            still_there := true;
            IF new_row->col = 'null' THEN
                EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %I = ($1).%I)', target.qualified,
                               target.key_column, col)
                    INTO still_there USING OLD;
            END IF;
            IF still_there THEN
                RAISE EXCEPTION '%: % % keeps its %: it becomes NULL only when that row is deleted', what,
                    rules->>'row',
                    (old_row->>'id') || CASE WHEN stage_no = 1 THEN '' ELSE ' is ' || (rules->>'done') || ' and' END,
                    col USING ERRCODE = 'insufficient_privilege';
            END IF;
            CONTINUE;
        END IF;
        IF NOT EXISTS (SELECT FROM jsonb_array_elements(rules->'stages') AS s WHERE s->'writable' ? col) THEN
            RAISE EXCEPTION '%: the identity of % % cannot change (%)', what, rules->>'row', old_row->>'id', col
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF writable IS NULL OR NOT writable ? col THEN
            IF stage_no = 1 THEN
                RAISE EXCEPTION '%: % % is not % yet: its % cannot change now', what, rules->>'row',
                    old_row->>'id', rules->>'done', col USING ERRCODE = 'insufficient_privilege';
            END IF;
            RAISE EXCEPTION '%: % % is % and its % cannot change', what, rules->>'row', old_row->>'id',
                rules->>'done', col USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF rules->'once' ? col AND old_row->col NOT IN ('null', '""') THEN
            RAISE EXCEPTION '%: the % of % % is set once', what, col, rules->>'row', old_row->>'id'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF bound AND rules->'clock' ? col
           AND (new_row->>col)::timestamptz NOT BETWEEN clock_timestamp() - skew AND clock_timestamp() + skew THEN
            RAISE EXCEPTION '%: % is the present time when it is written (the database''s clock, give or take %), not %',
                what, col, skew, new_row->>col USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$guard$;
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _triggers(table: str) -> str:
    rules = _literal(json.dumps(RULES[table], sort_keys=True, separators=(",", ":")))
    return f"""
-- {table}_append_only: every insert and update, judged as stored (AFTER every BEFORE trigger).
CREATE TRIGGER {table}_append_only AFTER INSERT OR UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION ipsadmin_append_only({rules});
-- {table}_no_delete: deletes (none, or the prune function's), refused before they happen.
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION ipsadmin_append_only({rules});
-- {table}_no_truncate: TRUNCATE fires no row trigger.
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION ipsadmin_append_only({rules});
"""


DROP_OLD = """
DROP TRIGGER IF EXISTS jobs_execution_audit_guard ON jobs_execution;
DROP TRIGGER IF EXISTS jobs_execution_no_truncate ON jobs_execution;
DROP FUNCTION IF EXISTS jobs_execution_audit_guard();
DROP TRIGGER IF EXISTS jobs_historyexport_guard ON jobs_historyexport;
DROP TRIGGER IF EXISTS jobs_historyexport_no_truncate ON jobs_historyexport;
DROP FUNCTION IF EXISTS jobs_historyexport_guard();
"""

DROP_NEW = "".join(
    f"DROP TRIGGER IF EXISTS {table}_{name} ON {table};\n"
    for table in RULES for name in ("append_only", "no_delete", "no_truncate")
) + "DROP FUNCTION IF EXISTS ipsadmin_append_only();\n"


def _set_keys(schema_editor, on_delete: str) -> None:
    """Re-create the foreign keys of UNLINKED_BY_DATABASE with ``on_delete`` (Django's are NO ACTION)."""
    with schema_editor.connection.cursor() as cursor:
        for table, columns in UNLINKED_BY_DATABASE.items():
            cursor.execute(
                """
                SELECT c.conname, a.attname, c.confrelid::regclass::text, ta.attname
                FROM pg_constraint AS c
                JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                JOIN pg_attribute AS ta ON ta.attrelid = c.confrelid AND ta.attnum = c.confkey[1]
                WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND a.attname = ANY(%s)
                """,
                [table, columns],
            )
            found = cursor.fetchall()
            assert sorted(f[1] for f in found) == sorted(columns), (table, found)
            for name, column, target, target_column in found:
                q = schema_editor.quote_name
                schema_editor.execute(
                    f"ALTER TABLE {q(table)} DROP CONSTRAINT {q(name)}, ADD CONSTRAINT {q(name)} "
                    f"FOREIGN KEY ({q(column)}) REFERENCES {target} ({q(target_column)}) {on_delete}"
                    "DEFERRABLE INITIALLY DEFERRED"
                )


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _set_keys(schema_editor, "ON DELETE SET NULL ")
    schema_editor.execute(DROP_OLD + FUNCTION + "".join(_triggers(t) for t in RULES), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(DROP_NEW, params=None)
    _set_keys(schema_editor, "")
    # The tables' own guards again: 0013's for exports, 0014's for executions.
    schema_editor.execute(importlib.import_module("jobs.migrations.0013_history_at_scale").EXPORT_GUARD, params=None)
    importlib.import_module("jobs.migrations.0014_audit_trail_closed").forward(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0014_audit_trail_closed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="membershipchange",
            options={"base_manager_name": "objects", "ordering": ["-at", "-id"]},
        ),
        migrations.AlterField(
            model_name="execution",
            name="company",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="executions", to="jobs.company"),
        ),
        migrations.AlterField(
            model_name="execution",
            name="job",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="executions", to="jobs.job"),
        ),
        migrations.AlterField(
            model_name="execution",
            name="user",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="executions", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name="historyexport",
            name="user",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name="membershipchange",
            name="actor",
            field=models.ForeignKey(blank=True, null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name="membershipchange",
            name="company",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="membership_changes", to="jobs.company"),
        ),
        migrations.AlterField(
            model_name="membershipchange",
            name="source",
            field=models.CharField(choices=[("admin", "Django admin"), ("demo", "demo data (load_demo)"),
                                            ("ips_sign_in", "sign-in with IPS"), ("ips_refresh", "refresh from IPS"),
                                            ("user_deleted", "user deleted"), ("company_deleted", "company deleted")],
                                   max_length=20),
        ),
        migrations.AlterField(
            model_name="membershipchange",
            name="user",
            field=models.ForeignKey(null=True, on_delete=jobs.models.append_only.set_null_by_database,
                                    related_name="membership_changes", to=settings.AUTH_USER_MODEL),
        ),
        # After the AlterFields: Django's schema editor may re-create a key's constraint, without ON DELETE.
        migrations.RunPython(forward, backward, elidable=False),
    ]
