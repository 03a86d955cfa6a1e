"""The findings of the attack on the running dashboard, one test (or table) each.

Each failed on the main before the fix; docs/reliability.md lists them.
"""

import datetime as dt
import io
import json
import logging

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs import crypto, roles
from jobs.models import Connection, Execution, Job, Membership, MembershipChange

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, SUPERUSER, make_execution, press_run, soap_calls

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: the database's own guards exist only there"
)


# --- 1. Refusals carry only the refusal ------------------------------------------------

# Action -> (method, url maker, the IPS operation whose user types may read the job's data there).
ACTIONS = {
    "run": ("post", lambda job, ex: reverse("jobs:run", args=[job.pk]), "getScheduledJobs"),
    "stop": ("post", lambda job, ex: reverse("jobs:stop", args=[job.pk]), "getScheduledJobs"),
    "sync": ("post", lambda job, ex: reverse("jobs:sync", args=[job.company.pk]), "getScheduledJobs"),
    "status": ("get", lambda job, ex: reverse("jobs:status", args=[job.pk]), "getScheduledJobs"),
    "details": ("get", lambda job, ex: reverse("jobs:run_detail", args=[ex.pk]), "getJobLogs"),
    "history": ("get", lambda job, ex: reverse("jobs:history"), "getJobLogs"),
}


def _may_read(actor, operation) -> bool:
    if actor == SUPERUSER:
        return True
    return actor in roles.UserType.values and roles.is_authorized(actor, operation)


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("actor", [a for a in ALL_ACTORS if a != ANONYMOUS])
def test_a_refusal_says_only_why(actor, action, client, login, users, job):
    job.description = "Secret nightly description"
    job.exec_schedule = "0 13 37 * * ?"
    job.save()
    last = make_execution(job, users["TrialSiteUser"], "accepted")  # "trialsiteuser" ran it last
    method, url, reading = ACTIONS[action]
    login(actor)
    response = getattr(client, method)(url(job, last), **HTMX)
    body = response.content.decode()
    if _may_read(actor, reading):
        assert response.status_code < 500
        return
    for secret in (job.name, job.description, job.exec_schedule, "trialsiteuser", job.handle):
        assert escape(secret) not in body and secret not in body, (actor, action, secret)


# --- 2. Audit rows through SQL, as the application's own (non-superuser) role ------------

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


# --- 3. Audit rows through the ORM ---------------------------------------------------


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


# --- 4. Staff escalate themselves --------------------------------------------------------


@pytest.fixture
def staff(db, users, company):
    """A staff user, IpsCompanyAdmin in 47, with Django's membership permissions."""
    user = users["IpsCompanyAdmin"]
    user.is_staff = True
    user.save()
    perms = Permission.objects.filter(codename__in=["add_membership", "change_membership", "delete_membership",
                                                    "view_membership", "view_company", "view_user"])
    user.user_permissions.add(*perms)
    client = Client()
    client.force_login(user)
    return user, client


def _membership_form(membership, role):
    return {"role": role, "_save": "Save"}


def test_staff_cannot_raise_their_own_role(staff, company):
    user, client = staff
    own = Membership.objects.get(user=user, company=company)
    response = client.post(reverse("admin:jobs_membership_change", args=[own.pk]), _membership_form(own, "IpsAdmin"))
    assert response.status_code == 403
    assert Membership.objects.get(pk=own.pk).role == "IpsCompanyAdmin"


def test_staff_cannot_add_themselves_to_another_company(staff, other_company):
    user, client = staff
    response = client.post(reverse("admin:jobs_membership_add"),
                           {"user": user.pk, "company": other_company.pk, "role": "IpsAdmin", "_save": "Save"})
    assert response.status_code == 403
    assert not Membership.objects.filter(user=user, company=other_company).exists()


def test_even_who_may_grant_roles_cannot_grant_their_own(staff, company, other_company):
    user, client = staff
    user.user_permissions.add(Permission.objects.get(codename="grant_ips_roles"))
    own = Membership.objects.get(user=user, company=company)
    assert client.post(reverse("admin:jobs_membership_change", args=[own.pk]),
                       _membership_form(own, "IpsAdmin")).status_code == 403
    response = client.post(reverse("admin:jobs_membership_add"),
                           {"user": user.pk, "company": other_company.pk, "role": "IpsAdmin", "_save": "Save"})
    assert "Nobody changes their own IPS user type" in response.content.decode()
    assert not Membership.objects.filter(user=user, company=other_company).exists()
    # Not through the inline of the company page either.
    page = client.get(reverse("admin:jobs_company_change", args=[company.pk]))
    assert page.status_code in (200, 403)
    assert Membership.objects.get(pk=own.pk).role == "IpsCompanyAdmin"


def test_who_may_grant_roles_changes_others_and_it_is_recorded(staff, users, company):
    user, client = staff
    user.user_permissions.add(Permission.objects.get(codename="grant_ips_roles"))
    target = Membership.objects.get(user=users["TrialSiteUser"], company=company)
    response = client.post(reverse("admin:jobs_membership_change", args=[target.pk]),
                           _membership_form(target, "ImagePortalUser"))
    assert response.status_code == 302, response.content[:500]
    assert Membership.objects.get(pk=target.pk).role == "ImagePortalUser"
    [change] = MembershipChange.objects.all()
    assert (change.actor_name, change.username, change.company_handle, change.role_before, change.role_after,
            change.source) == ("ipscompanyadmin", "trialsiteuser", "47", "TrialSiteUser", "ImagePortalUser", "admin")
    # Taking rights away takes effect at the next request.
    assert company.role_of(users["TrialSiteUser"]) == "ImagePortalUser"
    admin = Client()
    admin.force_login(users[SUPERUSER])
    assert "ImagePortalUser" in admin.get(reverse("admin:jobs_membershipchange_changelist")).content.decode()
    with pytest.raises(PermissionError):
        change.delete()


def test_a_superuser_removes_a_membership_and_it_is_recorded(users, company):
    admin = Client()
    admin.force_login(users[SUPERUSER])
    target = Membership.objects.get(user=users["IpsUser"], company=company)
    response = admin.post(reverse("admin:jobs_membership_delete", args=[target.pk]), {"post": "yes"})
    assert response.status_code == 302
    [change] = MembershipChange.objects.all()
    assert (change.role_before, change.role_after, change.actor_name) == ("IpsUser", "", "admin")


# --- 5. Messages that say exactly what happened -----------------------------------------


def test_a_failed_look_before_running_says_nothing_was_started(client, login, job, ips_emulator):
    ips_emulator.state.inject("drop_connection", operation="getActiveJobs")
    login("IpsUser")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    row = Execution.objects.get()
    assert "Nothing was started" in row.message and "may or may not" not in row.message
    assert row.sent_at is None and soap_calls(ips_emulator, "executeJob") == []


def test_an_http_500_from_ips_is_not_unreachable(client, login, job, ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="executeJob")
    login("IpsUser")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    row = Execution.objects.get()
    assert row.outcome == "ips_error" and row.get_outcome_display() == "IPS error page"
    assert "HTTP 500 error page" in row.message


def test_an_interrupted_start_says_when_run_is_offered_again(client, login, users, job):
    other = make_execution(job, users["IpsUser"], "sending")
    login("TrialSiteUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    again = timezone.localtime(other.requested_at + Execution.stale_after())
    assert f"offered again from {again:%H:%M:%S}" in response.content.decode()
    assert "Nothing was sent" in response.content.decode()


def test_an_already_running_refusal_has_no_sent_time(clock_free_run, client, login, job, ips_emulator):
    login("TrialSiteUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    row = Execution.objects.filter(username="trialsiteuser").get()
    assert row.outcome == "already_running" and row.sent_at is None


@pytest.fixture
def clock_free_run(ips_emulator, job, users):
    ips_emulator.state.job_duration = 3600
    assert press_run(job, users["IpsUser"]).outcome == "accepted"


@pytest.mark.parametrize("actor, shown", [("IpsUser", False), ("admin", True)])
def test_ips_addresses_are_for_staff_only(actor, shown, client, login, job, unused_url):
    connection_ = job.company.connection
    connection_.service_url = unused_url
    connection_.save()
    login(actor)
    body = client.post(reverse("jobs:run", args=[job.pk]), **HTMX).content.decode()
    row = Execution.objects.get()
    assert unused_url not in row.message
    assert (unused_url in body) is shown
    assert "refused the connection" in body


# --- 6. Log injection ---------------------------------------------------------------------


def test_a_value_with_a_newline_cannot_forge_a_log_line(settings, client, login, job, ips_emulator):
    from django.utils.log import configure_logging

    stream = io.StringIO()
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    try:
        ips_emulator.state.inject("soap_fault", operation="executeJob", code=30000,
                                  reason='Disk full\n{"level": "INFO", "message": "FORGED all good"}')
        login("IpsUser")
        client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    finally:
        handler.setStream(__import__("sys").stderr)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [r for r in records if r["logger"].startswith("jobs.services.")]
    assert mine and all(r["request_id"] != "-" for r in mine)
    assert not any(r.get("message") == "FORGED all good" for r in records)
    assert any("FORGED all good" in r["message"] and "Disk full" in r["message"] for r in mine)


# --- 7. Password spraying -----------------------------------------------------------------


def test_spraying_many_user_names_from_one_address_is_throttled(db, settings):
    settings.AXES_IP_FAILURE_LIMIT = 20
    get_user_model().objects.create_user("real", password="right")
    browser = Client(REMOTE_ADDR="198.51.100.7")
    statuses = []
    for n in range(25):
        for attempt in range(4):
            response = browser.post(reverse("login"), {"username": f"user{n}", "password": f"guess{attempt}"})
            statuses.append(response.status_code)
    assert statuses[:19] == [200] * 19  # the login page again, each with its error
    assert set(statuses[19:]) == {429}  # the 20th failure from this address locks it out
    locked = browser.post(reverse("login"), {"username": "real", "password": "right"})
    assert locked.status_code == 429
    assert "paused for 15 min after the last failed attempt" in locked.content.decode()
    elsewhere = Client(REMOTE_ADDR="198.51.100.8")
    assert elsewhere.post(reverse("login"), {"username": "real", "password": "right"}).status_code == 302


# --- 8. Keys ------------------------------------------------------------------------------


def test_the_development_key_is_the_checkouts_own(settings, tmp_path):
    import base64
    import hashlib

    settings.IPSADMIN_ENCRYPTION_KEY = ""
    settings.IPSADMIN_DEV_KEY_FILE = tmp_path / "dev-key"
    token = crypto.encrypt("s3cret")
    assert settings.IPSADMIN_DEV_KEY_FILE.stat().st_mode & 0o777 == 0o600
    public = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
    with pytest.raises(InvalidToken):
        Fernet(public).decrypt(token.encode())
    assert crypto.decrypt(token) == "s3cret"  # the same key next time
    assert Fernet(settings.IPSADMIN_DEV_KEY_FILE.read_bytes().strip()).decrypt(token.encode()) == b"s3cret"


def test_keys_rotate(db, settings, ips_emulator):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.IPSADMIN_ENCRYPTION_KEY = old
    conn = Connection(name="Rotating", service_url=ips_emulator.service_url, username="service@example.com")
    conn.set_password("demo")
    conn.save()
    settings.IPSADMIN_ENCRYPTION_KEY = f"{new},{old}"
    assert conn.get_password() == "demo"  # still read with the old key
    out = io.StringIO()
    call_command("rotate_ips_passwords", stdout=out)
    assert "1 IPS password re-encrypted" in out.getvalue()
    settings.IPSADMIN_ENCRYPTION_KEY = new
    assert Connection.objects.get(pk=conn.pk).get_password() == "demo"


# --- 9. Bidirectional control characters ---------------------------------------------------


def test_bidi_controls_in_ips_data_are_shown_not_obeyed(client, login, company, ips_emulator):
    from jobs.services import sync

    name = "Invoice \u202egpj.exe"
    ips_emulator.state.add_job("47", name)
    assert not sync.sync_company(company).error
    job = Job.objects.get(company=company, name=name)
    assert job.name == name  # stored as IPS has it
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert "\u202e" not in body
    assert "Invoice [U+202E]gpj.exe" in body
    admin_body = Client()
    admin_body.force_login(get_user_model().objects.create_superuser("root", password="x"))
    page = admin_body.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "\u202e" not in page


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
