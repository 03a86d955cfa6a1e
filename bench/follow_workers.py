"""Two db_worker processes follow 200 accepted runs on one PostgreSQL.

The scenario of jobs/tests/test_workers.py, measured: the IPS emulator in this
process (demo data and N more jobs in company 47; its clock moved by this
script, never waited for), a fresh database (migrate, load_demo), N presses of
Run through actions.run_job (as the view makes them: each accepted run gets
its RunFollow and a first follow step in the task queue), then W
``manage.py db_worker`` processes started together on the backlog, polling
fast (IPS_FOLLOW_FIRST_POLL=0.05, IPS_FOLLOW_MAX_INTERVAL=0.2):

1. every run polled once while IPS lists it New;
2. the emulator's clock moves to mid-run: every run polled again, Running;
3. the clock moves past every run's end: every run polled to its final log.

Prints the wall time from the workers' start to the last result, polls per
run, IPS calls per followed run (the emulator's call log from the workers'
start on, by operation), the poll durations the workers logged, and checks
that no run was lost and none was polled by two workers at once.

Run: .venv/bin/python bench/follow_workers.py [--runs N] [--workers W]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_follow] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
FAST_FOLLOW = {"IPS_FOLLOW_FIRST_POLL": "0.05", "IPS_FOLLOW_MAX_INTERVAL": "0.2"}
RUN_SECONDS = 20.0  # on the emulator's clock
POLL_LINE = re.compile(r"follow of execution (\d+): asked IPS from (\S+) to (\S+)$")
STEP_LINE = re.compile(r"follow of execution \d+: (finished|polled|leased|stale|done|failed poll)$")


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


def pct(values, p):
    """Nearest-rank percentile."""
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def fresh_database(url: str, tmp: Path) -> str:
    """A new, empty database: PostgreSQL (dropped and created again) or a SQLite file in tmp."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp / 'db.sqlite3'}"
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    with psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                         password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')
        db.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    return url


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    import dj_database_url
    import psycopg

    from django.db import connections

    connections.close_all()
    cfg = dj_database_url.parse(url)
    with psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                         password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')


def wait_until(what, predicate, workers, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        for name, proc, log_path in workers:
            if proc.poll() is not None:
                sys.exit(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="accepted runs to follow (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="db_worker processes (default 2)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ipsadmin_bench_follow",
                        help="a database to create (dropped first, and after) or sqlite:// for a temporary file")
    parser.add_argument("--keep", action="store_true", help="keep the database and the workers' logs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-follow-"))
    database_url = fresh_database(args.database_url, tmp)
    env = dict(os.environ, DATABASE_URL=database_url, DEBUG="1", TASKS_BACKEND="db", **FAST_FOLLOW)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from ipsemulator import server as emulator_server
    from ipsemulator.clock import ManualClock
    from jobs.services import actions, base
    from jobs.models import Company, Execution, Job, RunFollow

    emulator = emulator_server.start(port=0, job_duration=RUN_SECONDS)
    state = emulator.state
    state.clock = clock = ManualClock()
    for n in range(args.runs):
        state.add_job("47", f"Bench follow {n:03d}")
    workers = []
    try:
        call_command("migrate", "--noinput", verbosity=0)
        call_command("load_demo", "--service-url", emulator.service_url, stdout=io.StringIO())
        company = Company.objects.get(handle="47")
        user = get_user_model().objects.get(username="ipsuser")
        access = company.access(user, "executeJob")
        jobs = list(Job.objects.filter(company=company, name__startswith="Bench follow "))
        assert len(jobs) == args.runs, len(jobs)
        for n, job in enumerate(jobs):
            result = actions.run_job(job, access, user, base.RequestInfo(f"bench-follow-{n:03d}"))
            assert result.outcome == "accepted", result.execution.message
            clock.advance(0.005)  # IPS's time moves between presses (all stay New: the first tenth of a run)
        executions = set(Execution.objects.filter(outcome="accepted").values_list("pk", flat=True))
        calls_before = len(state.calls)

        print(
            f"{args.runs} accepted runs, {args.workers} db_worker processes on "
            f"{connection.vendor} ({connection.settings_dict['NAME']}); IPS emulator in-process at "
            f"{emulator.base_url}; polls every 0.05 s growing to 0.2 s",
            flush=True,
        )
        started = time.monotonic()
        for w in range(args.workers):
            name = f"worker-{w + 1}"
            log_path = tmp / f"{name}.log"
            proc = subprocess.Popen(
                [PYTHON, "manage.py", "db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload",
                 "--worker-id", name],
                cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            workers.append((name, proc, log_path))

        def every(**lookup):
            return RunFollow.objects.filter(**lookup).count() == args.runs

        wait_until("a first poll of every run", lambda: every(execution__ips_state="New"), workers)
        phase1 = time.monotonic()
        clock.advance(RUN_SECONDS / 2)
        wait_until("every run seen Running", lambda: every(execution__ips_state="Running"), workers)
        phase2 = time.monotonic()
        clock.advance(RUN_SECONDS * 2)
        wait_until("every follow done", lambda: every(done_at__isnull=False), workers)
        elapsed = time.monotonic() - started

        follow_calls = state.calls[calls_before:]
        for _, proc, _ in workers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        logs = {name: log_path.read_text() for name, _, log_path in workers}
        messages = {name: log_messages(text) for name, text in logs.items()}
        polls = [(int(m[1]), dt.datetime.fromisoformat(m[2]), dt.datetime.fromisoformat(m[3]), name)
                 for name, lines in messages.items() for m in map(POLL_LINE.search, lines) if m]
        steps = collections.Counter(m[1] for lines in messages.values() for m in map(STEP_LINE.search, lines) if m)
        by_run = collections.defaultdict(list)
        for p in polls:
            by_run[p[0]].append(p)
        at_once = 0
        for run_polls in by_run.values():
            run_polls.sort(key=lambda p: p[1])
            at_once += sum(1 for a, b in zip(run_polls, run_polls[1:]) if b[1] < a[2])
        results = collections.Counter(
            Execution.objects.filter(pk__in=executions).values_list("ips_result", flat=True)
        )
        lost = args.runs - results.get("ok", 0)
        durations = [(p[2] - p[1]).total_seconds() * 1000 for p in polls]
        by_operation = collections.Counter(c["operation"] for c in follow_calls)

        print(f"wall time            {elapsed:6.1f} s  (phases: New {phase1 - started:.1f} s, "
              f"Running {phase2 - phase1:.1f} s, final {elapsed - (phase2 - started):.1f} s)")
        print(f"polls per run        {len(polls) / args.runs:6.2f}   ({len(polls)} polls; by worker "
              f"{dict(sorted(collections.Counter(p[3] for p in polls).items()))})")
        print(f"IPS calls per run    {len(follow_calls) / args.runs:6.2f}   ({len(follow_calls)} calls: "
              f"{dict(sorted(by_operation.items()))}; {len(follow_calls) / max(1, len(polls)):.2f} per poll)")
        print(f"poll duration        p50={pct(durations, 50):.1f} ms  p95={pct(durations, 95):.1f} ms  "
              f"max={max(durations):.1f} ms")
        print(f"follow steps         {dict(sorted(steps.items()))}")
        print(f"results              {dict(results)}; lost: {lost}; polled by two workers at once: {at_once}")
        if lost or at_once or len(polls) != sum(RunFollow.objects.values_list("polls", flat=True)):
            sys.exit("FAILED: a run was lost, polled twice at once, or a poll is missing from the logs")
    finally:
        for _, proc, _ in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        emulator.stop()
        if args.keep:
            print(f"kept {tmp} and {database_url}")
        else:
            drop_database(database_url)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
