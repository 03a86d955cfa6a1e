"""The audit trigger of migration 0007, closing what a review found open.

* ``role_from_ips`` and ``role_read_at`` (migration 0011) are identity
  columns like ``role``: what the press was told about the person's role.
* A row's job, company and user may only be set NULL (their deletion), on a
  'sending' row too: re-pointing one would move the row to another
  company's history.
* ``ips_run_handle`` is set once: from empty to the run IPS named.
Everything else of 0007 stays as it was.
"""

import importlib

from django.db import migrations

PRUNE_ROLE = "ipsadmin_prune"
PRUNE_MIN_DAYS = 30
IDENTITY_COLUMNS = [
    "id", "operation", "company_handle", "job_handle", "job_name", "username", "role", "role_from_ips",
    "role_read_at", "requested_at", "client_ip", "user_agent", "request_id",
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

    IF OLD.ips_run_handle <> '' AND NEW.ips_run_handle IS DISTINCT FROM OLD.ips_run_handle THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: the IPS run of execution % is named once', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF OLD.outcome <> 'sending' AND (
       {fk_changed}
       OR ({_without("NEW", FOREIGN_KEYS + IPS_COLUMNS)}) IS DISTINCT FROM ({_without("OLD", FOREIGN_KEYS + IPS_COLUMNS)})
    ) THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: execution % is finished (%) and cannot change', OLD.id, OLD.outcome
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- A 'sending' row too: re-pointing it would move it to another company's history.
    IF {fk_changed} THEN
        RAISE EXCEPTION 'jobs_execution is an audit trail: execution % keeps its job, company and user (or loses them)', OLD.id
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




def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        (schema,) = cursor.fetchone()
    schema_editor.execute(_sql(schema), params=None)


def backward(apps, schema_editor):
    # 0007's function again: this one only added checks.
    previous = importlib.import_module("jobs.migrations.0007_audit_trail_privileges")
    previous.forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0013_history_at_scale"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
