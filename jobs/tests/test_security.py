"""Security: production settings and headers, login throttling, the IPS
password's secrecy, the audit trail guarded by the database, hostile input.

Everything talks to a real IPS emulator over HTTP; PostgreSQL-only tests (the
audit trigger) are skipped on SQLite with the reason stated.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
from html.parser import HTMLParser
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from jobs.ips.transport import Transport
from jobs.services import sync
from jobs.models import Company, Connection, Execution, Job, Membership, allow_pruning
from jobs.reporting import SecretCleansingExceptionReporterFilter
from jobs.roles import UserType

from .conftest import HTMX, database_url_for_subprocess, executes, free_port, look, make_execution
from .pg_roles import app_database_url  # noqa: F401  (fixture)
from .html_forms import Listener

BASE_DIR = django_settings.BASE_DIR

requires_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: the audit trigger exists only there (SQLite relies on the Python-level guards)",
)


# --- 1. Production settings --------------------------------------------------


def _production_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="ipsadmin.example.com",
        SITE_URL="https://ipsadmin.example.com",
        DJANGO_SETTINGS_MODULE="ipsadmin.settings",
    )
    env.update(extra)
    return env


def _run(args, env):
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_under_production_settings(app_database_url):
    # The test database: migrated, and no demo account in it (jobs.E001); on PostgreSQL
    # as the app's role of docs/deploy.md (as the test's superuser: jobs.E002).
    env = _production_env(DATABASE_URL=app_database_url)
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output, output


def test_check_deploy_warns_when_notifications_could_not_link_to_runs(app_database_url):
    env = _production_env(DATABASE_URL=app_database_url)
    del env["SITE_URL"]
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "jobs.W001" in output and "SITE_URL" in output, output


def test_production_settings_refuse_to_start_without_an_encryption_key():
    env = _production_env()
    del env["IPSADMIN_ENCRYPTION_KEY"]
    result = _run(["-c", "import ipsadmin.settings"], env)
    assert result.returncode != 0
    assert "IPSADMIN_ENCRYPTION_KEY" in result.stderr


def _gunicorn_refuses(env):
    """Start gunicorn with our config; it must exit before serving. Returns its output."""
    result = _run(
        ["-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "ipsadmin.wsgi"],
        env,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Listening at" not in result.stderr
    return result.stderr


def test_gunicorn_refuses_ips_timeouts_a_worker_could_not_wait_out(transactional_db):
    env = _production_env(DATABASE_URL=database_url_for_subprocess(), IPS_READ_TIMEOUT="22")
    output = _gunicorn_refuses(env)
    assert "must fit in gunicorn's worker timeout of 45 s" in output


def test_gunicorn_refuses_demo_passwords_with_debug_off(transactional_db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    get_user_model().objects.create_user("ipsuser", password="demo")
    env = _production_env(DATABASE_URL=database_url_for_subprocess())
    output = _gunicorn_refuses(env)
    assert "Demo accounts still have the password 'demo': ipsuser" in output

    result = _run(["manage.py", "check", "--deploy"], env)
    assert result.returncode != 0
    assert "jobs.E001" in result.stderr + result.stdout


def test_production_settings_refuse_the_development_secret_key():
    result = _run(
        ["-c", "import ipsadmin.settings"],
        _production_env(SECRET_KEY="django-insecure-ipsadmin-development-only"),
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


# The security settings as the settings module computes them with DEBUG off.
SECURITY_SETTINGS = [
    "DEBUG",
    "ALLOWED_HOSTS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "X_FRAME_OPTIONS",
]


@pytest.fixture
def production(settings):
    """Apply the security settings that ipsadmin/settings.py computes with
    DEBUG=0 (read from a subprocess, so they are the real ones)."""
    script = (
        "import json, ipsadmin.settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {SECURITY_SETTINGS!r}}}))"
    )
    result = _run(["-c", script], _production_env())
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    for name, value in values.items():
        setattr(settings, name, tuple(value) if isinstance(value, list) and name.endswith("_HEADER") else value)
    return values


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html):
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _csp(response):
    policy = {}
    for directive in response["Content-Security-Policy"].split(";"):
        name, *sources = directive.split()
        policy[name] = sources
    return policy


def test_production_responses_carry_the_security_headers(production, users, synced):
    browser = Client(HTTP_HOST="ipsadmin.example.com")

    # Plain HTTP is sent to HTTPS.
    response = browser.get(reverse("login"))
    assert response.status_code == 301
    assert response["Location"].startswith("https://ipsadmin.example.com/")

    response = browser.get(reverse("login"), secure=True)
    assert response.status_code == 200
    csrf_cookie = response.cookies[django_settings.CSRF_COOKIE_NAME]
    assert csrf_cookie["secure"]

    response = browser.post(reverse("login"), {"username": "ipsuser", "password": "pw"}, secure=True)
    assert response.status_code == 302
    session_cookie = response.cookies[django_settings.SESSION_COOKIE_NAME]
    assert session_cookie["secure"]
    assert session_cookie["httponly"]

    response = browser.get(reverse("jobs:list"), secure=True)
    assert response.status_code == 200
    hsts = response["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts
    assert "includeSubDomains" in hsts
    assert "preload" in hsts
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    policy = _csp(response)
    assert policy["script-src"] == ["'self'"]
    for directive in ("script-src", "style-src", "default-src"):
        assert "'unsafe-inline'" not in policy[directive]
        assert "'unsafe-eval'" not in policy[directive]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]


def test_pages_need_no_inline_script_or_style_for_htmx(client, login, synced):
    login("IpsUser")
    html = client.get(reverse("jobs:list")).content.decode()
    tags = _tags(html)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts, "htmx is loaded"
    for attrs in scripts:
        # Our own origin, from a file: CSP's script-src 'self' allows it.
        assert attrs.get("src", "").startswith(static("")), attrs
    assert any("htmx" in attrs["src"] for attrs in scripts)
    for tag, attrs in tags:
        assert "style" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    [config] = [attrs["content"] for tag, attrs in tags if tag == "meta" and attrs.get("name") == "htmx-config"]
    config = json.loads(config)
    # No eval (hx-on, js: values) and no <style> element injected by htmx.
    assert config["allowEval"] is False
    assert config["includeIndicatorStyles"] is False
    # The CSRF token travels in a header on every htmx request.
    [body] = [attrs for tag, attrs in tags if tag == "body"]
    assert json.loads(body["hx-headers"])["X-CSRFToken"]
    assert "'unsafe-inline'" not in client.get(reverse("jobs:history"))["Content-Security-Policy"]


def test_state_changes_need_the_csrf_token(users, job, ips_emulator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["IpsUser"])
    page = browser.get(reverse("jobs:list"))
    token = page.cookies[django_settings.CSRF_COOKIE_NAME].value
    url = reverse("jobs:run", args=[job.pk])

    assert browser.post(url, **HTMX).status_code == 403
    assert browser.post(reverse("jobs:sync", args=[job.company.pk]), **HTMX).status_code == 403
    assert Execution.objects.count() == 0
    assert executes(ips_emulator) == []

    response = browser.post(url, HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    assert Execution.objects.get().outcome == "accepted"


@pytest.mark.parametrize("method", ["get", "head", "put", "delete"])
def test_run_and_sync_change_nothing_but_on_post(method, client, login, job, ips_emulator):
    login("IpsUser")
    calls = len(ips_emulator.state.calls)
    for url in (reverse("jobs:run", args=[job.pk]), reverse("jobs:sync", args=[job.company.pk])):
        assert getattr(client, method)(url, **HTMX).status_code == 405
    assert Execution.objects.count() == 0
    assert len(ips_emulator.state.calls) == calls


# --- 2. Login throttling -----------------------------------------------------


def _login(browser, username, password, ip):
    return browser.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def _logged_in(browser):
    return "_auth_user_id" in browser.session


def test_five_failed_logins_lock_the_account_out_from_that_address(users):
    attacker = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        _login(attacker, "ipsuser", "wrong", "203.0.113.7")
    assert not _logged_in(attacker)

    # The right password is refused now, with the lockout page.
    response = _login(attacker, "ipsuser", "pw", "203.0.113.7")
    assert response.status_code == 429
    assert "registration/lockout.html" in [t.name for t in response.templates]
    assert "Too many failed logins" in response.content.decode()
    assert not _logged_in(attacker)

    # Another user from the same address is not affected...
    other = Client()
    assert _login(other, "ipsadmin", "pw", "203.0.113.7").status_code == 302
    assert _logged_in(other)
    # ...nor the same user from another address.
    colleague = Client()
    assert _login(colleague, "ipsuser", "pw", "198.51.100.20").status_code == 302
    assert _logged_in(colleague)


def test_fewer_failures_than_the_limit_do_not_lock_out(users):
    browser = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert _login(browser, "ipsuser", "wrong", "203.0.113.8").status_code == 200
    assert _login(browser, "ipsuser", "pw", "203.0.113.8").status_code == 302
    assert _logged_in(browser)


def test_failed_logins_are_logged_with_the_address(users, caplog):
    caplog.set_level(logging.INFO)
    browser = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        _login(browser, "ipsuser", "Wrong-Pass-42", "203.0.113.9")

    failures = [r for r in caplog.records if r.name.startswith("axes") and r.levelno >= logging.WARNING]
    assert len(failures) >= django_settings.AXES_FAILURE_LIMIT
    for record in failures:
        assert "203.0.113.9" in record.getMessage()
    assert any("Locking out" in r.getMessage() for r in failures)
    # Neither the password nor the username (a misplaced password, often) is logged;
    # the admin's access attempts name the username.
    assert "Wrong-Pass-42" not in caplog.text
    assert "ipsuser" not in caplog.text
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.get(username="ipsuser", ip_address="203.0.113.9")
    assert attempt.failures_since_start == django_settings.AXES_FAILURE_LIMIT


# --- 3. The IPS password -----------------------------------------------------

SECRET_PW = "Zx9-unique-SECRET-pw"
SERVICE_EMAIL = "secret-service@example.com"


def test_the_password_is_encrypted_with_the_key_from_the_environment(settings, db):
    key = Fernet.generate_key()
    settings.IPSADMIN_ENCRYPTION_KEY = key.decode()
    c = Connection(name="Keyed", service_url="http://ips.invalid/", username="x@example.com")
    c.set_password(SECRET_PW)
    c.save()
    raw = Connection.objects.values_list("password_encrypted", flat=True).get(pk=c.pk)
    assert SECRET_PW not in raw
    assert Fernet(key).decrypt(raw.encode()).decode() == SECRET_PW
    assert Connection.objects.get(pk=c.pk).get_password() == SECRET_PW

    # Another key (a stolen database without the environment) reads nothing.
    settings.IPSADMIN_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(ImproperlyConfigured):
        Connection.objects.get(pk=c.pk).get_password()


def _db_values():
    """Every value of every table, as text."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    yield table, str(value)


@pytest.fixture
def all_logs(caplog):
    """Every logger at DEBUG into caplog, "django" (which does not propagate) included."""
    caplog.set_level(logging.DEBUG)
    for name in ("zeep", "zeep.transports", "zeep.wsdl", "urllib3", "requests", "jobs", "django", "axes"):
        caplog.set_level(logging.DEBUG, logger=name)
    django_logger = logging.getLogger("django")
    django_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        django_logger.removeHandler(caplog.handler)


def test_the_ips_password_never_leaks(db, all_logs, settings, ips_emulator, ips_clock, hold_calls, monkeypatch):
    caplog = all_logs
    settings.IPS_READ_TIMEOUT = 0.5
    emulator = ips_emulator.state
    emulator.add_user(SERVICE_EMAIL, SECRET_PW, "IpsUser", {"47": "IpsUser"})
    User = get_user_model()
    boss = User.objects.create_superuser("boss", password="pw")
    admin = Client(raise_request_exception=False)
    admin.force_login(boss)
    bodies = []

    def keep(response):
        bodies.append(response.content.decode("utf-8", "replace"))
        bodies.append(str(response.headers))
        return response

    # The admin: add, a form redisplayed with an error, change, test connection.
    add_url = reverse("admin:jobs_connection_add")
    keep(admin.get(add_url))
    form = {
        "name": "Secret",
        "region": "custom",
        "service_url": ips_emulator.service_url,
        "wsdl_url": "",
        "api_version": "",
        "username": SERVICE_EMAIL,
        "password": SECRET_PW,
        "_save": "Save",
    }
    response = keep(admin.post(add_url, {**form, "service_url": "not a url"}))
    assert response.status_code == 200  # redisplayed with errors
    response = keep(admin.post(add_url, form, follow=True))
    assert response.status_code == 200
    conn = Connection.objects.get(name="Secret")
    assert conn.get_password() == SECRET_PW
    change_url = reverse("admin:jobs_connection_change", args=[conn.pk])
    keep(admin.get(change_url))
    keep(admin.post(change_url, {**form, "password": ""}, follow=True))
    changelist = reverse("admin:jobs_connection_changelist")
    response = keep(
        admin.post(changelist, {"action": "test_connections", "_selected_action": [conn.pk]}, follow=True)
    )
    assert f"login works as {SERVICE_EMAIL}" in response.content.decode()

    # Sync, in the admin and on the dashboard.
    company = Company.objects.create(connection=conn, handle="47", name="Demo Company")
    response = keep(
        admin.post(
            reverse("admin:jobs_company_changelist"),
            {"action": "sync_company_jobs", "_selected_action": [company.pk]},
            follow=True,
        )
    )
    assert "new" in response.content.decode()
    job = Job.objects.get(company=company, handle="47|My Test Job|")
    operator = User.objects.create_user("operator", password="pw")
    Membership.objects.create(user=operator, company=company, role=UserType.IPS_USER)
    dashboard = Client(raise_request_exception=False)
    dashboard.force_login(operator)
    assert keep(dashboard.post(reverse("jobs:sync", args=[company.pk]), **HTMX)).status_code == 200
    run_url = reverse("jobs:run", args=[job.pk])

    def run():
        response = keep(dashboard.post(run_url, **HTMX))
        # A started run leaves getActiveJobs; a press of unknown fate is settled by the watcher
        # once IPS's clock is past the grace (else the next press is held back, rightly).
        ips_clock.advance(2 * emulator.job_duration + settings.IPS_WATCH_GRACE.total_seconds() + 2)
        look(company, ok=False)
        return response

    # A run that works, then every failure.
    assert run().status_code == 200
    failures = [
        ("soap_fault", {"code": 30000, "reason": "Disk full"}),
        ("soap_fault", {"code": 20003, "reason": "No permission", "fault": "authorizationFault"}),
        ("http_500_html", {}),
        ("malformed_xml", {}),
        ("drop_connection", {}),
    ]
    for kind, params in failures:
        emulator.inject(kind, operation="executeJob", **params)
        assert run().status_code in (502, 504), kind
    # An empty Body answers a void operation; for getActiveJobs (the Active in IPS panel) it is malformed.
    emulator.inject("empty_body", operation="getActiveJobs")
    look(company, ok=False)  # the watcher's look fails; the panel says so from the database
    response = keep(dashboard.get(reverse("jobs:active", args=[company.pk]), **HTMX))
    assert response.status_code == 200
    assert "not a valid getActiveJobsReturn (an empty body)" in response.content.decode()

    # The wrong password: an authentication fault, in a run and in the admin.
    emulator.users[SERVICE_EMAIL].password = "changed-in-IPS"
    assert run().status_code == 502
    keep(admin.post(changelist, {"action": "test_connections", "_selected_action": [conn.pk]}, follow=True))
    emulator.users[SERVICE_EMAIL].password = SECRET_PW

    # A technical 500 page (DEBUG on) from a crash inside zeep's transport,
    # where the envelope with the authHeader is a local variable. The crashing
    # function is compiled as a function of zeep.transports, as the real one is.

    crash = {"__name__": "zeep.transports"}
    exec(
        compile(
            "def post(self, address, message, headers):\n    raise RuntimeError('the transport exploded')\n",
            "zeep/transports.py",
            "exec",
        ),
        crash,
    )
    explode = crash["post"]
    monkeypatch.setattr(Transport, "post", explode)
    settings.DEBUG = True
    response = keep(dashboard.post(run_url, **HTMX))
    settings.DEBUG = False
    monkeypatch.undo()
    assert response.status_code == 500
    assert "the transport exploded" in response.content.decode()

    # No reply within the read timeout (the call is held until the test is over).
    hold = hold_calls(ips_emulator, "executeJob")
    assert run().status_code == 504
    assert hold.received == 1

    # Pages that show what happened.
    keep(dashboard.get(reverse("jobs:list")))
    keep(dashboard.get(reverse("jobs:history")))
    keep(admin.get(reverse("admin:jobs_execution_changelist")))
    for execution in Execution.objects.all():
        keep(admin.get(reverse("admin:jobs_execution_change", args=[execution.pk])))

    outcomes = set(Execution.objects.values_list("outcome", flat=True))
    assert {"accepted", "refused", "unreachable", "bad_reply", "timed_out"} <= outcomes, outcomes

    # The checks: the captured logs really are at DEBUG, wire level included...
    names = {r.name for r in caplog.records}
    assert any(n.startswith("urllib3") for n in names), names
    assert any(n.startswith("jobs") for n in names), names
    # ...and the password is nowhere.
    for record in caplog.records:
        assert SECRET_PW not in caplog.handler.format(record), (record.name, record.msg)
    assert SECRET_PW not in caplog.text
    for record in caplog.records:
        assert SECRET_PW not in record.getMessage()
    for body in bodies:
        assert SECRET_PW not in body
    for row in Execution.objects.values():
        for field, value in row.items():
            assert SECRET_PW not in str(value), field
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM jobs_connection WHERE id = %s", [conn.pk])
        [(raw,)] = cursor.fetchall()
    assert raw and SECRET_PW not in raw
    for table, value in _db_values():
        assert SECRET_PW not in value, table


def _fail_with_a_password(password):
    token = f"Bearer {password}"  # noqa: F841 — a local the report would show
    settings_like = {"IPS": {"password": password, "user": "visible-user"}}  # noqa: F841
    raise ValueError("could not log in")


_SOAP_MODULE_CODE = """
def send():
    message = ENVELOPE.encode()
    raise ConnectionError("reset")
"""


def _report(request, func):
    try:
        func()
    except Exception:
        reporter = ExceptionReporter(request, *sys.exc_info())
    return reporter.get_traceback_html(), reporter.get_traceback_text()


def test_the_configured_exception_filter_is_ours():
    assert isinstance(get_default_exception_reporter_filter(), SecretCleansingExceptionReporterFilter)


@pytest.mark.parametrize("debug", [False, True])
def test_error_reports_hide_secret_post_parameters_and_variables(rf, settings, debug):
    settings.DEBUG = debug
    request = rf.post(
        "/admin/jobs/connection/add/",
        {"name": "visible-name", "password": SECRET_PW, "api_key": SECRET_PW, "csrfmiddlewaretoken": SECRET_PW},
    )
    html, text = _report(request, lambda: _fail_with_a_password(SECRET_PW))
    for report in (html, text):
        assert "could not log in" in report
        assert "visible-name" in report  # the filter hides secrets, not everything
        assert SECRET_PW not in report
    assert "visible-user" in html


def test_error_reports_hide_every_variable_of_the_soap_stack(rf):
    # A frame of zeep (or requests, urllib3, jobs.ips) holds the envelope, whose
    # authHeader carries the password, under an innocent name.
    namespace = {"__name__": "zeep.transports"}
    namespace["ENVELOPE"] = f"<authHeader><user>svc</user><password>{SECRET_PW}</password></authHeader>"
    exec(compile(_SOAP_MODULE_CODE, "zeep/transports.py", "exec"), namespace)
    html, text = _report(rf.get("/"), namespace["send"])
    assert "ConnectionError" in text
    assert SECRET_PW not in html
    assert SECRET_PW not in text


# --- 4. The audit trail, guarded by PostgreSQL --------------------------------


def _execution(job, user, outcome="accepted", **values):
    return make_execution(job, user, outcome, **values)


def _raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


IDENTITY_CHANGES = {
    "operation": "pauseJob",
    "company_handle": "99",
    "job_handle": "99|forged|",
    "job_name": "forged",
    "username": "forged",
    "role": "IpsAdmin",
    "requested_at": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
    "client_ip": "10.9.9.9",
    "user_agent": "forged",
    "request_id": "forged-request",
}


@pytest.mark.postgres
@requires_postgresql
@pytest.mark.parametrize("outcome", ["sending", "accepted"])
@pytest.mark.parametrize("column", sorted(IDENTITY_CHANGES))
def test_the_database_refuses_to_change_an_identity_column(column, outcome, job, users):
    execution = _execution(job, users["IpsUser"], outcome=outcome)
    with pytest.raises(DatabaseError, match="audit trail"):
        _raw(f"UPDATE jobs_execution SET {column} = %s WHERE id = %s", [IDENTITY_CHANGES[column], execution.pk])
    assert Execution.objects.filter(pk=execution.pk, **{column: getattr(execution, column)}).exists()


@pytest.mark.postgres
@requires_postgresql
@pytest.mark.parametrize(
    "assignment",
    ["outcome = 'refused'", "message = 'rewritten'", "fault_code = 30000", "finished_at = now()", "duration_ms = 987654"],
)
def test_the_database_refuses_to_change_a_finished_row(assignment, job, users):
    execution = _execution(job, users["IpsUser"], outcome="accepted", message="IPS accepted it.")
    with pytest.raises(DatabaseError, match="finished"):
        _raw(f"UPDATE jobs_execution SET {assignment} WHERE id = %s", [execution.pk])
    assert Execution.objects.get(pk=execution.pk).outcome == "accepted"


@pytest.mark.postgres
@requires_postgresql
def test_the_database_refuses_to_point_a_finished_row_elsewhere(job, users):
    execution = _execution(job, users["IpsUser"])
    other = Job.objects.exclude(pk=job.pk).first()
    with pytest.raises(DatabaseError, match="finished"):
        _raw("UPDATE jobs_execution SET job_id = %s WHERE id = %s", [other.pk, execution.pk])
    with pytest.raises(DatabaseError, match="finished"):
        _raw("UPDATE jobs_execution SET user_id = %s WHERE id = %s", [users["admin"].pk, execution.pk])


@pytest.mark.postgres
@requires_postgresql
def test_the_database_lets_services_finish_a_sending_row(job, users):
    execution = _execution(job, users["IpsUser"], outcome="sending")
    _raw(
        "UPDATE jobs_execution SET outcome = 'accepted', message = 'ok', finished_at = now() WHERE id = %s",
        [execution.pk],
    )
    assert Execution.objects.get(pk=execution.pk).outcome == "accepted"
    # Through the service too, end to end: a real run against the emulator.
    browser = Client()
    browser.force_login(users["IpsUser"])
    other_job = Job.objects.get(company=job.company, handle="47|Nightly | Publish|")
    assert browser.post(reverse("jobs:run", args=[other_job.pk]), **HTMX).status_code == 200


@pytest.mark.postgres
@requires_postgresql
def test_the_database_refuses_to_delete_an_execution(job, users):
    execution = _execution(job, users["IpsUser"])
    with pytest.raises(DatabaseError, match="prune_executions"):
        _raw("DELETE FROM jobs_execution WHERE id = %s", [execution.pk])
    # Python code that opens the Python-level door is still refused by the database.
    with pytest.raises(DatabaseError, match="prune_executions"):
        with transaction.atomic(), allow_pruning():
            Execution.objects.filter(pk=execution.pk).delete()
    assert Execution.objects.filter(pk=execution.pk).exists()


@pytest.mark.postgres
@requires_postgresql
def test_deleting_a_job_or_a_user_keeps_their_executions_on_postgresql(job, users):
    user = users["IpsUser"]
    finished = _execution(job, user, outcome="accepted")
    in_flight = _execution(job, user, outcome="sending")
    job.delete()
    user.delete()
    for execution in (finished, in_flight):
        row = Execution.objects.get(pk=execution.pk)
        assert (row.job_id, row.user_id) == (None, None)
        assert (row.job_handle, row.username, row.outcome) == (
            execution.job_handle,
            execution.username,
            execution.outcome,
        )


@pytest.mark.postgres
@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_prune_executions_deletes_old_finished_rows_on_postgresql(job, users):
    user = users["IpsUser"]
    long_ago = timezone.now() - dt.timedelta(days=40)
    old = _execution(job, user, outcome="accepted", requested_at=long_ago)
    old_denied = _execution(job, user, outcome="denied", requested_at=long_ago)
    recent = _execution(job, user, outcome="refused", requested_at=timezone.now() - dt.timedelta(days=2))
    old_in_flight = _execution(job, user, outcome="sending", requested_at=long_ago)

    out = StringIO()
    call_command("prune_executions", days=30, stdout=out)

    assert "2 executions older than 30 days deleted" in out.getvalue()
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert remaining == {old_in_flight.pk, recent.pk}
    assert old.pk not in remaining and old_denied.pk not in remaining
    # Outside the prune function, nobody deletes.
    with pytest.raises(DatabaseError, match="prune_executions"):
        _raw("DELETE FROM jobs_execution WHERE id = %s", [recent.pk])


# --- 5. Hostile input ----------------------------------------------------------

LONG_NAME = ("Long <name> | \"500\" 'chars' ü " * 20)[:500]
HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    'Say "cheese" <b>now</b>',
    "It's O'Brien's & Co",
    "pipe | in || the |name|",
    "spaced   out  name ",
    "Übersicht — Größe 東京 ✓ 🚀",
    LONG_NAME,
]
CUSTOM_HANDLE = "47|handle <x> \"q\" 'a' | ü  |"


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


@pytest.fixture
def hostile_emulator(tmp_path, start_emulator):
    lines = [
        '[emulator]\nserver_name = "hostile"\nutc_offset = "+00:00"\n',
        f'[[companies]]\nhandle = "47"\nname = {_toml("<i>Evil</i> & Co")}\n',
    ]
    for name in HOSTILE_NAMES:
        lines.append(
            f"[[jobs]]\ncompany = \"47\"\nname = {_toml(name)}\ntype = \"ImageServingPublish\"\n"
            f"description = {_toml('<img src=x onerror=alert(2)>')}\n"
            f"exec_schedule = {_toml('<b>0 0 * * *</b>')}\ntime_zone = {_toml('<i>PST</i>')}\n"
        )
    lines.append(
        f"[[jobs]]\ncompany = \"47\"\nname = \"Custom handle\"\nhandle = {_toml(CUSTOM_HANDLE)}\n"
        'type = "UrlUpload"\n'
    )
    lines.append(
        '[[users]]\nemail = "service@example.com"\npassword = "demo"\ndefault_role = "IpsUser"\n'
        'memberships = [{ company = "47", role = "IpsUser" }]\n'
    )
    data = tmp_path / "hostile.toml"
    data.write_text("\n".join(lines), encoding="utf-8")
    return start_emulator(data_path=data, job_duration=0.05)


def test_hostile_job_names_are_escaped_and_run_with_their_exact_handles(client, db, hostile_emulator):
    conn = Connection(name="Hostile", service_url=hostile_emulator.service_url, username="service@example.com")
    conn.set_password("demo")
    conn.save()
    company = Company.objects.create(connection=conn, handle="47", name="<i>Evil</i> & Co")
    result = sync.sync_company(company)
    assert not result.error, result.error
    jobs = {j.name: j for j in Job.objects.filter(company=company)}
    assert set(jobs) == {*HOSTILE_NAMES, "Custom handle"}
    for name in HOSTILE_NAMES:
        assert jobs[name].handle == f"47|{name}|"
    assert jobs["Custom handle"].handle == CUSTOM_HANDLE

    user = get_user_model().objects.create_user("operator", password="pw")
    Membership.objects.create(user=user, company=company, role=UserType.IPS_USER)
    client.force_login(user)
    html = client.get(reverse("jobs:list")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for name in HOSTILE_NAMES:
        assert escape(name) in html, name
    # No markup from IPS data became markup: only the page's own tags.
    tags = {tag for tag, _ in _tags(html)}
    assert not tags & {"b", "i", "img"}, tags
    assert all("src" in attrs for tag, attrs in _tags(html) if tag == "script")

    for job in jobs.values():
        before = len(executes(hostile_emulator))
        response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
        assert response.status_code == 200, (job.name, response.content.decode()[:500])
        body = response.content.decode()
        assert "<script>alert" not in body
        assert escape(job.name) in body
        calls = executes(hostile_emulator)
        assert len(calls) == before + 1
        assert calls[-1]["job_handle"] == job.handle
        assert calls[-1]["company_handle"] == "47"
        execution = Execution.objects.filter(job=job).get()
        assert execution.outcome == "accepted"
        assert (execution.job_handle, execution.job_name) == (job.handle, job.name)

    history = client.get(reverse("jobs:history")).content.decode()
    assert "<script>alert(1)</script>" not in history
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in history


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
def test_unknown_or_foreign_keys_answer_404_without_leaking(htmx, client, login, synced, other_company, ips_emulator):
    login("IpsUser")  # a member of 47 only
    extra = HTMX if htmx else {}
    foreign_job = Job.objects.filter(company=other_company).first()
    unknown = max(Job.objects.latest("pk").pk, Company.objects.latest("pk").pk) + 1000
    calls = len(ips_emulator.state.calls)

    responses = {
        "unknown job": client.post(reverse("jobs:run", args=[unknown]), **extra),
        "foreign job": client.post(reverse("jobs:run", args=[foreign_job.pk]), **extra),
        "unknown company": client.post(reverse("jobs:sync", args=[unknown]), **extra),
        "foreign company": client.post(reverse("jobs:sync", args=[other_company.pk]), **extra),
    }
    for what, response in responses.items():
        assert response.status_code == 404, what
        body = response.content.decode()
        for secret in (foreign_job.name, foreign_job.handle, other_company.name):
            assert secret not in body, (what, secret)
        assert "No such job or company, or you have no role in its company." in body
    # Unknown and foreign look the same: existence does not leak (the page's
    # CSRF token is masked anew in every response).
    def page(what):
        # Tokens and the poll's time of its answer (name="seen") differ between any two renders.
        return re.sub(r'"X-CSRFToken": "\w+"|value="\w{64}"|name="seen" value="[^"]+"', "TOKEN",
                      responses[what].content.decode())

    assert page("unknown job") == page("foreign job")
    assert page("unknown company") == page("foreign company")
    # Nothing reached IPS; the foreign run is on record as denied, the unknown one not at all.
    assert len(ips_emulator.state.calls) == calls
    assert list(Execution.objects.values_list("job_id", "outcome")) == [(foreign_job.pk, "denied")]


def _multipart(boundary, fields):
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


FORM = "application/x-www-form-urlencoded"
BAD_BODIES = {
    "2 MB form": (FORM, b"csrfmiddlewaretoken=x&junk=" + b"a" * (2 * 1024 * 1024)),
    "2 MB multipart": (
        "multipart/form-data; boundary=XyZ",
        _multipart("XyZ", {"junk": "a" * (2 * 1024 * 1024)}),
    ),
    "binary": ("application/octet-stream", bytes(range(256)) * 8),
    "binary as a form": (FORM, b"\xff\xfe\x00\x01garbage\x80\x81"),
    "bad percent-encoding": (FORM, b"a=%ff%fe%fd"),
    "too many fields": (FORM, "&".join(f"f{i}=1" for i in range(1000)).encode()),
    "json": ("application/json", b'{"run": true}'),
    "text": ("text/plain", b"please run it"),
    "no content type": ("", b"garbage"),
    "multipart without boundary": ("multipart/form-data", _multipart("abc", {"a": "1"})),
    "multipart with another boundary": ("multipart/form-data; boundary=abc", _multipart("zzz", {"a": "1"})),
    "truncated multipart": (
        "multipart/form-data; boundary=abc",
        b'--abc\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',
    ),
    "multipart garbage": ("multipart/form-data; boundary=abc", b"\x00\x01\x02 not multipart at all"),
}


@pytest.mark.parametrize("what", list(BAD_BODIES))
def test_oversized_or_garbage_bodies_never_reach_ips(what, login, users, job, ips_emulator):
    """Django itself answers these with a 4xx (CSRF first, whose token is in the body), never a 500."""
    content_type, body = BAD_BODIES[what]
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["IpsUser"])
    calls = len(ips_emulator.state.calls)
    for url in (reverse("jobs:run", args=[job.pk]), reverse("jobs:sync", args=[job.company.pk])):
        response = client.post(url, data=body, content_type=content_type, **HTMX)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.content[:300])
    assert Execution.objects.count() == 0
    assert len(ips_emulator.state.calls) == calls


@pytest.mark.parametrize(
    "content_type, body",
    [
        (FORM, b"csrfmiddlewaretoken=abc"),
        (FORM + "; charset=UTF-8", b"csrfmiddlewaretoken=abc&note=%C3%BC"),
        (FORM, b""),
        ("", b""),
        ("multipart/form-data; boundary=abc", _multipart("abc", {"csrfmiddlewaretoken": "abc"})),
    ],
    ids=["htmx form", "utf-8 form", "empty form", "no body", "multipart"],
)
def test_well_formed_bodies_still_run(content_type, body, client, login, job, ips_emulator):
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), data=body, content_type=content_type, **HTMX)
    assert response.status_code == 200
    assert Execution.objects.get().outcome == "accepted"
    assert len(executes(ips_emulator)) == 1


# --- A remote WSDL is fetched where it is, never where it redirects -------------------------


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a ``status`` redirect to ``target`` (an internal address)."""

    status = 302
    target = ""
    hits: list = []

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(self.status)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_wsdl_url_that_redirects_is_not_followed(status, users, connection, ips_emulator):
    internal = Listener()
    handler = type("Redirector", (_Redirector,), {
        "status": status, "target": f"http://127.0.0.1:{internal.port}/latest/meta-data/", "hits": [],
    })
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wsdl_url = f"http://127.0.0.1:{server.server_address[1]}/scene7/webservice/IpsApi.wsdl"
        Connection.objects.filter(pk=connection.pk).update(wsdl_url=wsdl_url)
        admin = Client()
        admin.force_login(users["admin"])
        response = admin.post(reverse("admin:jobs_connection_changelist"),
                              {"action": "test_connections", "_selected_action": [connection.pk]}, follow=True)
        [message] = [str(m) for m in response.context["messages"]]
    finally:
        server.shutdown()
        server.server_close()
        internal.close()
    assert handler.hits == ["/scene7/webservice/IpsApi.wsdl"]  # asked where it was configured
    assert internal.received == []  # and nowhere else
    assert "redirect" in message, message
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]
