"""Real task workers run the recurring chores; runs in IPS need none of them.

Worker PROCESSES (``manage.py db_worker`` on this pass's database, SQLite
file or PostgreSQL; ``manage.py rqworker`` on Redis) against the test
database, over real HTTP to the in-process emulator. What a task worker runs
now is the chores (the refresh of memberships read from IPS, jobs/tasks.py);
every run in IPS is watched by ``manage.py watch_ips`` instead, which needs no
queue (its processes under faults: test_watch_faults.py). The test waits for
the processes with ``wait_for`` (bounded), never for time to pass.

The process helpers here (``Proc``, ``Processes``, ``subprocess_env``,
``log_messages``) serve test_watch_faults.py too.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import rq
import rq.job
import rq.serializers
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from conftest import REDIS_TEST_URL
from jobs.models import Chore, Membership, MembershipChange
from jobs.services import chores

from .conftest import database_url_for_subprocess, free_port, wait_for

BASE_DIR = Path(settings.BASE_DIR)
PYTHON = sys.executable

pytestmark = pytest.mark.django_db(transaction=True)


# --- processes we start ---------------------------------------------------------------


class Proc:
    """A process we started (a worker, a watcher), in its own process group, its output in a file.

    ``gated``: its stdin is a pipe, for a driver that waits for ``go()`` before it starts working."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path, gated: bool = False):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def go(self) -> None:
        """Let a gated driver start (a line on its stdin)."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no signal handler, no cleanup, as a crashed machine would do."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        """SIGTERM (a graceful stop: the task or look in hand ends first), then SIGKILL what is left."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # RQ's work horses, a restart loop's child
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdin:
            self.proc.stdin.close()
        self._log.close()


def subprocess_env(**extra) -> dict:
    """The environment of a process of ours: this test's database, the db task backend unless told."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="ipsadmin.settings",
        TASKS_BACKEND="db",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Processes:
    """The processes a test starts; every one stopped at its end."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[Proc] = []

    def db_worker(self, name: str, **env) -> Proc:
        """``manage.py db_worker`` on the test database."""
        argv = [PYTHON, "manage.py", "db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload",
                "--worker-id", name]
        return self.start(name, argv, subprocess_env(**env))

    def rq_worker(self, name: str, redis_url: str, **env) -> Proc:
        """``manage.py rqworker --with-scheduler`` (django-rq) on Redis, TASKS_BACKEND=rq."""
        argv = [PYTHON, "manage.py", "rqworker", "--with-scheduler", "--job-class", "django_tasks_rq.Job",
                "--name", f"{name}-{secrets.token_hex(4)}", "default"]
        return self.start(name, argv, subprocess_env(TASKS_BACKEND="rq", REDIS_URL=redis_url, **env))

    def start(self, name: str, argv: list[str], env: dict, gated: bool = False) -> Proc:
        proc = Proc(name, argv, env, self.tmp_path / f"{name}.log", gated=gated)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@pytest.fixture
def procs(transactional_db, tmp_path):
    """Starts processes; all stopped before transactional_db empties the tables."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def log_messages(text: str) -> list[str]:
    """The messages of a process's log: one JSON object per line (settings.LOGGING), or plain lines."""
    messages = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            messages.append(line)
        else:
            messages.append(record.get("message", "") if isinstance(record, dict) else line)
    return messages


# --- the chore the workers run: the refresh of memberships read from IPS ----------------------

PERSON = "ipsuser@example.com"


@pytest.fixture
def signed_in(connection, synced, client):
    """A connection whose service account is an IpsAdmin (it may read other people), with sign-in
    with IPS, and a person signed in with it: IpsUser in 47, as IPS says."""
    connection.username = "ipsadmin@example.com"
    connection.set_password("demo")
    connection.ips_sign_in = True
    connection.save()
    response = client.post(reverse("login"), {"username": PERSON, "password": "demo"})
    assert response.status_code == 302, response.content.decode()[:500]
    person = get_user_model().objects.get(username=PERSON)
    assert role_in_47(person) == "IpsUser"
    return person


def role_in_47(person) -> str:
    return Membership.objects.filter(user=person, company__handle="47").values_list("role", flat=True).first() or ""


def demote_in_ips(ips_emulator) -> None:
    """An IPS administrator changes the person's type in 47: only a refresh brings it here."""
    ips_emulator.state.change_user(PERSON, memberships={"47": "TrialSiteUser"})


def refreshed(person, *workers: Proc) -> bool:
    for w in workers:
        w.check_alive()
    return role_in_47(person) == "TrialSiteUser" and Chore.objects.filter(
        name=chores.REFRESH_MEMBERSHIPS, last_run_at__isnull=False
    ).exists()


def assert_refreshed_by_the_chore(person) -> None:
    change = MembershipChange.objects.filter(username=PERSON, role_after="TrialSiteUser").get()
    assert (change.role_before, change.source) == ("IpsUser", MembershipChange.Source.IPS_REFRESH)
    assert "1 people refreshed from IPS" in Chore.objects.get(name=chores.REFRESH_MEMBERSHIPS).last_result


# --- the embedded backend: db_worker --------------------------------------------------------


def test_a_db_worker_runs_the_membership_refresh_chore(signed_in, ips_emulator, procs):
    chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    assert DBTaskResult.objects.filter(status="READY").count() == 1
    demote_in_ips(ips_emulator)
    worker = procs.db_worker("db-worker-1")
    wait_for(lambda: refreshed(signed_in, worker), "the worker to run the refresh chore")
    assert_refreshed_by_the_chore(signed_in)
    # The chain goes on: its next run waits in the queue for its time (an hour by default).
    # The worker queues the next run inside the chore, then records this one's success: both awaited.
    wait_for(lambda: DBTaskResult.objects.filter(status="READY").count() == 1
             and DBTaskResult.objects.filter(status="SUCCESSFUL").count() == 1,
             "the chore's run recorded and its next run queued")
    assert DBTaskResult.objects.count() == 2


def test_a_worker_killed_mid_chore_then_stopped_a_while_loses_no_run_of_it(
    signed_in, ips_emulator, hold_calls, procs
):
    """SIGKILL the worker while its chore waits on IPS; no worker for a while; the next worker
    runs the chore's next run, which came due meanwhile: nobody runs a command by hand."""
    chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    hold = hold_calls(ips_emulator, "getCompanyMembership")
    # Its next run is due 60 ms after this one starts: due long before the next worker is up.
    doomed = procs.db_worker("db-worker-doomed", IPS_MEMBERSHIP_REFRESH_MINUTES="0.001")
    wait_for(lambda: doomed.check_alive() or hold.held, "the chore's IPS call to wait at the emulator")
    doomed.kill()
    hold.drop()
    assert role_in_47(signed_in) == "IpsUser"
    assert Chore.objects.get(name=chores.REFRESH_MEMBERSHIPS).last_run_at is None, "the chore was not cut off"
    # The chain survived its worker: the next run was queued before the chore asked IPS.
    assert DBTaskResult.objects.filter(status="READY").count() == 1

    demote_in_ips(ips_emulator)  # while no worker runs
    survivor = procs.db_worker("db-worker-survivor")
    wait_for(lambda: refreshed(signed_in, survivor), "the next worker to run the chore's overdue run")
    assert_refreshed_by_the_chore(signed_in)


# --- the broker backend: RQ on Redis ----------------------------------------------------------

REDIS_LOCK = "ipsadmin-test-session"


@pytest.fixture
def redis_url():
    """A Redis database of its own (one of 8-15, locked against other test
    sessions), emptied before and after the test."""
    parts = urlsplit(REDIS_TEST_URL)
    token = secrets.token_hex(8)
    for number in range(8, 16):
        url = urlunsplit(parts._replace(path=f"/{number}"))
        db = redis.Redis.from_url(url, socket_connect_timeout=5)
        if db.set(REDIS_LOCK, token, nx=True, ex=900):
            break
    else:
        pytest.fail(f"Redis databases 8-15 at {REDIS_TEST_URL} are all taken by other test sessions")
    try:
        for key in db.scan_iter():
            if key != REDIS_LOCK.encode():
                db.delete(key)
        yield url
    finally:
        for key in db.scan_iter():
            if key != REDIS_LOCK.encode():
                db.delete(key)
        if db.get(REDIS_LOCK) == token.encode():
            db.delete(REDIS_LOCK)


def use_rq(settings, url: str) -> None:
    """This process enqueues to RQ at ``url``, as a web server with TASKS_BACKEND=rq does."""
    settings.RQ_QUEUES = {"default": {"URL": url, "DEFAULT_TIMEOUT": 600, "SERIALIZER": settings.RQ_SERIALIZER}}
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}


@pytest.fixture
def rq_backend(settings, redis_url):
    use_rq(settings, redis_url)
    return redis_url


@pytest.mark.redis
def test_an_rq_worker_runs_the_membership_refresh_chore(rq_backend, signed_in, ips_emulator, procs):
    """The same chore on RQ: nothing in jobs/ knows which backend runs it.

    (``rq_backend`` first: set up before ``procs``, torn down after them,
    so the Redis database is emptied once the worker is gone.)"""
    chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    assert not DBTaskResult.objects.exists(), "the chore went to the database backend"
    demote_in_ips(ips_emulator)
    worker = procs.rq_worker("rq-worker-1", rq_backend)
    wait_for(lambda: refreshed(signed_in, worker), "the RQ worker to run the refresh chore")
    assert_refreshed_by_the_chore(signed_in)
    assert not DBTaskResult.objects.exists()


class _Unpickled:
    """A forged job's argument: unpickling it touches ``marker`` (any code would run as easily)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


@pytest.mark.redis
def test_a_pickled_job_in_redis_runs_nothing_in_the_worker(rq_backend, procs, tmp_path):
    """Whoever can write to Redis cannot run code in the worker: it reads jobs as JSON only."""
    marker = tmp_path / "ran"
    conn = redis.Redis.from_url(rq_backend)
    forged = rq.Queue("default", connection=conn, serializer=rq.serializers.DefaultSerializer)
    job = forged.enqueue("jobs.tasks.refresh_memberships", _Unpickled(str(marker)))
    worker = procs.rq_worker("rq-worker-forged", rq_backend)
    wait_for(lambda: worker.proc.poll() is not None or forged.count == 0, "the worker to take the forged job")
    worker.stop()
    assert not marker.exists(), worker.log()[-2000:]
    # The payload is live: unpickled, it runs (so the assertion above could fail).
    rq.job.Job.fetch(job.id, connection=conn, serializer=rq.serializers.DefaultSerializer).args
    assert marker.exists()


def test_the_rq_worker_refuses_a_pickle_serializer(settings):
    with pytest.raises(CommandError, match="JSONSerializer only"):
        call_command("rqworker", "--burst", "--serializer", "rq.serializers.PickleSerializer", "default")


class RedisServer:
    """A redis-server of our own on a fixed port: stopped and started again (empty) at will."""

    def __init__(self, tmp_path: Path, password: str = ""):
        self.port = free_port()
        self.password = password
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.tmp_path)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self.pings(), "the private Redis server to answer")
        if self.proc.poll() is not None:
            pytest.fail(f"redis-server exited with {self.proc.returncode}")

    def kill(self) -> None:
        """Redis goes down at once, as a crashed server does: nothing saved, nothing comes back."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def pings(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis(tmp_path):
    """start_redis(password="") -> a RedisServer of this test's own, started; stopped at its end."""
    servers = []

    def start(password: str = "") -> RedisServer:
        server = RedisServer(tmp_path, password)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.redis
def test_an_rq_worker_on_a_redis_with_a_password_runs_the_chore(
    private_redis, settings, signed_in, ips_emulator, procs
):
    """Redis with a password, as docs/deploy.md sets it up."""
    server = private_redis(password=secrets.token_urlsafe(16))
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0").set("x", "1")
    use_rq(settings, server.url)
    chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    demote_in_ips(ips_emulator)
    worker = procs.rq_worker("rq-worker-password", server.url)
    wait_for(lambda: refreshed(signed_in, worker), "the RQ worker to run the refresh chore")
    assert_refreshed_by_the_chore(signed_in)
    worker.stop()

