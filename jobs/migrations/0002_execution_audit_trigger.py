"""The audit trail, guarded by PostgreSQL itself.

Execution.save()/delete() refuse changes in Python; this trigger refuses them
to every other client of the database too (raw SQL, psql, another program):

* UPDATE of an identity column (what was asked, by whom, from where, when);
* any UPDATE of a finished row (outcome other than 'sending'), except setting
  job_id, company_id or user_id to NULL: deleting a job, a company or a user
  sets them NULL (on_delete=SET_NULL) and must keep working;
* DELETE, unless the transaction ran ``SET LOCAL ipsadmin.allow_prune = 'on'``
  (manage.py prune_executions does).

TRUNCATE (test database flushes) fires no row trigger. On other databases
(SQLite in development and tests) this migration does nothing: Python-level
guards are all they get.
"""

from django.db import migrations

IDENTITY_COLUMNS = [
    "id",
    "operation",
    "company_handle",
    "job_handle",
    "job_name",
    "username",
    "role",
    "requested_at",
    "client_ip",
    "user_agent",
    "request_id",
]
FOREIGN_KEYS = ["job_id", "company_id", "user_id"]

_identity_changed = "\n       OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in IDENTITY_COLUMNS)
_fk_changed_not_to_null = "\n       OR ".join(
    f"(NEW.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c})" for c in FOREIGN_KEYS
)
_without_fks = " - ".join(["to_jsonb({row})", *(f"'{c}'" for c in FOREIGN_KEYS)])

CREATE = f"""
CREATE OR REPLACE FUNCTION jobs_execution_audit_guard() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF coalesce(current_setting('ipsadmin.allow_prune', true), '') <> 'on' THEN
            RAISE EXCEPTION 'jobs_execution is an audit trail: rows are deleted only by manage.py prune_executions'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;

    IF {_identity_changed} THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: the identity of execution % cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF OLD.outcome <> 'sending' AND (
       {_fk_changed_not_to_null}
       OR ({_without_fks.format(row="NEW")}) IS DISTINCT FROM ({_without_fks.format(row="OLD")})
    ) THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: execution % is finished (%) and cannot change', OLD.id, OLD.outcome
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$guard$;

DROP TRIGGER IF EXISTS jobs_execution_audit_guard ON jobs_execution;
CREATE TRIGGER jobs_execution_audit_guard
    BEFORE UPDATE OR DELETE ON jobs_execution
    FOR EACH ROW EXECUTE FUNCTION jobs_execution_audit_guard();
"""

DROP = """
DROP TRIGGER IF EXISTS jobs_execution_audit_guard ON jobs_execution;
DROP FUNCTION IF EXISTS jobs_execution_audit_guard();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            # params=None: the SQL's % are PL/pgSQL's, not placeholders.
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
