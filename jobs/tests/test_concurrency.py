"""One run at a time, enforced by the database, under real concurrency.

Everything goes over real HTTP: threads press Run on Django's threaded live
server or on gunicorn subprocesses, and the dashboard calls the emulator over
HTTP. The database is real (``transactional_db``: other threads and processes
must see committed rows). See issue 4, "One run at a time" and "A process
killed mid-call".
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ipsemulator.clock import ManualClock
from jobs.services import sync
from jobs.models import Company, Connection, Execution, Job, Membership

from .conftest import HTMX, database_url_for_subprocess, executes, free_port, look, press_run, wait_for

BASE_DIR = Path(settings.BASE_DIR)
PYTHON = sys.executable

#: PostgreSQL-only tests carry ``@pytest.mark.postgres`` and this skip.
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: several app servers share one database server (set DATABASE_URL)",
)

DB_REFUSAL = "is already being started"
IPS_REFUSAL = "IPS reports"


# --- helpers ----------------------------------------------------------------


def _subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url_for_subprocess(), DEBUG="1", DJANGO_SETTINGS_MODULE="ipsadmin.settings")
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextlib.contextmanager
def serving_gunicorn(env: dict, log_path: Path, *options: str, port: int | None = None, https: bool = False):
    """gunicorn with the project's config on ``port`` (else a free one; ``options``: more of its own), once
    /healthz answers (``https``: as behind the TLS proxy); yields (url, process), stopped with its workers after."""
    port = port or free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind",
                                 f"127.0.0.1:{port}", *options, "ipsadmin.wsgi"], cwd=BASE_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def up():
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited: {log_path.read_text()[-3000:]}")
            try:
                return requests.get(url + "/healthz", timeout=1,
                                    headers={"X-Forwarded-Proto": "https"} if https else {}).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(up, "gunicorn to answer /healthz")
            yield url, proc
        finally:
            _stop(proc, group=True)


def _stop(proc: subprocess.Popen, group: bool) -> None:
    """Terminate a process we started (and, for gunicorn, its workers)."""
    if proc.poll() is None:
        try:
            if group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if group:
        # The master may be gone while a worker lingers: kill what is left.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _outcomes(job=None) -> collections.Counter:
    rows = Execution.objects.all() if job is None else Execution.objects.filter(job=job)
    return collections.Counter(rows.values_list("outcome", flat=True))


def _member(company, username, role="IpsUser"):
    user = get_user_model().objects.create_user(username, password="pw")
    Membership.objects.create(user=user, company=company, role=role)
    return user


def _logged_in_cookies(base_url: str, user) -> dict:
    """A session cookie (via force_login) and the CSRF cookie from a GET of the jobs page."""
    browser = Client()
    browser.force_login(user)
    cookies = {settings.SESSION_COOKIE_NAME: browser.cookies[settings.SESSION_COOKIE_NAME].value}
    page = requests.get(base_url + reverse("jobs:list"), cookies=cookies, timeout=15)
    assert page.status_code == 200, page.text[:500]
    cookies[settings.CSRF_COOKIE_NAME] = page.cookies[settings.CSRF_COOKIE_NAME]
    return cookies


def _htmx_session(cookies: dict) -> requests.Session:
    s = requests.Session()
    s.cookies.update(cookies)
    s.headers.update({"X-CSRFToken": cookies[settings.CSRF_COOKIE_NAME], "HX-Request": "true"})
    return s


def _press_together(presses: list[tuple[str, dict]], timeout=60.0, hold=None) -> list[requests.Response]:
    """POST every (url, cookies) from its own thread, all released by one barrier.

    With ``hold`` (the emulator holding executeJob), the held presses go on
    only once every other press has been answered."""
    barrier = threading.Barrier(len(presses))
    results: list = [None] * len(presses)

    def press(i, url, cookies):
        session = _htmx_session(cookies)
        try:
            barrier.wait(timeout=30)
            results[i] = session.post(url, timeout=timeout)
        except Exception as exc:  # reported below, with the others
            results[i] = exc
        finally:
            session.close()

    threads = [threading.Thread(target=press, args=(i, *p), daemon=True) for i, p in enumerate(presses)]
    for t in threads:
        t.start()
    if hold is not None:
        wait_for(
            lambda: sum(r is not None for r in results) + hold.held >= len(presses),
            "every press to be answered or held at the emulator",
            timeout=timeout,
        )
        hold.release()
    for t in threads:
        t.join(timeout + 35)
    assert not any(t.is_alive() for t in threads), "a press did not come back"
    errors = [r for r in results if not isinstance(r, requests.Response)]
    assert not errors, errors
    return results


def _statuses(responses) -> collections.Counter:
    return collections.Counter(r.status_code for r in responses)


def _hold_execute_job(emulator, hold_calls):
    """The emulator holds executeJob until every other press is answered, so
    the first press's row stays 'sending' while the others press. Without the
    database constraint every press would reach executeJob (and be held)."""
    return hold_calls(emulator, "executeJob")


def _assert_one_accepted_nineteen_already_running(emulator, responses):
    assert _statuses(responses) == {200: 1, 409: 19}, [(r.status_code, r.text[:200]) for r in responses]
    assert len(executes(emulator)) == 1
    assert _outcomes() == {"accepted": 1, "already_running": 19}
    refused = [r for r in responses if r.status_code == 409]
    assert all(DB_REFUSAL in r.text or IPS_REFUSAL in r.text for r in refused)
    messages = list(Execution.objects.filter(outcome="already_running").values_list("message", flat=True))
    by_db = sum(DB_REFUSAL in m for m in messages)
    by_ips = sum(IPS_REFUSAL in m for m in messages)
    assert by_db + by_ips == 19, messages
    assert by_db >= 1, f"no press met the in-flight row: {by_ips} refused by the IPS check"
    assert not Execution.objects.filter(outcome="sending").exists()


def _company_on(emulator, handle, name="Company") -> Company:
    c = Connection(
        name=f"Emulator {emulator.service_url}",
        region=Connection.Region.CUSTOM,
        service_url=emulator.service_url,
        username="service@example.com",
    )
    c.set_password("demo")
    c.save()
    company = Company.objects.create(connection=c, handle=handle, name=name)
    result = sync.sync_company(company)
    assert not result.error, result.error
    return company


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """gunicorn() -> base URL of a gunicorn (2 workers) on the test database.

    Torn down before transactional_db flushes the tables: the servers are
    killed, master and workers, whatever the test did."""
    started: list[tuple[subprocess.Popen, object]] = []

    def start(workers=2):
        port = free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "ipsadmin.wsgi"],
            cwd=BASE_DIR,
            env=_subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers die with it
        )
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}"

        def healthy():
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                return requests.get(url + reverse("jobs:health"), timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, f"gunicorn on port {port} to answer /healthz")
        return url

    yield start
    for proc, log in started:
        _stop(proc, group=True)
        log.close()


# --- One run at a time ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_presses_send_one_execute_job(live_server, users, job, ips_emulator, ips_clock, hold_calls):
    """Twenty presses at once, from several users, on one threaded server:
    one executeJob, one accepted row and nineteen 'already running' rows."""
    hold = _hold_execute_job(ips_emulator, hold_calls)
    base = live_server.url
    runners = ["IpsUser", "IpsAdmin", "TrialSiteAdmin", "TrialSiteUser", "ImagePortalAdmin", "admin"]
    cookies = [_logged_in_cookies(base, users[r]) for r in runners]
    url = base + reverse("jobs:run", args=[job.pk])

    responses = _press_together([(url, cookies[i % len(cookies)]) for i in range(20)], hold=hold)

    _assert_one_accepted_nineteen_already_running(ips_emulator, responses)


@pytest.mark.postgres
@needs_postgres
def test_two_gunicorn_servers_on_one_database_send_one_execute_job(
    gunicorn, users, job, ips_emulator, ips_clock, hold_calls
):
    """Two app servers, two workers each, one PostgreSQL: the partial unique
    index, not a Python lock, lets exactly one press through."""
    servers = [gunicorn(), gunicorn()]
    runners = ["IpsUser", "IpsAdmin", "TrialSiteAdmin", "admin"]
    presses = []
    cookies = {(s, r): _logged_in_cookies(s, users[r]) for s in servers for r in runners}
    for i in range(20):
        server = servers[i % 2]
        runner = runners[i % len(runners)]
        presses.append((server + reverse("jobs:run", args=[job.pk]), cookies[server, runner]))

    hold = _hold_execute_job(ips_emulator, hold_calls)

    responses = _press_together(presses, hold=hold)

    _assert_one_accepted_nineteen_already_running(ips_emulator, responses)
    # Both servers answered presses.
    assert {r.url.split("/jobs/")[0] for r in responses} == set(servers)


def _fifty_jobs_toml(path: Path, company="77", count=50) -> Path:
    jobs = "\n".join(
        f'[[jobs]]\ncompany = "{company}"\nname = "Burst job {n:02d}"\ntype = "ImageServingPublish"\n'
        for n in range(1, count + 1)
    )
    path.write_text(
        f"""[emulator]
server_name = "ips-burst"
utc_offset = "+00:00"

[[companies]]
handle = "{company}"
name = "Burst Company"

{jobs}

[[users]]
email = "service@example.com"
password = "demo"
default_role = "IpsUser"
memberships = [{{ company = "{company}", role = "IpsUser" }}]
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_runs_of_fifty_jobs_are_all_accepted(live_server, start_emulator, tmp_path):
    emulator = start_emulator(data_path=_fifty_jobs_toml(tmp_path / "burst.toml"))
    emulator.state.clock = ManualClock()  # every run stays New: none ends during the burst
    company = _company_on(emulator, "77", "Burst Company")
    jobs = list(Job.objects.filter(company=company))
    assert len(jobs) == 50
    cookies = [_logged_in_cookies(live_server.url, _member(company, f"runner{n}")) for n in range(5)]

    responses = _press_together(
        [(live_server.url + reverse("jobs:run", args=[j.pk]), cookies[i % 5]) for i, j in enumerate(jobs)]
    )

    refused = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert _statuses(responses) == {200: 50}, refused
    calls = executes(emulator)
    assert len(calls) == 50
    assert {c["job_handle"] for c in calls} == {j.handle for j in jobs}
    assert _outcomes() == {"accepted": 50}
    assert set(Execution.objects.values_list("job_id", flat=True)) == {j.pk for j in jobs}


# --- A process killed mid-call ------------------------------------------------------------

KILLED_RUN = """
from django.contrib.auth import get_user_model
from jobs.services import actions, base, sync
from jobs.models import Job

job = Job.objects.select_related("company__connection").get(pk={job_pk})
user = get_user_model().objects.get(pk={user_pk})
actions.run_job(job, job.company.access(user, "executeJob"), user, base.RequestInfo("{request_id}"))
print("the run finished: it should have been killed", flush=True)
"""


def _kill_mid_call(emulator, hold_calls, job, user, request_id) -> Execution:
    """Run ``job`` in a real process whose executeJob the emulator holds; SIGKILL it there."""
    hold = hold_calls(emulator, "executeJob", job_handle=job.handle)
    code = KILLED_RUN.format(job_pk=job.pk, user_pk=user.pk, request_id=request_id)
    # A read timeout longer than the test: only the kill ends this call.
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=BASE_DIR,
        env=_subprocess_env(IPS_READ_TIMEOUT=120),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def in_flight():
            if proc.poll() is not None:
                pytest.fail(f"the run's process ended by itself ({proc.returncode}): {proc.stdout.read()!r}")
            row = Execution.objects.filter(request_id=request_id).first()
            return row if row is not None and row.outcome == "sending" and hold.held else None

        wait_for(in_flight, "the run to be sending and its executeJob held at the emulator")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    hold.drop()  # its caller is dead: no reply; the next executeJob goes through
    row = Execution.objects.get(request_id=request_id)
    assert row.outcome == "sending", "a killed process writes nothing more"
    assert row.sent_at is not None and row.finished_at is None
    return row


@pytest.fixture
def killable(transactional_db, ips_emulator):
    """The emulator, company 47 synced from it, and an IpsUser there."""
    company = _company_on(ips_emulator, "47", "Demo Company")
    user = _member(company, "ulla")
    return ips_emulator, company, user


def _make_stale(dashboard_clock, row):
    """Move the dashboard's clock past the age after which ``row`` belongs to a dead process."""
    dashboard_clock.advance(Execution.stale_after() + dt.timedelta(seconds=1))
    assert timezone.now() - row.requested_at > Execution.stale_after()


def _settled_not_started(emulator, company, killed):
    """IPS's clock past the killed press's grace with no run of it: the watcher says IPS did not start it."""
    emulator.state.advance((Execution.stale_after() + settings.IPS_WATCH_GRACE).total_seconds() + 10)
    look(company)
    killed.refresh_from_db()
    assert killed.ips_result == Execution.IpsResult.NOT_STARTED


def _press(client, job):
    return client.post(reverse("jobs:run", args=[job.pk]), **HTMX)


def _run_command(name) -> str:
    out = io.StringIO()
    call_command(name, stdout=out)
    return out.getvalue()


def test_a_killed_run_blocks_its_job_until_the_watcher_knows_its_fate(
    killable, hold_calls, dashboard_clock
):
    emulator, company, user = killable
    job = Job.objects.get(company=company, handle="47|My Test Job|")
    killed = _kill_mid_call(emulator, hold_calls, job, user, "killed-lazily-0001")
    client = Client()
    client.force_login(user)

    # Fresh: the killed run may still be alive somewhere; the job stays blocked.
    response = _press(client, job)
    assert response.status_code == 409
    assert "already being started by ulla" in response.content.decode()
    assert _outcomes(job) == {"sending": 1, "already_running": 1}
    assert len(executes(emulator)) == 1

    _make_stale(dashboard_clock, killed)
    # Taken for dead, it is interrupted; but IPS may have started its run: no second executeJob
    # until the company's watcher knows.
    response = _press(client, job)
    assert response.status_code == 409
    assert "checking IPS" in response.content.decode()
    killed.refresh_from_db()
    assert killed.outcome == "interrupted"
    assert killed.finished_at is not None
    assert "stopped before IPS answered" in killed.message
    assert len(executes(emulator)) == 1

    _settled_not_started(emulator, company, killed)
    response = _press(client, job)
    assert response.status_code == 200, response.content.decode()[:500]
    assert "IPS accepted" in response.content.decode()
    assert _outcomes(job) == {"interrupted": 1, "already_running": 2, "accepted": 1}
    assert len(executes(emulator)) == 2


def test_a_killed_run_is_interrupted_by_reconcile_executions(killable, hold_calls, dashboard_clock):
    emulator, company, user = killable
    job = Job.objects.get(company=company, handle="47|Nightly | Publish|")
    other = Job.objects.get(company=company, handle="47|My Test Job|")
    killed = _kill_mid_call(emulator, hold_calls, job, user, "killed-reconciled-0002")
    client = Client()
    client.force_login(user)
    assert _press(client, job).status_code == 409

    # Fresh rows are left alone: their process may still be waiting on IPS.
    assert _run_command("reconcile_executions").strip() == "0 stale executions marked interrupted."
    killed.refresh_from_db()
    assert killed.outcome == "sending"

    _make_stale(dashboard_clock, killed)
    # Running another job does not touch this job's row: only its own job's are reconciled lazily.
    assert _press(client, other).status_code == 200
    killed.refresh_from_db()
    assert killed.outcome == "sending"

    out = _run_command("reconcile_executions")
    assert out.strip() == "1 stale execution marked interrupted."
    killed.refresh_from_db()
    assert killed.outcome == "interrupted"
    assert _run_command("reconcile_executions").strip() == "0 stale executions marked interrupted."

    assert _press(client, job).status_code == 409  # its fate unknown: nothing sent
    _settled_not_started(emulator, company, killed)
    response = _press(client, job)
    assert response.status_code == 200, response.content.decode()[:500]
    assert _outcomes(job) == {"interrupted": 1, "already_running": 2, "accepted": 1}
    assert [c["job_handle"] for c in executes(emulator)] == [job.handle, other.handle, job.handle]


@pytest.mark.django_db(transaction=True)
def test_a_live_run_slower_than_one_ips_timeout_is_not_taken_for_dead(
    users, job, ips_emulator, hold_calls, dashboard_clock, settings
):
    """A run makes several IPS calls (getActiveJobs, then executeJob),
    each allowed connect + read timeout. A live run slower than one call's
    timeouts plus the margin must still block its job, not be marked
    interrupted and sent again."""
    settings.IPS_STALE_MARGIN = 0.05
    one_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT + settings.IPS_STALE_MARGIN
    # The first run waits in its executeJob (answered within its read timeout once released).
    hold = hold_calls(ips_emulator, "executeJob")
    outcome = {}

    def first_run():
        try:
            outcome["row"] = press_run(job, users["IpsUser"], "slow-but-alive-01")
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=first_run, daemon=True)
    thread.start()
    try:
        hold.wait()
        row = Execution.objects.get(request_id="slow-but-alive-01")
        assert row.outcome == "sending"
        # The run has now taken longer than one call's timeouts, by the dashboard's clock.
        dashboard_clock.advance(one_call + 0.05)
        assert (timezone.now() - row.requested_at).total_seconds() > one_call + 0.05
        assert thread.is_alive(), "the first run ended too soon for this test to mean anything"

        client = Client()
        client.force_login(users["IpsAdmin"])
        response = _press(client, job)
        assert thread.is_alive(), "the first run ended while the second press was handled"
    finally:
        hold.release()
        thread.join(10)
    assert not thread.is_alive()

    assert "error" not in outcome, outcome
    assert response.status_code == 409
    assert "already being started by ipsuser" in response.content.decode()
    assert outcome["row"].outcome == "accepted"
    assert len(executes(ips_emulator)) == 1
    assert _outcomes() == {"accepted": 1, "already_running": 1}


# --- IPS accepted, the database failed ------------------------------------------------------


def test_an_accepted_run_whose_row_cannot_be_updated_is_logged_with_its_request_id(
    users, job, ips_emulator, monkeypatch, caplog, settings
):
    settings.TRUSTED_PROXIES = 1  # keep the proxy's X-Request-ID below
    real_save = Execution.save

    def failing_final_save(self, *args, **kwargs):
        # Only the final outcome write fails: the insert and the sent_at update go through.
        if self.pk is not None and self.outcome != "sending" and not kwargs.get("update_fields"):
            raise DatabaseError("disk I/O error")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Execution, "save", failing_final_save)
    client = Client(raise_request_exception=False)
    client.force_login(users["IpsUser"])
    request_id = "db-down-4711-abcdef"

    with caplog.at_level(logging.INFO):
        response = client.post(reverse("jobs:run", args=[job.pk]), HTTP_X_REQUEST_ID=request_id, **HTMX)

    assert response.status_code == 500
    assert len(executes(ips_emulator)) == 1, "IPS did get the run"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "jobs.services.press"]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert request_id in line
    assert "could not be updated" in line
    assert "accepted" in line
    assert errors[0].exc_info is not None  # the traceback goes with it
    # The row stays in flight until reconciled: the job is not run twice by a retry.
    row = Execution.objects.get()
    assert row.request_id == request_id
    assert row.outcome == "sending"

