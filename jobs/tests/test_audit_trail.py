"""The audit trail (jobs_execution) cannot be rewritten, through SQL or through the ORM.

On PostgreSQL the trigger and roles of migration 0007 guard it even from SQL run as the
application's own (non-superuser) role: no TRUNCATE, DELETE only by the prune function,
which keeps 30 days, a row is born `sending` (or a refusal) and finished once, keeps its
job, company and user, and its run is named once. Through the ORM, the base manager,
`save()` of a new instance, `_raw_delete()`, `create()` and `bulk_create()` are guarded.
"""

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from jobs.models import Execution

from .conftest import make_execution

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: the database's own guards exist only there"
)


# --- Through SQL, as the application's own (non-superuser) role ----------------------

APP_ROLE = "ipsadmin_test_app"


@pytest.fixture
def as_app_role(db):
    """Run SQL as a role like a careless deploy's app role: every privilege on the table."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the database's own guards exist only there")
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') "
            f"THEN CREATE ROLE {APP_ROLE} NOLOGIN; END IF; END $$;"
        )
        cursor.execute(f"GRANT ALL ON jobs_execution, jobs_runfollow TO {APP_ROLE}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")

    def run(sql, params=()):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {APP_ROLE}")
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    return run


_INSERT = (
    "INSERT INTO jobs_execution (operation, job_id, company_id, company_handle, job_handle, job_name, user_id,"
    " username, role, role_from_ips, outcome, message, fault_family, fault_reason, requested_at, user_agent,"
    " request_id, ips_run_handle, ips_run_name, ips_state, ips_log_type, ips_result)"
    " VALUES ('executeJob', %s, %s, '47', '47|x|', 'x', NULL, 'forger', 'IpsUser', false, %s, '', '', '', now(),"
    " '', 'forged', '', '', '', '', '') RETURNING id"
)


@on_postgresql
@pytest.mark.postgres
def test_the_app_role_cannot_truncate_the_audit_trail(as_app_role, job, users):
    make_execution(job, users["IpsUser"], "accepted")
    with pytest.raises(DatabaseError, match="never truncated"):
        # (Django's deferred FK checks of this test's inserts fire first.)
        as_app_role("SET CONSTRAINTS ALL IMMEDIATE; TRUNCATE jobs_execution CASCADE")
    assert Execution.objects.count() == 1


@on_postgresql
@pytest.mark.postgres
def test_a_session_variable_no_longer_lets_anyone_delete(as_app_role, job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    for setting in ("SET LOCAL ipsadmin.allow_prune = 'on'", "SET ipsadmin.allow_prune = 'on'"):
        with pytest.raises(DatabaseError, match="prune_executions"):
            as_app_role(f"{setting}; DELETE FROM jobs_execution WHERE id = {row.pk}")
    with pytest.raises(DatabaseError, match="permission denied"):
        as_app_role("SELECT ipsadmin_prune_executions(now() - interval '400 days')")
    assert Execution.objects.filter(pk=row.pk).exists()


@on_postgresql
@pytest.mark.postgres
def test_a_row_is_born_sending_and_finished_once(as_app_role, job):
    with pytest.raises(DatabaseError, match="starts as sending"):
        as_app_role(_INSERT, [job.pk, job.company.pk, "accepted"])
    [(pk,)] = as_app_role(_INSERT, [job.pk, job.company.pk, "sending"])
    as_app_role("UPDATE jobs_execution SET outcome = 'accepted' WHERE id = %s", [pk])  # the app's own path
    with pytest.raises(DatabaseError, match="finished"):
        as_app_role("UPDATE jobs_execution SET outcome = 'refused' WHERE id = %s", [pk])
    with pytest.raises(DatabaseError, match="finished"):
        as_app_role("UPDATE jobs_execution SET outcome = 'sending' WHERE id = %s", [pk])


@on_postgresql
@pytest.mark.postgres
def test_prune_runs_only_as_the_prune_role_and_keeps_30_days(job, users):
    old = make_execution(job, users["IpsUser"], "accepted", requested_at=timezone.now() - dt.timedelta(days=40))
    with pytest.raises(DatabaseError, match="keep at least 30 days"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT ipsadmin_prune_executions(now() - interval '1 day')")
    assert Execution.objects.prune(before=timezone.now() - dt.timedelta(days=30)) == 1
    assert not Execution.objects.filter(pk=old.pk).exists()


@on_postgresql
@pytest.mark.postgres
def test_a_sending_row_keeps_its_company_and_its_run_is_named_once(as_app_role, job, users, other_company):
    row = make_execution(job, users["IpsUser"], "sending")
    with pytest.raises(DatabaseError, match="keeps its job, company and user"):
        as_app_role("UPDATE jobs_execution SET company_id = %s WHERE id = %s", [other_company.pk, row.pk])
    as_app_role("UPDATE jobs_execution SET job_id = NULL WHERE id = %s", [row.pk])  # a deleted job: allowed
    as_app_role("UPDATE jobs_execution SET ips_run_handle = '47||x_1' WHERE id = %s", [row.pk])
    with pytest.raises(DatabaseError, match="named once"):
        as_app_role("UPDATE jobs_execution SET ips_run_handle = '47||y_2' WHERE id = %s", [row.pk])
    with pytest.raises(DatabaseError, match="identity"):
        as_app_role("UPDATE jobs_execution SET role_from_ips = true WHERE id = %s", [row.pk])


# --- Through the ORM ------------------------------------------------------------------


def test_the_base_manager_cannot_update(job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    with pytest.raises(PermissionError):
        Execution._base_manager.filter(pk=row.pk).update(outcome="refused")
    with pytest.raises(PermissionError):
        Execution._default_manager.filter(pk=row.pk).update(message="rewritten")


def test_saving_a_new_instance_over_a_finished_row_is_refused(job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    forged = Execution(pk=row.pk, **{f.attname: getattr(row, f.attname) for f in Execution._meta.concrete_fields
                                     if f.attname != "id"})
    forged.outcome, forged.message = "refused", "forged"
    with pytest.raises(PermissionError):
        forged.save()
    assert Execution.objects.get(pk=row.pk).outcome == "accepted"


def test_raw_delete_is_refused(job, users):
    make_execution(job, users["IpsUser"], "accepted")
    qs = Execution.objects.all()
    with pytest.raises(PermissionError):
        qs._raw_delete(qs.db)
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("outcome", ["accepted", "refused", "interrupted", "timed_out"])
def test_a_row_cannot_be_created_finished(outcome, job, users):
    values = dict(job=job, company=job.company, company_handle="47", job_handle=job.handle, job_name=job.name,
                  username="forger", requested_at=timezone.now(), request_id="forged", outcome=outcome)
    with pytest.raises(PermissionError):
        Execution.objects.create(**values)
    with pytest.raises(PermissionError):
        Execution.objects.bulk_create([Execution(**values)])
    assert not Execution.objects.exists()
