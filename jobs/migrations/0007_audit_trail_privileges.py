"""The audit trail, guarded by PostgreSQL against any SQL session of the app.

What migration 0002 (and 0005) guarded stays: identities never change, a
finished row never changes but for its IPS result (accepted runs, until it is
recorded), and FKs may only be set NULL. Added:

* INSERT only as the start of a row's life: 'sending', or a refusal made by
  the dashboard before anything was sent; never with an IPS result.
* DELETE only inside ipsadmin_prune_executions(), a SECURITY DEFINER function
  owned by the role ipsadmin_prune, which the application's role does not
  hold: a session variable (the old ipsadmin.allow_prune) is no privilege.
  The function keeps at least 30 days of history whoever calls it.
* TRUNCATE only by members of ipsadmin_prune (superusers are members of every
  role: they can also drop these triggers; see docs/deploy.md).

On SQLite nothing happens here: the model's guards are all it gets.
"""

from django.db import migrations

PRUNE_ROLE = "ipsadmin_prune"
PRUNE_MIN_DAYS = 30
IDENTITY_COLUMNS = [
    "id", "operation", "company_handle", "job_handle", "job_name", "username", "role",
    "requested_at", "client_ip", "user_agent", "request_id",
]
FOREIGN_KEYS = ["job_id", "company_id", "user_id"]
IPS_COLUMNS = [
    "ips_run_handle", "ips_run_name", "ips_state", "ips_progress", "ips_log_type", "ips_success_count",
    "ips_warning_count", "ips_error_count", "ips_duplicate_count", "ips_update_count", "ips_total_count",
    "ips_fatal", "ips_started_at", "ips_ended_at", "ips_runtime_ms", "ips_result", "ips_result_at",
]
INSERTABLE = ["sending", "denied", "already_running", "job_gone", "not_running"]


def _without(row: str, columns) -> str:
    return " - ".join([f"to_jsonb({row})", *(f"'{c}'" for c in columns)])


def _sql(schema: str) -> str:
    identity_changed = "\n       OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in IDENTITY_COLUMNS)
    fk_changed = "\n       OR ".join(f"(NEW.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c})" for c in FOREIGN_KEYS)
    insertable = ", ".join(f"'{o}'" for o in INSERTABLE)
    return f"""
DO $role$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PRUNE_ROLE}') THEN
        CREATE ROLE {PRUNE_ROLE} NOLOGIN;
    END IF;
END;
$role$;
GRANT USAGE ON SCHEMA {schema} TO {PRUNE_ROLE};
GRANT SELECT, DELETE ON {schema}.jobs_execution, {schema}.jobs_runfollow TO {PRUNE_ROLE};

CREATE OR REPLACE FUNCTION jobs_execution_audit_guard() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF NOT pg_has_role(current_user, '{PRUNE_ROLE}', 'MEMBER') THEN
            RAISE EXCEPTION 'jobs_execution is an audit trail: it is never truncated'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NULL;
    END IF;

    IF TG_OP = 'DELETE' THEN
        IF current_user <> '{PRUNE_ROLE}' THEN
            RAISE EXCEPTION 'jobs_execution is an audit trail: rows are deleted only by manage.py prune_executions'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW.outcome NOT IN ({insertable}) OR NEW.ips_result <> '' THEN
            RAISE EXCEPTION 'jobs_execution is an audit trail: a row starts as sending or as a refusal, not %', NEW.outcome
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;

    IF {identity_changed} THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: the identity of execution % cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF OLD.outcome <> 'sending' AND (
       {fk_changed}
       OR ({_without("NEW", FOREIGN_KEYS + IPS_COLUMNS)}) IS DISTINCT FROM ({_without("OLD", FOREIGN_KEYS + IPS_COLUMNS)})
    ) THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: execution % is finished (%) and cannot change', OLD.id, OLD.outcome
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- The IPS columns: only on an accepted run, only until its IPS result is recorded.
    IF OLD.outcome <> 'sending'
       AND ({_without("NEW", FOREIGN_KEYS)}) IS DISTINCT FROM ({_without("OLD", FOREIGN_KEYS)})
       AND (OLD.outcome <> 'accepted' OR OLD.operation <> 'executeJob' OR OLD.ips_result <> '') THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: the IPS result of execution % is final', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$guard$;

DROP TRIGGER IF EXISTS jobs_execution_audit_guard ON jobs_execution;
CREATE TRIGGER jobs_execution_audit_guard
    BEFORE INSERT OR UPDATE OR DELETE ON jobs_execution
    FOR EACH ROW EXECUTE FUNCTION jobs_execution_audit_guard();
DROP TRIGGER IF EXISTS jobs_execution_no_truncate ON jobs_execution;
CREATE TRIGGER jobs_execution_no_truncate
    BEFORE TRUNCATE ON jobs_execution
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_execution_audit_guard();

CREATE OR REPLACE FUNCTION ipsadmin_prune_executions(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $prune$
DECLARE
    deleted bigint;
BEGIN
    -- clock_timestamp(): now() is the transaction's start; a minute for the caller's clock.
    IF cutoff IS NULL OR cutoff > clock_timestamp() - interval '{PRUNE_MIN_DAYS} days' + interval '1 minute' THEN
        RAISE EXCEPTION 'keep at least {PRUNE_MIN_DAYS} days of history (cutoff %)', cutoff
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM jobs_runfollow WHERE execution_id IN (
        SELECT id FROM jobs_execution WHERE requested_at < cutoff AND outcome <> 'sending');
    DELETE FROM jobs_execution WHERE requested_at < cutoff AND outcome <> 'sending';
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$prune$;
ALTER FUNCTION ipsadmin_prune_executions(timestamptz) OWNER TO {PRUNE_ROLE};
REVOKE ALL ON FUNCTION ipsadmin_prune_executions(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ipsadmin_prune_executions(timestamptz) TO CURRENT_USER;
"""


BACK = """
DROP TRIGGER IF EXISTS jobs_execution_no_truncate ON jobs_execution;
DROP FUNCTION IF EXISTS ipsadmin_prune_executions(timestamptz);
DROP TRIGGER IF EXISTS jobs_execution_audit_guard ON jobs_execution;
CREATE TRIGGER jobs_execution_audit_guard
    BEFORE UPDATE OR DELETE ON jobs_execution
    FOR EACH ROW EXECUTE FUNCTION jobs_execution_audit_guard();
"""


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        (schema,) = cursor.fetchone()
    schema_editor.execute(_sql(schema), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACK, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0006_stop_runs"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
