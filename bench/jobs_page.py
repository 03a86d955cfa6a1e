"""The jobs page, everyone's landing page, for a superuser of 12 companies: 2,000 jobs against 20.

Issue 18 asks for the superuser's jobs page with 2,000 jobs in 12 companies
under 100 ms and 100 KB of HTML, and within 1.2x of the same page with 20
jobs (in the same 12 companies). This measures it as it runs in production:

* a fresh database per size (PostgreSQL ``ipsadmin_bench_jobs_page_<size>`` by
  default, created and dropped here; or ``sqlite://``), migrated, seeded
  through the ORM: one connection, 12 companies, the jobs spread evenly over
  them, but the first company (whose first jobs the page lists) has at least
  the rows the page lists, so that both pages list as many rows (like with
  like: the 20-job page listed 2, the 2,000-job one 5); half the jobs with a
  last run, in every company; a few runs of the first company running in IPS
  now, as the watcher records them; one superuser;
* gunicorn with ipsadmin/gunicorn.conf.py under production settings (DEBUG=0,
  random keys, ``X-Forwarded-Proto: https`` from the client). No IPS: the page
  and its poll read the database only (the connection points at a closed port).

Each size gets its gunicorn, all running at once; a browser logs in to each through the login
form. Then ``--warm`` unmeasured GET / and N measured (``-n``, default 20), the sizes taken in
turn for every request (as bench/history_pairs.py does: the machine's ups and downs fall on both
alike; measured one after the other, two quiet runs gave 0.94 and 1.48): the median and p95, the bytes of HTML;
the SQL statements of one GET / and its median CPU time (15 after 3), counted in
this process (Django's test client on the same database, DEBUG off; the CPU
time is the server's own work, steadier than the wall clock on a busy machine). Then the page's first Active-in-IPS poller
(its hx-get, with what it hx-includes from the page: the busy cells' ids) is
polled once to settle, then N times measured: median, bytes.

Run: .venv/bin/python bench/jobs_page.py [-n 20] [--sizes 20,2000]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_jobs_page | sqlite://] [--keep]
Ports: PORT (the first size's gunicorn; the next sizes' the ports after it) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.watch_cost import (  # noqa: E402  (the same helpers, the same way of running things)
    PYTHON, Browser, Processes, _pg_admin, fresh_database, manage, pct, port_from_env, start_gunicorn,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_jobs_page"
COMPANIES = 12
ADMIN = "bench.admin"
SCHEDULES = [("00 00 00 * * ", "PST"), ("00 30 02 * * ", "PST"), ("00 15 * * * ", "PST"), ("0 30 2 ? * MON-FRI", "PST"),
             ("00 00 06 * * ", "CET"), ("00 00 01 * * 1", "CET"), ("00 00 04 1 * ", "JST"), ("0 0/15 * * * ?", "JST")]
KINDS = ["Nightly Publish", "Upload", "Metadata Import", "Optimize", "Cleanup", "Video Sync", "Catalog Export"]
#: Runs of the first company that IPS is running now (the watcher's record of them).
RUNNING = 3


def seed(jobs: int, password: str) -> None:
    """The companies, jobs, last runs and the superuser, through the ORM."""
    from django.contrib.auth import get_user_model
    from django.db import connection, models
    from django.utils import timezone

    from jobs.models import Company, Connection, Execution, Job
    from jobs.views.jobs import FIRST_VIEW_ROWS

    conn = Connection(name="Bench", region=Connection.Region.CUSTOM,
                      service_url="http://127.0.0.1:9/scene7/services/IpsApiService", username="service@example.com")
    conn.set_password("bench")
    conn.save()
    now = timezone.now()
    companies = [Company.objects.create(connection=conn, handle=str(100 + i), name=f"Company {i + 1:02d}",
                                        last_synced_at=now - dt.timedelta(minutes=5)) for i in range(COMPANIES)]
    rows = []
    # The first company (by name), whose first jobs the page lists, has at least the rows it lists: the
    # page with 20 jobs lists as many rows as the one with 2,000 (like with like); the rest in turn.
    first_share = max(FIRST_VIEW_ROWS, -(-jobs // COMPANIES))
    nth, counted = {}, {}  # handle: the job's place among its company's jobs
    for i in range(jobs):
        company = companies[0] if i < first_share else companies[1 + (i - first_share) % (COMPANIES - 1)]
        name = f"{KINDS[i % len(KINDS)]} {i:04d}"
        schedule, zone = SCHEDULES[i % len(SCHEDULES)]
        rows.append(Job(company=company, handle=f"{company.handle}|{name}|", name=name, type="ImageServingPublish",
                        description=f"Bench job {i} of {company.name}", exec_schedule=schedule, time_zone=zone,
                        next_fire_time=now + dt.timedelta(hours=1 + i % 24), trigger_state="Normal",
                        submit_user_email="ops@example.com", last_synced_at=now))
        nth[rows[-1].handle] = counted[company.pk] = counted.get(company.pk, -1) + 1
    Job.objects.bulk_create(rows, batch_size=500)
    admin = get_user_model().objects.create_superuser(ADMIN, password=password)
    first = companies[0]
    running = list(Job.objects.filter(company=first).order_by("name", "pk")[:RUNNING])
    runs = []
    for k, job in enumerate(Job.objects.select_related("company").order_by("pk")):
        is_running = job in running
        # Half the jobs have a last run, every company some: each company's first, third, … job.
        if nth[job.handle] % 2 and not is_running:
            continue
        at = now - dt.timedelta(minutes=30 + k % 600)
        values = dict(job=job, company=job.company, company_handle=job.company.handle, job_handle=job.handle,
                      job_name=job.name, user=admin, username=ADMIN, role="IpsAdmin", outcome="accepted",
                      requested_at=at, sent_at=at, client_ip="192.0.2.1", user_agent="bench",
                      request_id=secrets.token_hex(16), ips_run_handle=f"{job.handle}run{k}",
                      ips_run_name=f"{job.name}_{k}", ips_started_at=at + dt.timedelta(seconds=1))
        if is_running:
            values.update(ips_state="Running", ips_progress=40)
        else:
            values.update(ips_state="Done", ips_progress=100, ips_log_type="EndUpload", ips_success_count=12,
                          ips_total_count=12, ips_ended_at=at + dt.timedelta(seconds=61), ips_result="ok",
                          ips_result_at=at + dt.timedelta(seconds=62), ips_runtime_ms=60_000)
        runs.append(Execution(**values))
    for run in runs:
        run.outcome, run.finished_at, run.duration_ms = "accepted", run.requested_at + dt.timedelta(seconds=1), 900
    # Rows as the press and the watcher leave them, written at once (as bench/history_scale.py does):
    # past the append-only guards, which admit them only one step at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE jobs_execution DISABLE TRIGGER jobs_execution_append_only")
    try:
        models.QuerySet.bulk_create(Execution.objects.all(), runs, batch_size=500)
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE jobs_execution ENABLE TRIGGER jobs_execution_append_only")


def drop(url: str) -> None:
    if url.startswith("sqlite"):
        return
    conn, name = _pg_admin(url)
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_queries() -> int:
    """The SQL statements of one GET / for the superuser, in this process."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(get_user_model().objects.get(username=ADMIN))
    client.get("/", secure=True)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/", secure=True).status_code == 200
    return len(queries)


def cpu_ms(n: int = 15) -> float:
    """The median CPU time of one GET / for the superuser in this process (Django's test client), in ms:
    the server's own work, less sensitive than the wall clock to what else the machine runs."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(HTTP_X_FORWARDED_PROTO="https")
    client.force_login(get_user_model().objects.get(username=ADMIN))
    times = []
    for i in range(n + 3):
        t0 = time.process_time()
        assert client.get("/", secure=True).status_code == 200
        if i >= 3:
            times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


def poller(page: str) -> tuple[str, dict]:
    """The first Active-in-IPS poller of the page: its address, and the values it includes (busy cells)."""
    url = html.unescape(re.search(r'hx-get="(/companies/\d+/active[^"]*)"', page)[1])
    return url, busy_ids(page)


def busy_ids(text: str) -> dict:
    ids = re.findall(r'<input type="hidden" name="busy" value="(\d+)"', text)
    return {"busy": ids} if ids else {}


class Server:
    """One size's gunicorn, a logged-in browser on it, and the page's poller."""

    def __init__(self, jobs: int, base: str, password: str):
        self.jobs, self.base = jobs, base
        self.browser = Browser(base)
        self.browser.log_in(ADMIN, password)
        self.times, self.poll_times = [], []

    def get(self) -> float:
        t0 = time.perf_counter()
        reply = self.browser.request("GET", "/")
        elapsed = (time.perf_counter() - t0) * 1000
        assert reply.status_code == 200, reply.status_code
        self.page = reply
        return elapsed

    def settle_poller(self) -> None:
        self.url, self.shown = poller(self.page.text)
        # The first poll after the page loads draws the busy cells; later ones answer what changed.
        self.first_poll = self.browser.request("GET", self.url, htmx=True, params=self.shown)
        self.shown = busy_ids(self.first_poll.text) or self.shown

    def poll(self) -> float:
        t0 = time.perf_counter()
        reply = self.browser.request("GET", self.url, htmx=True, params=self.shown)
        elapsed = (time.perf_counter() - t0) * 1000
        assert reply.status_code == 200, reply.status_code
        self.poll_reply = reply
        return elapsed

    def result(self) -> dict:
        return dict(p50=statistics.median(self.times), p95=pct(self.times, 95), bytes=len(self.page.content),
                    rows=len(re.findall(r'<tr id="job-\d+"', self.page.text)), poll_p50=statistics.median(self.poll_times),
                    poll_bytes=len(self.poll_reply.content), first_poll_bytes=len(self.first_poll.content))


def measure(servers: list[Server], n: int, warm: int) -> None:
    """Every size in turn for each timed request (as bench/history_pairs.py does): what else the
    machine runs meanwhile falls on all of them alike, not on whichever was measured then."""
    for _ in range(warm):
        for server in servers:
            server.get()
    for _ in range(n):
        for server in servers:
            server.times.append(server.get())
    for server in servers:
        server.settle_poller()
    for _ in range(warm):
        for server in servers:
            server.poll()
    for _ in range(n):
        for server in servers:
            server.poll_times.append(server.poll())


def start_size(jobs: int, args, tmp: Path, port: int, procs: Processes, made: list) -> Server:
    """A fresh database of ``jobs`` jobs, seeded, its CPU and queries counted in process, and its gunicorn."""
    from cryptography.fernet import Fernet

    base = f"http://127.0.0.1:{port}"
    url = args.database_url if args.database_url.startswith("sqlite") else f"{args.database_url}_{jobs}"
    sub = tmp / str(jobs)
    sub.mkdir()
    database_url = fresh_database(url, sub)
    made.append(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    env.update(DJANGO_SETTINGS_MODULE="ipsadmin.settings", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(64),
               IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(), ALLOWED_HOSTS="127.0.0.1,testserver",
               CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}", DATABASE_URL=database_url,
               GUNICORN_WORKERS=str(args.workers))
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    password = secrets.token_urlsafe(12)
    code = (f"import django; django.setup(); import sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from bench.jobs_page import seed, count_queries, cpu_ms; seed({jobs}, {password!r}); "
            f"print(cpu_ms()); print(count_queries())")
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seeding failed:\n{done.stdout}{done.stderr}")
    server_procs = Processes(sub)
    procs.append(server_procs)
    start_gunicorn(server_procs, env, port)
    server = Server(jobs, base, password)
    server.cpu, server.queries = float(done.stdout.split()[-2]), int(done.stdout.split()[-1])
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="measured requests of each kind per size (20)")
    parser.add_argument("--warm", type=int, default=6, help="unmeasured requests first (6)")
    parser.add_argument("--sizes", default="20,2000", help="numbers of jobs, comma-separated (20,2000)")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help=f"PostgreSQL databases <url>_<size> to create (dropped first, and after), or sqlite:// "
                             f"(default {DEFAULT_URL})")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3, the config's)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-jobs-page-"))
    port = port_from_env("PORT")
    db = "SQLite" if args.database_url.startswith("sqlite") else "PostgreSQL"
    head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"tree {ROOT} at {head[:90]}\ngunicorn ({args.workers} sync workers, DEBUG=0) on {db}; {COMPANIES} companies; "
          f"n={args.n} after {args.warm} warm-up; {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    procs, made, servers = [], [], []
    try:
        for i, size in enumerate(args.sizes.split(",")):
            # PORT for the first size, the next ports for the others (else free ones).
            servers.append(start_size(int(size), args, tmp, port + i if os.environ.get("PORT") else port_from_env("PORT"),
                                      procs, made))
        measure(servers, args.n, args.warm)
        for group in procs:
            group.check()
    finally:
        for group in procs:
            group.stop()
        if not args.keep:
            for url in made:
                drop(url)
    results = [dict(server.result(), jobs=server.jobs, queries=server.queries, cpu=server.cpu) for server in servers]
    for r in results:
        print(f"{r['jobs']:5d} jobs: GET / p50 {r['p50']:6.1f} ms p95 {r['p95']:6.1f} ms, {r['bytes'] / 1024:6.1f} KB, "
              f"{r['rows']} rows, {r['queries']} queries, CPU in-process {r['cpu']:.1f} ms; poll p50 {r['poll_p50']:5.1f} ms, {r['poll_bytes']} B "
              f"(first poll {r['first_poll_bytes']} B)", flush=True)
    if len(results) > 1:
        print(f"ratio p50 {results[-1]['jobs']}/{results[0]['jobs']}: {results[-1]['p50'] / results[0]['p50']:.2f}; "
              f"CPU in-process {results[-1]['cpu'] / results[0]['cpu']:.2f}")
    print(f"load after {os.getloadavg()[0]:.2f}")
    print()
    print("| jobs | GET / p50 | p95 | CPU in-process | HTML | rows | queries | poll p50 | poll HTML |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['jobs']:,} | {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['cpu']:.1f} ms | {r['bytes'] / 1024:.1f} KB | {r['rows']} | "
              f"{r['queries']} | {r['poll_p50']:.1f} ms | {r['poll_bytes'] / 1024:.1f} KB |")


if __name__ == "__main__":
    main()
