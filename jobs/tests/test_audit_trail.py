"""The audit trail (jobs_execution) cannot be rewritten, through SQL or through the ORM.

On PostgreSQL the guard of migration 0015 (one trigger function for every append-only
table) and the roles of docs/deploy.md hold even against SQL run as the application's
own role (``app_role``: exactly the recipe's grants): no TRUNCATE, no trigger of its own,
DELETE only by the prune function, which keeps 30 days; a row is born `sending` (or a
refusal) at the present time with no outcome yet, finished once, keeps its job, company
and user until they are deleted, and its run is named once. Through the ORM, the base
manager, `save()` of a new instance or of one loaded in part, `_raw_delete()`,
`create()`, `bulk_create()` and `bulk_update()` are guarded.
"""

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from jobs.models import Execution, Job

from .conftest import make_execution
from .pg_roles import app_role, careless_role  # noqa: F401  (fixtures)

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: the database's own guards exist only there"
)


# --- Through SQL, as the application's own (non-superuser) role ----------------------
# ``app_role`` is the role of docs/deploy.md, with exactly the grants it documents.

_INSERT = (
    "INSERT INTO jobs_execution (operation, job_id, company_id, company_handle, job_handle, job_name, user_id,"
    " username, role, role_from_ips, outcome, message, fault_family, fault_reason, requested_at, user_agent,"
    " request_id, ips_run_handle, ips_run_name, ips_state, ips_log_type, ips_result)"
    " VALUES ('executeJob', %s, %s, '47', '47|x|', 'x', NULL, 'forger', 'IpsUser', false, %s, '', '', '', now(),"
    " '', 'forged', '', '', '', '', '') RETURNING id"
)


@on_postgresql
@pytest.mark.postgres
def test_the_app_role_cannot_truncate_the_audit_trail(app_role, careless_role, job, users):
    make_execution(job, users["IpsUser"], "accepted")
    # (Django's deferred FK checks of this test's inserts fire first.)
    with pytest.raises(DatabaseError, match="permission denied"):
        app_role.run("SET CONSTRAINTS ALL IMMEDIATE; TRUNCATE jobs_execution CASCADE")
    # Granted TRUNCATE by mistake, still refused by the guard.
    with pytest.raises(DatabaseError, match="never truncated"):
        careless_role.run("SET CONSTRAINTS ALL IMMEDIATE; TRUNCATE jobs_execution CASCADE")
    assert Execution.objects.count() == 1


@on_postgresql
@pytest.mark.postgres
def test_a_session_variable_no_longer_lets_anyone_delete(app_role, careless_role, job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    with pytest.raises(DatabaseError, match="permission denied"):
        app_role.run(f"DELETE FROM jobs_execution WHERE id = {row.pk}")
    for setting in ("SET LOCAL ipsadmin.allow_prune = 'on'", "SET ipsadmin.allow_prune = 'on'"):
        with pytest.raises(DatabaseError, match="prune_executions"):
            careless_role.run(f"{setting}; DELETE FROM jobs_execution WHERE id = {row.pk}")
    with pytest.raises(DatabaseError, match="permission denied"):
        app_role.run("SELECT ipsadmin_prune_executions(now() - interval '400 days')")
    assert Execution.objects.filter(pk=row.pk).exists()


@on_postgresql
@pytest.mark.postgres
def test_a_row_is_born_sending_and_finished_once(app_role, job):
    with pytest.raises(DatabaseError, match="starts as sending"):
        app_role.run(_INSERT, [job.pk, job.company.pk, "accepted"])
    [(pk,)] = app_role.run(_INSERT, [job.pk, job.company.pk, "sending"])
    app_role.run("UPDATE jobs_execution SET outcome = 'accepted' WHERE id = %s", [pk])  # the app's own path
    with pytest.raises(DatabaseError, match="finished"):
        app_role.run("UPDATE jobs_execution SET outcome = 'refused' WHERE id = %s", [pk])
    with pytest.raises(DatabaseError, match="finished"):
        app_role.run("UPDATE jobs_execution SET outcome = 'sending' WHERE id = %s", [pk])


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
def test_a_sending_row_keeps_its_company_and_its_run_is_named_once(app_role, job, users, other_company):
    row = make_execution(job, users["IpsUser"], "sending")
    with pytest.raises(DatabaseError, match="keeps its company_id"):
        app_role.run("UPDATE jobs_execution SET company_id = %s WHERE id = %s", [other_company.pk, row.pk])
    # NULL only when the job itself is deleted (below), not while it exists.
    with pytest.raises(DatabaseError, match="keeps its job_id"):
        app_role.run("UPDATE jobs_execution SET job_id = NULL WHERE id = %s", [row.pk])
    app_role.run("UPDATE jobs_execution SET ips_run_handle = '47||x_1' WHERE id = %s", [row.pk])
    with pytest.raises(DatabaseError, match="set once"):
        app_role.run("UPDATE jobs_execution SET ips_run_handle = '47||y_2' WHERE id = %s", [row.pk])
    with pytest.raises(DatabaseError, match="identity"):
        app_role.run("UPDATE jobs_execution SET role_from_ips = true WHERE id = %s", [row.pk])


_PROMOTE = """
CREATE FUNCTION pg_temp.promote() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.outcome := 'accepted';
    NEW.role := 'IpsAdmin';
    NEW.message := 'IPS accepted it.';
    RETURN NEW;
END $$;
CREATE TRIGGER zz_promote BEFORE INSERT ON jobs_execution FOR EACH ROW EXECUTE FUNCTION pg_temp.promote();
"""


@on_postgresql
@pytest.mark.postgres
def test_the_app_role_cannot_add_a_trigger_that_rewrites_rows_after_the_guard(app_role, job):
    """The second attack's bypass: a trigger named to fire after the guard turned a refusal into a run."""
    with pytest.raises(DatabaseError, match="permission denied for table jobs_execution"):
        app_role.run(_PROMOTE)
    [(pk,)] = app_role.run(_INSERT, [job.pk, job.company.pk, "denied"])
    assert Execution.objects.get(pk=pk).outcome == "denied"


@on_postgresql
@pytest.mark.postgres
def test_even_a_role_holding_trigger_cannot_rewrite_a_row_past_the_guard(careless_role, job):
    """GRANT ALL (the TRIGGER privilege) is what check --deploy refuses; if one slips through,
    the guard still judges the row as it is stored, after every BEFORE trigger."""
    careless_role.run(_PROMOTE)
    with pytest.raises(DatabaseError, match="starts as sending"):
        careless_role.run(_INSERT, [job.pk, job.company.pk, "denied"])
    assert not Execution.objects.filter(outcome="accepted").exists()


def _forge(role, job, **values):
    """An INSERT of an execution row by hand, as ``role``; returns its id."""
    row = dict(operation="executeJob", job_id=job.pk, company_id=job.company_id, company_handle="47",
               job_handle=job.handle, job_name=job.name, user_id=None, username="forger", role="IpsAdmin",
               role_from_ips=False, outcome="sending", message="", fault_family="", fault_reason="",
               requested_at=timezone.now(), user_agent="", request_id="forged", ips_run_handle="",
               ips_run_name="", ips_state="", ips_log_type="", ips_result="")
    row.update(values)
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    [(pk,)] = role.run(f"INSERT INTO jobs_execution ({columns}) VALUES ({marks}) RETURNING id", list(row.values()))
    return pk


@on_postgresql
@pytest.mark.postgres
@pytest.mark.parametrize("days", [-400, -1, 1])
def test_the_app_role_cannot_insert_a_row_of_another_day(app_role, job, days):
    with pytest.raises(DatabaseError, match="requested_at is the present time"):
        _forge(app_role, job, requested_at=timezone.now() + dt.timedelta(days=days))
    assert not Execution.objects.exists()


@on_postgresql
@pytest.mark.postgres
@pytest.mark.parametrize("outcome, column, value", [
    ("sending", "message", "IPS accepted it."),
    ("sending", "finished_at", "now"),
    ("sending", "duration_ms", 1200),
    ("sending", "sent_at", "now"),
    ("sending", "ips_state", "Done"),
    ("sending", "ips_success_count", 5),
    ("sending", "ips_result_at", "now"),
    ("denied", "fault_code", 30000),
    ("denied", "sent_at", "now"),
    ("denied", "ips_run_handle", "47||x_1"),
])
def test_a_new_row_has_no_outcome_yet(app_role, job, outcome, column, value):
    value = timezone.now() if value == "now" else value
    with pytest.raises(DatabaseError, match=f"has no {column} yet"):
        _forge(app_role, job, outcome=outcome, **{column: value})
    _forge(app_role, job, outcome=outcome)  # the same row as the service writes it
    assert Execution.objects.get().outcome == outcome


@on_postgresql
@pytest.mark.postgres
def test_a_forged_sending_row_is_not_finished_with_a_result_nor_in_the_past(app_role, job):
    pk = _forge(app_role, job)
    with pytest.raises(DatabaseError, match="cannot change"):
        app_role.run("UPDATE jobs_execution SET outcome = 'accepted', ips_result = 'ok' WHERE id = %s", [pk])
    with pytest.raises(DatabaseError, match="finished_at is the present time"):
        app_role.run("UPDATE jobs_execution SET outcome = 'accepted', finished_at = now() - interval '1 day'"
                     " WHERE id = %s", [pk])
    with pytest.raises(DatabaseError, match="sent_at is the present time"):
        app_role.run("UPDATE jobs_execution SET sent_at = now() + interval '1 hour' WHERE id = %s", [pk])
    # What the service itself writes, when it writes it.
    app_role.run("UPDATE jobs_execution SET sent_at = clock_timestamp() WHERE id = %s", [pk])
    app_role.run("UPDATE jobs_execution SET outcome = 'accepted', finished_at = clock_timestamp(), duration_ms = 5"
                 " WHERE id = %s", [pk])
    app_role.run("UPDATE jobs_execution SET ips_result = 'ok', ips_result_at = clock_timestamp() WHERE id = %s", [pk])
    assert Execution.objects.get(pk=pk).ips_result == "ok"


@on_postgresql
@pytest.mark.postgres
@pytest.mark.parametrize("column", ["company_id", "job_id", "user_id"])
def test_a_finished_row_is_not_hidden_by_unlinking_it(app_role, job, users, column):
    """NULL only through ON DELETE SET NULL: the company (job, user) deleted, not merely forgotten."""
    row = make_execution(job, users["IpsUser"], "accepted")
    with pytest.raises(DatabaseError, match=f"keeps its {column}"):
        app_role.run(f"UPDATE jobs_execution SET {column} = NULL WHERE id = %s", [row.pk])
    assert getattr(Execution.objects.get(pk=row.pk), column) is not None


@on_postgresql
@pytest.mark.postgres
def test_deleting_a_company_job_or_user_as_the_app_role_unlinks_their_rows(app_role, job, users):
    """What the app does (the admin deletes a company or a user): the database sets the keys NULL."""
    row = make_execution(job, users["IpsUser"], "accepted")
    with app_role.acting():
        users["IpsUser"].delete()
        for each in Job.objects.filter(company=job.company):  # (a company's jobs are deleted first: PROTECT)
            each.delete()
        job.company.delete()
    row = Execution.objects.get(pk=row.pk)
    assert (row.company_id, row.job_id, row.user_id) == (None, None, None)
    assert (row.company_handle, row.username, row.outcome) == ("47", "ipsuser", "accepted")


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


@pytest.mark.parametrize("load", [
    lambda rows: rows.only("id"),
    lambda rows: rows.defer("outcome", "message"),
    lambda rows: rows.only("id", "ips_result"),
])
def test_a_finished_row_loaded_in_part_cannot_be_rewritten(load, job, users):
    """`only('id')` then save(): the stored outcome was never read, so the guard reads it (SQLite had no other)."""
    row = make_execution(job, users["IpsUser"], "refused", fault_reason="Disk full")
    partial = load(Execution.objects.filter(pk=row.pk)).get()
    partial.outcome, partial.message, partial.role = "accepted", "IPS accepted it.", "IpsAdmin"
    with pytest.raises(PermissionError):
        partial.save()
    partial = load(Execution.objects.filter(pk=row.pk)).get()
    partial.message = "rewritten"
    with pytest.raises(PermissionError):
        partial.save()
    stored = Execution.objects.get(pk=row.pk)
    assert (stored.outcome, stored.message, stored.role) == ("refused", row.message, "IpsUser")


def test_a_sending_row_loaded_in_part_is_finished_like_a_whole_one(job, users):
    row = make_execution(job, users["IpsUser"], "sending")
    partial = Execution.objects.only("id").get(pk=row.pk)
    partial.message = "IPS accepted it."
    partial.save()
    assert Execution.objects.get(pk=row.pk).message == "IPS accepted it."
    partial.role = "IpsAdmin"  # identity: whichever fields were loaded
    with pytest.raises(PermissionError):
        partial.save()


def test_reading_a_deferred_field_does_not_make_a_change_look_stored(job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    partial = Execution.objects.only("id").get(pk=row.pk)
    partial.message = "rewritten"
    assert partial.outcome == "accepted"  # loads the field from the database, as Django does
    with pytest.raises(PermissionError):
        partial.save()
    assert Execution.objects.get(pk=row.pk).message == row.message


def test_bulk_update_is_refused(job, users):
    row = make_execution(job, users["IpsUser"], "accepted")
    row.message = "rewritten"
    with pytest.raises(PermissionError):
        Execution.objects.bulk_update([row], ["message"])
    assert Execution.objects.get(pk=row.pk).message != "rewritten"


def test_a_change_left_out_of_update_fields_is_written_by_the_next_save(job, users):
    """send_stop names the run, mark_sent saves only sent_at, finish() saves the rest."""
    row = make_execution(job, users["IpsUser"], "sending")
    row.ips_run_handle = "47||My Test Job_1"
    row.sent_at = timezone.now()
    row.save(update_fields=["sent_at"])
    assert Execution.objects.get(pk=row.pk).ips_run_handle == ""
    row.save()
    assert Execution.objects.get(pk=row.pk).ips_run_handle == "47||My Test Job_1"
