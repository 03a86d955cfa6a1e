"""How long a press of Run takes, one at a time and in a burst, under production settings, against a bare executeJob.

Issue 18 asks for a press (POST /jobs/<pk>/run through htmx: getActiveJobs, then
executeJob) within 1.1x of its two IPS round trips at 150 ms of IPS latency, and
locally under 5x a bare executeJob. This measures it as it would run in
production, each piece in a process of its own, set up as bench/watch_cost.py
does (its helpers are reused):

* the IPS emulator (``manage.py ipsemulator --no-scheduler``) with company 47
  of as many jobs as the bench presses (each press is on a job not run before),
  whose runs last a day (``--job-duration``): a job once run stays active in
  IPS, so a second press of it is refused as already running;
* a fresh database (PostgreSQL ``ipsadmin_bench_run_burst`` by default, created
  and dropped here; or ``sqlite://`` for a temporary file), migrated, with a
  connection to the emulator, company 47 synced, and one user, IpsUser in 47;
* gunicorn with ipsadmin/gunicorn.conf.py under production settings (DEBUG=0,
  random keys, ``X-Forwarded-Proto: https`` from the client, as the TLS proxy
  of docs/deploy.md sends it). No watcher: nothing else calls IPS.

For each latency of ``--latencies`` (seconds, default 0,0.15) the emulator
delays every SOAP call by it (``POST /_emulator/inject`` {"kind": "latency",
"seconds": L, "times": null}; ``POST /_emulator/reset`` before), then:

* ``--warm`` presses (default 2 per worker, unmeasured: each worker parses the WSDL);
* N (``--presses``, default 50) presses of Run, one after the other, each on
  another job (all accepted), as htmx sends them (logged in, HX-Request,
  X-CSRFToken); the IPS calls they made, from the emulator's
  ``GET /_emulator/calls?count=1``;
* a burst of 20 threads pressing Run on one job at once (one accepted, the
  others refused as already running), and one of 20 threads on 20 jobs;
* the bare executeJob, ``--bare`` times each (default 50), on jobs of their own:
  "raw", the very request the dashboard's client sends (its bytes and headers,
  recorded once) POSTed straight to the emulator over a kept-alive HTTP
  connection, and "client", the project's IPS client in this process
  (``ips.client_for(connection).execute_job``: zeep's serialisation, the
  transport's deadline and caps, the reply's reading). "client" is the stricter
  base to compare with: a press cannot call IPS any cheaper than through it.

Then, in this process (the same settings and database; django.test.Client, as
a request reaches the view through every middleware), ``--counted`` presses
(default 5) with their SQL statements and transactions counted
(jobs/tests/sql_tally.py, the counter test_press_cost.py pins the figures with).

With each sequential run, the CPU time its presses cost the gunicorn workers
(/proc, user + system), and with each bare run the CPU time of this process per
call: on a busy machine, wall times mostly measure the wait for a CPU.

At latency 0, the floor under a press: a logged-in htmx POST to a view that does nothing
(bench/floor_settings.py serves the product plus /_bench/noop: every middleware, the session,
the user, CSRF), the durable commit of one UPDATE (a press waits for two: its row's sent_at
before executeJob, its outcome after), and two bare client calls; their sum, against a bare
executeJob, is the least a press of this design can be.

Prints one line per measurement as it goes, then a Markdown table.

Run: .venv/bin/python bench/run_burst.py [--presses 50] [--latencies 0,0.15] [--workers 3] [--bare 50]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_run_burst | sqlite://]
         [--profile N] [--show-sql] [--keep]
Ports: EMULATOR_PORT (the emulator) and PORT (gunicorn) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.watch_cost import (  # noqa: E402  (the same helpers, the same way of running things)
    COMPANY, USERNAME, Browser, Emulator, Processes, drop_database, fresh_database, pct, port_from_env,
    production_env, start_emulator, start_gunicorn, write_data,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_run_burst"
BURST = 20
DAY = 86400


def control(emulator: Emulator, what: str, body: dict | None = None) -> None:
    reply = emulator.http.post(f"{emulator.base_url}/_emulator/{what}", json=body or {}, timeout=10)
    if reply.status_code != 200:
        sys.exit(f"POST /_emulator/{what} {body}: {reply.status_code} {reply.text}")


def ips_calls(emulator: Emulator, since, until) -> collections.Counter:
    reply = emulator.http.get(f"{emulator.base_url}/_emulator/calls",
                              params={"since": since.isoformat(), "until": until.isoformat(), "count": "1"}, timeout=30)
    reply.raise_for_status()
    return collections.Counter(reply.json()["operations"])


def cpu_seconds(master: int) -> float:
    """CPU time (user + system) of the gunicorn master's workers so far: what presses cost the web
    workers, whatever else the machine is doing (wall times on a busy machine mostly wait for a CPU)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def press(browser: Browser, pk: int) -> tuple[float, int]:
    t = time.perf_counter()
    reply = browser.request("POST", f"/jobs/{pk}/run", htmx=True)
    return time.perf_counter() - t, reply.status_code


def burst(base: str, cookies: dict, pks: list[int]):
    """len(pks) threads, each a tab of the same browser (its cookies), pressing at once."""
    barrier = threading.Barrier(len(pks))
    results = [None] * len(pks)

    def one(i, pk):
        browser = Browser(base, cookies)
        barrier.wait(timeout=30)
        results[i] = press(browser, pk)

    threads = [threading.Thread(target=one, args=(i, pk)) for i, pk in enumerate(pks)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    wall = time.perf_counter() - t
    if any(r is None for r in results):
        sys.exit("a press of the burst did not finish")
    return [r[0] for r in results], collections.Counter(r[1] for r in results), wall


def line(name: str, seconds: list[float], statuses=None, wall=None) -> dict:
    ms = [s * 1000 for s in seconds]
    row = dict(name=name, n=len(ms), p50=pct(ms, 50), p95=pct(ms, 95), max=max(ms), statuses=statuses, wall=wall)
    text = f"  {name:<40} n={len(ms):<4} p50={row['p50']:7.1f} ms  p95={row['p95']:7.1f} ms  max={row['max']:7.1f} ms"
    if statuses is not None:
        text += f"  statuses={dict(sorted(statuses.items()))}"
    if wall is not None:
        text += f"  wall={wall * 1000:.0f} ms"
    print(text, flush=True)
    return row


class RawExecute:
    """The dashboard client's own executeJob request, recorded once, then POSTed again as bytes."""

    def __init__(self, client, job_handle: str):
        transport = client._zeep.transport
        recorded = {}
        post = transport.post

        def recording(address, message, headers):
            recorded.update(address=address, message=message, headers=dict(headers))
            return post(address, message, headers)

        transport.post = recording
        try:
            client.execute_job(COMPANY, job_handle)
        finally:
            del transport.post
        self.address, self.headers = recorded["address"], recorded["headers"]
        self.message = recorded["message"] if isinstance(recorded["message"], bytes) else recorded["message"].encode()
        self.handle = job_handle.encode()
        self.http = requests.Session()

    def __call__(self, job_handle: str) -> None:
        body = self.message.replace(self.handle, job_handle.encode())
        reply = self.http.post(self.address, data=body, headers=self.headers, timeout=60)
        if reply.status_code != 200 or b"Fault" in reply.content:
            sys.exit(f"the raw executeJob failed: {reply.status_code}\n{reply.text[:2000]}")


def measure_floor(browser: Browser, n: int, bare_client_ms: float) -> dict:
    """What a press cannot cost less than here: a logged-in htmx POST that does nothing, the
    two durable commits a press must wait for (its row's sent_at before executeJob, its
    outcome after), and its two IPS calls at a bare client's cost."""
    from django.db import connection, transaction

    seconds = []
    for _ in range(n):
        t = time.perf_counter()
        reply = browser.request("POST", "/_bench/noop", htmx=True)
        seconds.append(time.perf_counter() - t)
        if reply.status_code != 200:
            sys.exit(f"/_bench/noop answered {reply.status_code}")
    noop = line("floor: a logged-in htmx POST that does nothing", seconds)
    commits = []
    for _ in range(n):
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            # A row's write, committed durably (settings' synchronous commit): what sent_at's commit waits for.
            cursor.execute("UPDATE jobs_companywatch SET next_look_at = next_look_at")
        commits.append(time.perf_counter() - t)
    commit = line("floor: one durable commit of an UPDATE", commits)
    total = noop["p50"] + 2 * commit["p50"] + 2 * bare_client_ms
    print(f"  floor of a press: no-op request + 2 durable commits + 2 bare client calls = {total:.1f} ms "
          f"= {total / bare_client_ms:.1f}x a bare executeJob (client)", flush=True)
    return dict(noop=noop["p50"], commit=commit["p50"], total=total, ratio=total / bare_client_ms)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=50, help="sequential presses measured per latency (50)")
    parser.add_argument("--latencies", "--latency", default="0,0.15",
                        help="IPS latencies in seconds, comma-separated (0,0.15)")
    parser.add_argument("--bare", type=int, default=50, help="bare executeJob calls of each kind per latency (50)")
    parser.add_argument("--counted", type=int, default=5, help="presses with their SQL counted, in-process (5)")
    parser.add_argument("--warm", type=int, default=None, help="unmeasured presses first (default 2 per worker)")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help=f"a PostgreSQL database to create (dropped first, and after), or sqlite:// (default {DEFAULT_URL})")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3, the config's)")
    parser.add_argument("--show-sql", action="store_true", help="print the statements of one counted press")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile N more in-process presses with pyinstrument (not a requirement)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="profile N more in-process presses with cProfile on CPU time (process_time)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    warm = args.warm if args.warm is not None else 2 * args.workers
    per_latency = warm + args.presses + 1 + BURST + 2 * (args.bare + 1)
    jobs = per_latency * len(latencies) + args.counted + args.profile + args.cprofile

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-run-"))
    emulator_port, port = port_from_env("EMULATOR_PORT"), port_from_env("PORT")
    base = f"http://127.0.0.1:{port}"
    database_url = fresh_database(args.database_url, tmp)
    # The product's settings and URLs plus /_bench/noop, the floor under a press (bench/floor_settings.py).
    env = production_env(port, database_url, args.workers)
    env["DJANGO_SETTINGS_MODULE"] = "bench.floor_settings"
    procs = Processes(tmp)
    try:
        write_data(tmp / "bench.toml", jobs)
        emulator = start_emulator(procs, env, emulator_port, "--data", str(tmp / "bench.toml"),
                                  "--job-duration", str(DAY))

        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client

        from jobs import ips
        from django.utils import timezone

        from jobs.models import Company, CompanyWatch, Connection, Execution, Job, MembershipChange
        from jobs.services import people, sync
        from jobs.tests.sql_tally import tally

        conn = Connection(name="Bench IPS emulator", region=Connection.Region.CUSTOM,
                          service_url=f"{emulator.base_url}/scene7/services/IpsApiService",
                          username="service@example.com")
        conn.set_password("demo")  # the emulator's service account
        conn.save()
        password = secrets.token_urlsafe(16)
        user = get_user_model().objects.create_user(USERNAME, password=password)
        company = Company.objects.create(connection=conn, handle=COMPANY, name="Bench Company")
        people.change_membership(None, user, company, "IpsUser", MembershipChange.Source.ADMIN)
        synced = sync.sync_company(company)
        if synced.error:
            sys.exit(f"sync failed: {synced.error}")
        queue = iter(Job.objects.filter(company=company).order_by("name").values_list("pk", "handle"))
        assert Job.objects.filter(company=company).count() == jobs

        gunicorn = start_gunicorn(procs, env, port)
        browser = Browser(base)
        browser.log_in(USERNAME, password)

        if connection.vendor == "postgresql":
            connection.ensure_connection()
            db = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
        else:
            db = f"SQLite {connection.Database.sqlite_version}" + " (WAL: settings)"
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                   platform.processor())
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        print(f"tree {ROOT} at {head[:90]}{' (with changes)' if dirty else ''}\n"
              f"ipsadmin at {base} (gunicorn, {args.workers} sync workers, DEBUG=0) on {db}; IPS emulator at "
              f"{emulator.base_url}; {args.presses} presses, {warm} warm-up presses, {args.bare} bare calls of each "
              f"kind per latency; {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)

        client = ips.client_for(conn)
        table = []
        for latency in latencies:
            control(emulator, "reset")
            if latency:
                control(emulator, "inject", {"kind": "latency", "seconds": latency, "times": None})
            print(f"IPS latency {latency * 1000:.0f} ms", flush=True)
            for _ in range(warm):
                press(browser, next(queue)[0])
            procs.check()

            since, cpu = emulator.now(), cpu_seconds(gunicorn.pid)
            seconds, statuses = [], collections.Counter()
            for _ in range(args.presses):
                took, status = press(browser, next(queue)[0])
                seconds.append(took)
                statuses[status] += 1
            cpu = (cpu_seconds(gunicorn.pid) - cpu) / args.presses * 1000
            calls = ips_calls(emulator, since, emulator.now())
            sequential = line(f"sequential, {args.presses} jobs", seconds, statuses)
            print(f"  CPU of the web workers per press: {cpu:.1f} ms", flush=True)
            per_press = {op: n / args.presses for op, n in sorted(calls.items())}
            print(f"  IPS calls per press: {per_press}", flush=True)

            same = next(queue)[0]
            seconds, statuses, wall = burst(base, browser.cookies, [same] * BURST)
            same_burst = line(f"burst of {BURST} threads, one job", seconds, statuses, wall)
            accepted = Execution.objects.filter(job_id=same, outcome="accepted").count()
            print(f"  the burst's one job: {accepted} accepted", flush=True)
            seconds, statuses, wall = burst(base, browser.cookies, [next(queue)[0] for _ in range(BURST)])
            many_burst = line(f"burst of {BURST} threads, {BURST} jobs", seconds, statuses, wall)

            raw = RawExecute(client, next(queue)[1])
            client.execute_job(COMPANY, next(queue)[1])  # warm
            bare, bare_cpu = {}, {}
            for kind, call in (("raw", raw), ("client", lambda h: client.execute_job(COMPANY, h))):
                seconds = []
                cpu0 = time.process_time()
                for _ in range(args.bare):
                    handle = next(queue)[1]
                    t = time.perf_counter()
                    call(handle)
                    seconds.append(time.perf_counter() - t)
                bare_cpu[kind] = (time.process_time() - cpu0) / args.bare * 1000
                bare[kind] = line(f"bare executeJob, {kind}", seconds)
                print(f"  CPU of this process per call: {bare_cpu[kind]:.1f} ms", flush=True)
            floor = None
            if not latency:
                floor = measure_floor(browser, args.presses, bare["client"]["p50"])
            table.append(dict(latency=latency, sequential=sequential, same=same_burst, many=many_burst, bare=bare,
                              calls=sum(per_press.values()), cpu=cpu, bare_cpu=bare_cpu, floor=floor))
            procs.check()

        # Statements and transactions, in this process: as a request reaches the view.
        control(emulator, "reset")
        browser_here = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
        browser_here.force_login(user)
        browser_here.post(f"/jobs/{next(queue)[0]}/run", HTTP_HX_REQUEST="true", secure=True)  # warm
        counts, shown = [], None
        for _ in range(args.counted - 1):
            # Its company's watcher asleep until its next look, as just after a look (no watcher runs
            # here: a woken watch stays due, and a press then reads it once more).
            CompanyWatch.objects.update(next_look_at=timezone.now() + dt.timedelta(hours=1))
            with tally() as counted:
                reply = browser_here.post(f"/jobs/{next(queue)[0]}/run", HTTP_HX_REQUEST="true", secure=True)
            if reply.status_code != 200:
                sys.exit(f"an in-process press answered {reply.status_code}:\n{reply.content[:2000]}")
            counts.append((counted.count, counted.transactions))
            shown = counted
        statements = statistics.median(c for c, _ in counts)
        transactions = statistics.median(t for _, t in counts)
        print(f"SQL per accepted press (in-process, {len(counts)} presses): {statements:g} statements, "
              f"{transactions:g} transactions (each: {counts})", flush=True)
        if args.show_sql and shown is not None:
            print(shown)
        if args.profile:
            # Where a local press's time goes, over many presses (pyinstrument is not a requirement:
            # pip install --target /tmp/pyi pyinstrument; PYTHONPATH=/tmp/pyi).
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            with profiler:
                for _ in range(args.profile):
                    browser_here.post(f"/jobs/{next(queue)[0]}/run", HTTP_HX_REQUEST="true", secure=True)
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.cprofile:
            # CPU time only (waits on IPS, the database and fsync left out): where the worker's CPU goes.
            import cProfile
            import pstats

            cpu = time.process_time()
            profile = cProfile.Profile(time.process_time)
            profile.enable()
            for _ in range(args.cprofile):
                browser_here.post(f"/jobs/{next(queue)[0]}/run", HTTP_HX_REQUEST="true", secure=True)
            profile.disable()
            print(f"CPU per in-process press under cProfile: {(time.process_time() - cpu) * 1000 / args.cprofile:.1f} ms")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(r"jobs/|ips|django/(core/handlers|template|db/models/sql/compiler|contrib/sessions|contrib/auth|middleware)", 70)

        print()
        print("| IPS latency | press p50 | press p95 | 2 × latency | p50 ÷ 2 RT | bare raw p50 | bare client p50 | "
              "p50 ÷ bare client | p50 ÷ bare raw | burst one job p50 / max | burst 20 jobs p50 / max | "
              "IPS calls each | SQL statements / transactions each | worker CPU per press | client CPU per call |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in table:
            s, two = r["sequential"], 2 * r["latency"] * 1000
            raw, cl = r["bare"]["raw"]["p50"], r["bare"]["client"]["p50"]
            rt = (f"{two:.0f} ms", f"{s['p50'] / two:.2f}") if two else ("—", "—")
            print(f"| {r['latency'] * 1000:.0f} ms | {s['p50']:.1f} ms | {s['p95']:.1f} ms | {rt[0]} | {rt[1]} | "
                  f"{raw:.1f} ms | {cl:.1f} ms | {s['p50'] / cl:.1f} | {s['p50'] / raw:.1f} | "
                  f"{r['same']['p50']:.0f} / {r['same']['max']:.0f} ms | {r['many']['p50']:.0f} / {r['many']['max']:.0f} ms | "
                  f"{r['calls']:g} | {statements:g} / {transactions:g} | {r['cpu']:.1f} ms | "
                  f"{r['bare_cpu']['client']:.1f} ms |")
        for r in table:
            if r["floor"]:
                f = r["floor"]
                print(f"\nThe floor at {r['latency'] * 1000:.0f} ms: a no-op request {f['noop']:.1f} ms + 2 durable commits "
                      f"{2 * f['commit']:.1f} ms + 2 bare client calls {2 * r['bare']['client']['p50']:.1f} ms = "
                      f"{f['total']:.1f} ms = {f['ratio']:.1f}x a bare executeJob (client); the press: "
                      f"{r['sequential']['p50']:.1f} ms = {r['sequential']['p50'] / r['bare']['client']['p50']:.1f}x")
    finally:
        procs.stop()
        if args.keep:
            print(f"kept {tmp} and {database_url}")
        else:
            drop_database(database_url)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
