"""Real task workers follow accepted runs to their IPS result.

Worker PROCESSES (``manage.py db_worker`` on this pass's database, SQLite
file or PostgreSQL; ``manage.py rqworker`` on Redis) against the test
database, over real HTTP to the in-process emulator. The emulator's runs move
only when the test moves its clock (``ips_clock``); the test waits for the
workers with ``wait_for`` (bounded), never for time to pass in the emulator.
The workers poll fast (``FAST_FOLLOW``). (The follow steps one by one, with a
recording scheduler: test_background_follow.py.)
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import django_rq
import pytest
import redis
import rq
import rq.job
import rq.serializers
from django.core.management import CommandError, call_command
from django.conf import settings
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from conftest import REDIS_TEST_URL
from jobs.services import actions, base, follow, sync
from jobs.models import Execution, Job, RunFollow
from jobs.templatetags.ipsadmin import duration

from .conftest import HTMX, database_url_for_subprocess, free_port, wait_for

BASE_DIR = Path(settings.BASE_DIR)
PYTHON = sys.executable

#: The follow's waits for worker processes: first poll after 50 ms, then up to 200 ms.
FAST_FOLLOW = {"IPS_FOLLOW_FIRST_POLL": "0.05", "IPS_FOLLOW_MAX_INTERVAL": "0.2"}
#: How long a run lasts on the emulator's clock.
RUN_SECONDS = 10.0

#: The worker's INFO line of every poll (follow.follow_step), written inside its lease.
POLL_LINE = re.compile(r"follow of execution (\d+): asked IPS from (\S+) to (\S+)$")
#: The worker's line of every follow step (jobs/tasks.py).
STEP_LINE = re.compile(r"follow of execution (\d+): (finished|polled|leased|stale|done|failed poll)$")


@pytest.fixture(autouse=True)
def _fast_follow(settings):
    """The press (in this process) schedules the first poll: the same waits as the workers'."""
    settings.IPS_FOLLOW_FIRST_POLL = float(FAST_FOLLOW["IPS_FOLLOW_FIRST_POLL"])
    settings.IPS_FOLLOW_MAX_INTERVAL = float(FAST_FOLLOW["IPS_FOLLOW_MAX_INTERVAL"])


# --- worker processes ---------------------------------------------------------


class Worker:
    """A task worker process we started, its output in a file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no signal handler, no cleanup, as a crashed machine would do."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # a graceful shutdown: ends its task first
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # RQ's work horses, if any are left
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="ipsadmin.settings",
        TASKS_BACKEND="db",
        PYTHONUNBUFFERED="1",
        **FAST_FOLLOW,
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Workers:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[Worker] = []

    def db(self, name: str, **env) -> Worker:
        """``manage.py db_worker`` on the test database."""
        argv = [PYTHON, "manage.py", "db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload",
                "--worker-id", name]
        return self._start(name, argv, worker_env(**env))

    def rq(self, name: str, redis_url: str, **env) -> Worker:
        """``manage.py rqworker --with-scheduler`` (django-rq) on Redis, TASKS_BACKEND=rq."""
        argv = [PYTHON, "manage.py", "rqworker", "--with-scheduler", "--job-class", "django_tasks_rq.Job",
                "--name", f"{name}-{secrets.token_hex(4)}", "default"]
        return self._start(name, argv, worker_env(TASKS_BACKEND="rq", REDIS_URL=redis_url, **env))

    def _start(self, name, argv, env) -> Worker:
        worker = Worker(name, argv, env, self.tmp_path / f"{name}.log")
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(transactional_db, tmp_path):
    """Starts worker processes; all stopped before transactional_db empties the tables."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


# --- what the workers did -------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    execution: int
    began: dt.datetime
    ended: dt.datetime
    worker: str


def log_messages(text: str) -> list[str]:
    """The messages of a worker's log: one JSON object per line (settings.LOGGING), or plain lines."""
    messages = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            messages.append(line)
        else:
            messages.append(record.get("message", "") if isinstance(record, dict) else line)
    return messages


def polls_in(worker_logs: dict[str, str]) -> list[Poll]:
    """Every poll the workers logged: which run, from when to when, by which worker."""
    return [
        Poll(int(m[1]), dt.datetime.fromisoformat(m[2]), dt.datetime.fromisoformat(m[3]), name)
        for name, text in worker_logs.items()
        for m in map(POLL_LINE.search, log_messages(text))
        if m
    ]


def steps_in(text: str) -> list[tuple[int, str]]:
    """(execution, what the step did) for every follow step a worker logged."""
    return [(int(m[1]), m[2]) for m in map(STEP_LINE.search, log_messages(text)) if m]


def polls_at_once(polls: list[Poll]) -> list[tuple[Poll, Poll]]:
    """Pairs of polls of one run that overlap in time (none, when the lease works)."""
    by_run = collections.defaultdict(list)
    for p in polls:
        by_run[p.execution].append(p)
    overlapping = []
    for runs_polls in by_run.values():
        runs_polls.sort(key=lambda p: p.began)
        for a, b in zip(runs_polls, runs_polls[1:]):
            if b.began < a.ended:
                overlapping.append((a, b))
    return overlapping


def history_row(client, execution: Execution) -> tuple[str, str]:
    """The execution's row on the history page, as its user sees it: (html, text)."""
    page = client.get(reverse("jobs:history"))
    assert page.status_code == 200
    row = re.search(rf'<tr id="execution-{execution.pk}".*?</tr>', page.content.decode(), re.S)
    assert row, f"execution {execution.pk} is not on the history page"
    return row.group(0), page_text(row.group(0))


def page_text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def wait_for_history(client, execution: Execution, workers: list[Worker], timeout=30.0) -> Execution:
    """Wait until the history page shows the run's final IPS result (written by a
    worker): its label and IPS runtime in the row, and on the run's page, linked
    from the row, the log type and the counts."""

    def shown():
        for w in workers:
            w.check_alive()
        execution.refresh_from_db()
        if not execution.ips_result:
            return False
        _, text = history_row(client, execution)
        return execution.ips_result_label in text and duration(execution.ips_runtime) in text

    try:
        wait_for(shown, f"the history page to show the IPS result of execution {execution.pk}", timeout=timeout)
    except AssertionError:
        execution.refresh_from_db()
        logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in workers)
        raise AssertionError(
            f"execution {execution.pk}: ips_result={execution.ips_result!r}, ips_state={execution.ips_state!r}; "
            f"history row: {history_row(client, execution)[1]!r}\n{logs}"
        ) from None
    markup, _ = history_row(client, execution)
    link = re.search(r'<a href="([^"]+)"', markup)
    assert link, markup
    run_page = client.get(html.unescape(link[1]))
    assert run_page.status_code == 200
    text = page_text(run_page.content.decode())
    for shown_there in (
        execution.ips_result_label,
        f"{execution.ips_success_count} ok",
        f"of {execution.ips_total_count}",
        execution.ips_log_type,
        duration(execution.ips_runtime),
    ):
        assert shown_there in text, (shown_there, text[:2000])
    return execution


def assert_final_ok(execution: Execution, ips_emulator) -> None:
    [final] = [log for log in ips_emulator.state.job_logs(execution.job_handle) if log.handle == execution.ips_run_handle]
    assert execution.ips_result == "ok" and execution.ips_state == "Done"
    assert execution.ips_log_type == "ImageServingPublishSuccess"
    assert execution.ips_success_count == final.counts["success"] > 0
    assert execution.ips_runtime_ms == RUN_SECONDS * 1000


def press(client, job) -> Execution:
    """A press of Run through the view: the follow is enqueued when the audit row commits."""
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200, response.content.decode()[:500]
    execution = Execution.objects.get(job=job, outcome="accepted")
    assert RunFollow.objects.filter(pk=execution.pk).exists()
    return execution


def recorded(execution: Execution, **values) -> bool:
    execution.refresh_from_db()
    return all(getattr(execution, k) == v for k, v in values.items())


# --- the embedded backend: db_worker ----------------------------------------------


def test_a_db_worker_follows_a_run_to_the_history_page_without_a_browser(
    client, login, job, ips_emulator, ips_clock, workers
):
    ips_emulator.state.job_duration = RUN_SECONDS
    worker = workers.db("db-worker-1")
    login("IpsUser")
    execution = press(client, job)
    assert DBTaskResult.objects.filter(status="READY").count() == 1
    # The browser is closed: nothing asks the status URL from now on.

    wait_for(lambda: worker.check_alive() or recorded(execution, ips_state="New"),
             "the worker's first poll of the run (New)")
    ips_clock.advance(RUN_SECONDS / 2)
    wait_for(lambda: worker.check_alive() or recorded(execution, ips_state="Running"),
             "the worker to record the run Running")
    assert 0 < execution.ips_progress < 100 and execution.ips_result == ""

    ips_clock.advance(RUN_SECONDS)
    execution = wait_for_history(client, execution, [worker])

    assert_final_ok(execution, ips_emulator)
    assert (execution.pk, "finished") in steps_in(worker.log())
    assert RunFollow.objects.get(pk=execution.pk).done_at is not None
    assert [c["operation"] for c in ips_emulator.state.calls].count("executeJob") == 1


def test_a_worker_killed_mid_poll_loses_no_run(client, login, job, ips_emulator, ips_clock, hold_calls, workers):
    """SIGKILL the worker while it waits on IPS for the run; a new worker brings the result.

    The dead worker's lease keeps everyone off the run until it ends: short
    IPS timeouts make it a few seconds (lease = 7 calls x (connect + read) +
    margin, follow.follow_lease), the only real time this test waits."""
    short_lease = {"IPS_CONNECT_TIMEOUT": "0.1", "IPS_READ_TIMEOUT": "0.5", "IPS_STALE_MARGIN": "0.1"}
    ips_emulator.state.job_duration = RUN_SECONDS
    login("IpsUser")
    execution = press(client, job)
    hold = hold_calls(ips_emulator, "getActiveJobs")  # after the press: its own getActiveJobs went through
    doomed = workers.db("db-worker-doomed", **short_lease)

    def polling():
        doomed.check_alive()
        return hold.held

    wait_for(polling, "the worker's poll to wait at the emulator")
    doomed.kill()
    hold.drop()  # its caller is dead: no reply; later calls go through
    follow = RunFollow.objects.get(pk=execution.pk)
    assert follow.lease_until is not None and follow.polls == 1, (
        "the worker finished its poll before it was killed: the test proves nothing\n" + doomed.log()
    )
    assert not polls_in({doomed.name: doomed.log()}), doomed.log()
    dead_lease = follow.lease_until

    ips_clock.advance(RUN_SECONDS * 2)
    survivor = workers.db("db-worker-survivor", **short_lease)
    execution = wait_for_history(client, execution, [survivor])

    assert_final_ok(execution, ips_emulator)
    polls = polls_in({survivor.name: survivor.log()})
    assert polls and all(p.execution == execution.pk for p in polls)
    assert min(p.began for p in polls) >= dead_lease, "a poll began inside the dead worker's lease"
    assert RunFollow.objects.get(pk=execution.pk).done_at is not None


# --- the broker backend: RQ on Redis -----------------------------------------------

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


@pytest.fixture
def rq_backend(settings, redis_url):
    """This process enqueues to RQ, as a web server with TASKS_BACKEND=rq does."""
    settings.RQ_QUEUES = {"default": {"URL": redis_url, "DEFAULT_TIMEOUT": 600, "SERIALIZER": settings.RQ_SERIALIZER}}
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    return redis_url


@pytest.mark.redis
def test_an_rq_worker_follows_a_run_to_the_history_page(
    rq_backend, client, login, job, ips_emulator, ips_clock, workers
):
    """The same follow on RQ: nothing in jobs/ knows which backend runs it.

    (``rq_backend`` first: set up before ``workers``, torn down after them,
    so the Redis database is emptied once the worker is gone.)"""
    ips_emulator.state.job_duration = RUN_SECONDS
    worker = workers.rq("rq-worker-1", rq_backend)
    login("IpsUser")
    execution = press(client, job)
    assert not DBTaskResult.objects.exists(), "the follow went to the database backend"
    queue = django_rq.get_queue("default")
    assert queue.scheduled_job_registry.count + queue.count == 1  # the first poll, waiting in Redis

    wait_for(lambda: worker.check_alive() or recorded(execution, ips_state="New"),
             "the RQ worker's first poll of the run (New)")
    ips_clock.advance(RUN_SECONDS * 2)
    execution = wait_for_history(client, execution, [worker])

    assert_final_ok(execution, ips_emulator)
    assert (execution.pk, "finished") in steps_in(worker.log())
    assert not DBTaskResult.objects.exists()
    worker.stop()


class _Unpickled:
    """A forged job's argument: unpickling it touches ``marker`` (any code would run as easily)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


@pytest.mark.redis
def test_a_pickled_job_in_redis_runs_nothing_in_the_worker(rq_backend, workers, tmp_path):
    """Whoever can write to Redis cannot run code in the worker: it reads jobs as JSON only."""
    marker = tmp_path / "ran"
    conn = redis.Redis.from_url(rq_backend)
    forged = rq.Queue("default", connection=conn, serializer=rq.serializers.DefaultSerializer)
    job = forged.enqueue("jobs.tasks.follow_run", _Unpickled(str(marker)))
    worker = workers.rq("rq-worker-forged", rq_backend)
    wait_for(lambda: worker.proc.poll() is not None or forged.count == 0, "the worker to take the forged job")
    worker.stop()
    assert not marker.exists(), worker.log()[-2000:]
    # The payload is live: unpickled, it runs (so the assertion above could fail).
    rq.job.Job.fetch(job.id, connection=conn, serializer=rq.serializers.DefaultSerializer).args
    assert marker.exists()


def test_the_rq_worker_refuses_a_pickle_serializer(settings):
    with pytest.raises(CommandError, match="JSONSerializer only"):
        call_command("rqworker", "--burst", "--serializer", "rq.serializers.PickleSerializer", "default")


@pytest.fixture
def redis_with_password(tmp_path):
    """A Redis server of its own that wants a password, as docs/deploy.md sets it up."""
    password = secrets.token_urlsafe(16)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--requirepass", password,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        wait_for(lambda: proc.poll() is not None or _pings(url), "the private Redis server to answer")
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}")
        yield url, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pings(url) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.mark.redis
def test_an_rq_worker_on_a_redis_with_a_password_follows_a_run(
    redis_with_password, settings, client, login, job, ips_emulator, ips_clock, workers
):
    url, port = redis_with_password
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0").set("x", "1")
    settings.RQ_QUEUES = {"default": {"URL": url, "DEFAULT_TIMEOUT": 600, "SERIALIZER": settings.RQ_SERIALIZER}}
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    ips_emulator.state.job_duration = RUN_SECONDS
    worker = workers.rq("rq-worker-password", url)
    login("IpsUser")
    execution = press(client, job)
    wait_for(lambda: worker.check_alive() or recorded(execution, ips_state="New"),
             "the RQ worker's first poll of the run (New)")
    ips_clock.advance(RUN_SECONDS * 2)
    execution = wait_for_history(client, execution, [worker])
    assert_final_ok(execution, ips_emulator)
    worker.stop()


# --- two workers, one PostgreSQL, 200 runs ---------------------------------------------

RUNS = 200


@pytest.mark.postgres
def test_two_db_workers_follow_two_hundred_runs_none_twice_at_once_none_lost(
    company, users, ips_emulator, ips_clock, workers
):
    """Two db_worker processes share one PostgreSQL and 200 accepted runs.

    Every run gets its result (none lost), no run is polled by both workers at
    once (each poll's interval, logged inside its lease, overlaps no other poll
    of that run), and the IPS calls per followed run are counted at the emulator."""
    state = ips_emulator.state
    state.job_duration = RUN_SECONDS * 2
    for n in range(RUNS):
        state.add_job("47", f"Follow {n:03d}")
    assert not sync.sync_company(company).error
    jobs = list(Job.objects.filter(company=company, name__startswith="Follow "))
    assert len(jobs) == RUNS
    user = users["IpsUser"]
    access = company.access(user, "executeJob")

    # 200 presses; IPS's clock moves 5 ms between them (every run stays New: its first tenth).
    for n, job in enumerate(jobs):
        result = actions.run_job(job, access, user, base.RequestInfo(f"bulk-{n:03d}"))
        assert result.outcome == "accepted", result.execution.message
        ips_clock.advance(0.005)
    executions = list(Execution.objects.filter(outcome="accepted").values_list("pk", flat=True))
    assert len(executions) == RUNS == RunFollow.objects.count()
    assert DBTaskResult.objects.filter(status="READY").count() == RUNS
    calls_before = len(state.calls)

    started = time.monotonic()
    # A lease of 9 s (7 calls x 1.25 s + 0.25 s) instead of 2 min: a step that
    # meets another's lease comes back when it ends (follow.follow_step).
    lease = {"IPS_CONNECT_TIMEOUT": "0.25", "IPS_READ_TIMEOUT": "1", "IPS_STALE_MARGIN": "0.25"}
    pair = [workers.db("db-worker-a", **lease), workers.db("db-worker-b", **lease)]

    def all_follows(**lookup):
        for w in pair:
            w.check_alive()
        return RunFollow.objects.filter(**lookup).count() == RUNS

    wait_for(lambda: all_follows(execution__ips_state="New"), "a first poll of every run (New)", timeout=60)
    ips_clock.advance(RUN_SECONDS / 2)  # every run is Running now
    # A second chain for every run while the workers poll (an operator's
    # resume_follows after a false alarm): the old chains' steps must go stale,
    # and a new step must not poll while an old one does.
    assert follow.resume_follows() == RUNS
    wait_for(lambda: all_follows(execution__ips_state="Running"), "every run seen Running", timeout=60)
    ips_clock.advance(RUN_SECONDS * 3)  # every run is over
    wait_for(lambda: all_follows(done_at__isnull=False), "every follow done", timeout=60)
    elapsed = time.monotonic() - started

    # None lost: every run has its final result.
    results = collections.Counter(Execution.objects.filter(pk__in=executions).values_list("ips_result", flat=True))
    assert results == {"ok": RUNS}
    assert not Execution.objects.filter(pk__in=executions, ips_runtime_ms__isnull=True).exists()

    # None polled by both workers at once; every poll is in the logs.
    for w in pair:
        w.stop()
    logs = {w.name: w.log() for w in pair}
    polls = polls_in(logs)
    assert polls_at_once(polls) == []
    assert len(polls) == sum(RunFollow.objects.values_list("polls", flat=True))
    assert {p.execution for p in polls} == set(executions)
    by_worker = collections.Counter(p.worker for p in polls)
    assert set(by_worker) == {"db-worker-a", "db-worker-b"}, by_worker  # both took part
    steps = collections.Counter(what for text in logs.values() for _, what in steps_in(text))
    assert steps["failed poll"] == 0, steps
    assert steps["stale"] > 0, steps  # the old chains met the new ones

    follow_calls = state.calls[calls_before:]
    per_run = len(follow_calls) / RUNS
    print(
        f"\n{RUNS} runs, 2 db_workers: {elapsed:.1f} s, {len(polls) / RUNS:.2f} polls per run, "
        f"{per_run:.2f} IPS calls per followed run "
        f"({dict(collections.Counter(c['operation'] for c in follow_calls))}), polls by worker {dict(by_worker)}, "
        f"steps {dict(steps)}"
    )
    assert not [c for c in follow_calls if c["operation"] == "executeJob"]
    assert len(follow_calls) <= 7 * len(polls)  # a poll: getActiveJobs, at most 5 getJobLogs pages, 1 getJobLogDetails


def test_the_overlap_check_finds_two_polls_of_one_run_at_once():
    """The check above can fail: two workers' poll lines of one run that overlap."""

    def line(execution, began, ended):
        message = (f"follow of execution {execution}: asked IPS "
                   f"from 2026-11-29T10:00:00.{began}+00:00 to 2026-11-29T10:00:00.{ended}+00:00")
        return json.dumps({"time": "2026-11-29 10:00:00,100", "level": "INFO", "request_id": "-",
                           "logger": "jobs.services.follow", "message": message}) + "\n"

    logs = {"a": line(7, "000000", "050000"), "b": line(7, "040000", "060000") + line(8, "040000", "060000")}
    [(first, second)] = polls_at_once(polls_in(logs))
    assert (first.worker, second.worker, first.execution) == ("a", "b", 7)
    # Back to back (one ends, the next begins at that instant) is not at once.
    logs["b"] = line(7, "050000", "060000")
    assert polls_at_once(polls_in(logs)) == []
