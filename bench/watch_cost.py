"""IPS calls per company per minute with the watcher: at rest, with runs, with open tabs; and the follow's lag.

Since the per-run follow is gone, one watcher per company (``manage.py
watch_ips``, jobs/services/watch.py) asks IPS once per interval, and pages and
status polls read the database only. This measures what that costs IPS, as it
would run in production, each piece in a process of its own:

* the IPS emulator (``manage.py ipsemulator --no-scheduler``: IPS's own
  scheduler fires nothing, so the only runs are the ones pressed here), with
  company 47 of 100 jobs (more if a scenario runs more) and company 48 of 5
  jobs that never run; a run lasts ``--run-seconds`` (the emulator's
  ``--job-duration``);
* a fresh database (PostgreSQL ``ipsadmin_bench_watch`` by default, created
  and dropped here; or ``sqlite://`` for a temporary file), migrated, with a
  connection to the emulator (its default sync interval of 15 minutes), the
  two companies and one user, IpsUser in both, with a random password;
* gunicorn with ipsadmin/gunicorn.conf.py under production settings
  (DEBUG=0, a random SECRET_KEY and IPSADMIN_ENCRYPTION_KEY, ALLOWED_HOSTS,
  CSRF_TRUSTED_ORIGINS, collectstatic into staticfiles/). The clients send
  ``X-Forwarded-Proto: https`` as the TLS proxy of docs/deploy.md would,
  so the secure cookies, the HTTPS redirect and CSRF's Referer check are
  the real ones;
* one ``manage.py watch_ips`` with IPS_WATCH_INTERVAL and
  IPS_WATCH_IDLE_INTERVAL from the environment, else the production
  defaults (10 s and 60 s). It syncs the jobs at its first look.

Each scenario is ``RUNS/TABS`` (``--scenarios``, default
0/0,0/20,1/0,10/0,100/0,10/1,10/20):

1. RUNS presses of Run on as many jobs of company 47, one after the other,
   through gunicorn as htmx sends them (POST /jobs/<pk>/run, logged in,
   HX-Request, X-CSRFToken): the dashboard's press, which calls getActiveJobs
   and executeJob, and wakes the company's watcher;
2. TABS open tabs: each GETs the jobs page, then polls what the page polls,
   read from the page's own hx-get/hx-trigger attributes: each followed
   run's status (``jobs:status``, "load delay:1s, every 2s") and each
   company's Active in IPS (``jobs:active``, "load, every 5s"), with the
   HX-Request header and the session cookie, until an answer 286 stops a
   poller (as htmx does). One logged-in session, as one browser's tabs;
3. the window (``--window`` s, default 120) starts half an interval after a
   look (the busy interval with runs, the idle one without), so it holds a
   whole number of looks; the runs last ``--run-seconds`` (default window +
   45 s) and are all still running at its end (checked). The IPS calls of
   each company in the window are read from the emulator's
   ``GET /_emulator/calls?companyHandle=…&since=…&until=…&count=1`` (the
   window's ends read from the emulator's own clock). Nothing else calls IPS
   in the window, so its looks are its getActiveJobs calls;
4. the end phase (with runs): from the window's end until every run pressed
   has its IPS result; its IPS calls, and each run's follow lag: when the
   watcher wrote ``ips_result_at`` minus the run's end in IPS
   (``ips_ended_at``, IPS's endDate), on one clock (the emulator's offset
   from this machine's clock is measured and taken off).

Before a scenario with no runs, the script waits for the watcher to go back
to its idle interval. Prints one line per scenario as it goes, then the
tables of docs/benchmarks.md (Markdown).

Run: .venv/bin/python bench/watch_cost.py [--window 120] [--run-seconds S] [--scenarios 0/0,1/0,...]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_watch | sqlite://]
         [--workers 3] [--api-version 2014-04-03] [--keep]
Ports: EMULATOR_PORT (the emulator) and PORT (gunicorn) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_watch"
COMPANY, QUIET = "47", "48"
QUIET_JOBS = 5
USERNAME = "bench.operator"
OPERATIONS = ["getActiveJobs", "getJobLogs", "getJobLogDetails", "getScheduledJobs"]
DEFAULT_SCENARIOS = "0/0,0/20,1/0,10/0,100/0,10/1,10/20"


# --- Processes ------------------------------------------------------------------------


def port_from_env(name: str) -> int:
    """The port the environment names, else a free one (bound, then released)."""
    if os.environ.get(name):
        return int(os.environ[name])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The processes this script started, each in its own process group, with its log file."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log_path = self.tmp / f"{name}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = (proc, log_path)
        return proc

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text(errors="replace")

    def check(self) -> None:
        """Exit with the log of any process that died."""
        for name, (proc, log_path) in self.procs.items():
            if proc.poll() is not None:
                sys.exit(f"{name} exited with {proc.returncode}; the end of its log ({log_path}):\n"
                         f"{self.log(name)[-6000:]}")

    def stop(self) -> None:
        for name, (proc, _) in reversed(list(self.procs.items())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, (proc, _) in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def sleep_until(deadline: float, procs: Processes) -> None:
    """Sleep until time.monotonic() reaches deadline, checking the processes every half second."""
    while (left := deadline - time.monotonic()) > 0:
        procs.check()
        time.sleep(min(left, 0.5))


def wait_until(what: str, predicate, procs: Processes, timeout: float, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        procs.check()
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


# --- The database ---------------------------------------------------------------------


def _pg_admin(url: str):
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    conn = psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                           password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True)
    return conn, cfg["NAME"]


def fresh_database(url: str, tmp: Path) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp / 'db.sqlite3'}"
    conn, name = _pg_admin(url)
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    from django.db import connections

    connections.close_all()
    conn, name = _pg_admin(url)
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The emulator's data and control API ----------------------------------------------


def write_data(path: Path, jobs: int) -> None:
    """Company 47 with ``jobs`` jobs and company 48 with a few: no schedules, no past runs."""
    blocks = [f'[[jobs]]\ncompany = "{COMPANY}"\nname = "Bench job {n:03d}"\ntype = "ImageServingPublish"\n'
              for n in range(1, jobs + 1)]
    blocks += [f'[[jobs]]\ncompany = "{QUIET}"\nname = "Quiet job {n}"\ntype = "ImageServingPublish"\n'
               for n in range(1, QUIET_JOBS + 1)]
    path.write_text(
        f"""[emulator]
server_name = "ips-bench"
utc_offset = "+00:00"

[[companies]]
handle = "{COMPANY}"
name = "Bench Company"

[[companies]]
handle = "{QUIET}"
name = "Quiet Company"

{chr(10).join(blocks)}
[[users]]
email = "service@example.com"
password = "demo"
default_role = "IpsUser"
memberships = [{{ company = "{COMPANY}", role = "IpsUser" }}, {{ company = "{QUIET}", role = "IpsUser" }}]
""",
        encoding="utf-8",
    )


class Emulator:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def now(self) -> dt.datetime:
        """The emulator's wall time (its clock, which stamps the calls it records)."""
        reply = self.http.get(f"{self.base_url}/_emulator/clock", timeout=10)
        reply.raise_for_status()
        return dt.datetime.fromisoformat(reply.json()["now"])

    def offset(self) -> dt.timedelta:
        """The emulator's clock minus this machine's: the best of 15 round trips."""
        best = None
        for _ in range(15):
            t0 = time.time()
            emu = self.now()
            t1 = time.time()
            if best is None or t1 - t0 < best[0]:
                local = dt.datetime.fromtimestamp((t0 + t1) / 2, dt.UTC)
                best = (t1 - t0, emu - local)
        return best[1]

    def call_times(self, company: str, operation: str, since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """When the emulator received each of the company's calls of ``operation`` in [since, until)."""
        reply = self.http.get(
            f"{self.base_url}/_emulator/calls",
            params={"companyHandle": company, "operation": operation, "since": since.isoformat(),
                    "until": until.isoformat()},
            timeout=30,
        )
        reply.raise_for_status()
        return [dt.datetime.fromisoformat(c["time"]) for c in reply.json()]

    def calls(self, company: str, since: dt.datetime, until: dt.datetime) -> collections.Counter:
        """The company's IPS calls received in [since, until) on the emulator's clock, by operation."""
        reply = self.http.get(
            f"{self.base_url}/_emulator/calls",
            params={"companyHandle": company, "since": since.isoformat(), "until": until.isoformat(), "count": "1"},
            timeout=30,
        )
        reply.raise_for_status()
        return collections.Counter(reply.json()["operations"])


# --- The browser ------------------------------------------------------------------------


class Browser:
    """One browser's session over HTTP, behind a TLS proxy: cookies kept by hand (they are Secure,
    and requests sends Secure cookies only to https:// addresses)."""

    def __init__(self, base: str, cookies: dict | None = None):
        self.base = base
        self.origin = "https://" + base.split("://", 1)[1]
        self.cookies = dict(cookies or {})
        self.http = requests.Session()

    def request(self, method: str, path: str, htmx: bool = False, referer: str = "/", **kwargs):
        headers = {"X-Forwarded-Proto": "https", "Referer": self.origin + referer}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if htmx:
            headers["HX-Request"] = "true"
        if method == "POST" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        reply = self.http.request(method, self.base + path, headers=headers, allow_redirects=False, timeout=60,
                                  **kwargs)
        for cookie in reply.cookies:
            self.cookies[cookie.name] = cookie.value
        return reply

    def log_in(self, username: str, password: str) -> None:
        page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        reply = self.request("POST", "/accounts/login/", referer="/accounts/login/",
                             data={"username": username, "password": password, "csrfmiddlewaretoken": token})
        if reply.status_code != 302 or "sessionid" not in self.cookies:
            sys.exit(f"login failed: {reply.status_code}\n{reply.text[:2000]}")
        page = self.request("GET", "/")  # a fresh CSRF cookie for the logged-in session
        if page.status_code != 200:
            sys.exit(f"the jobs page answered {page.status_code} after login")


class _Pollers(HTMLParser):
    """The elements of a page that poll: (url, first request after s or None, every s)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url, trigger = attrs.get("hx-get"), attrs.get("hx-trigger") or ""
        if not url or "every" not in trigger:
            return
        load, every = None, None
        for part in (p.strip() for p in trigger.split(",")):
            if m := re.fullmatch(r"every (\d+(?:\.\d+)?)(ms|s)", part):
                every = float(m[1]) / (1000 if m[2] == "ms" else 1)
            elif part == "load":
                load = 0.0
            elif m := re.fullmatch(r"load delay:(\d+(?:\.\d+)?)(ms|s)", part):
                load = float(m[1]) / (1000 if m[2] == "ms" else 1)
        if every:
            self.found.append((url, load, every))


def kind_of(url: str) -> str:
    return "status" if url.endswith("/status") else "active" if "/active" in url else "other"


class Tab(threading.Thread):
    """An open jobs page: loads it, then polls what it polls at the page's own intervals.

    As htmx: a load trigger fires once after its delay; "every N s" fires every N s (one in flight
    at a time per element: a timer that comes while the tab is still busy fires as soon as it can,
    and the ones missed meanwhile are dropped); an answer 286 stops the element's polling."""

    def __init__(self, base: str, cookies: dict, stop: threading.Event, records: list):
        super().__init__(daemon=True)
        self.browser = Browser(base, cookies)
        self.stop_event = stop
        self.records = records  # (time.time() at the answer, kind, seconds, status), shared (list.append is atomic)
        self.pollers_at_start = collections.Counter()
        self.stopped_by_286 = collections.Counter()
        self.loaded = threading.Event()
        self.error = None

    def get(self, url: str, htmx: bool):
        t0 = time.perf_counter()
        reply = self.browser.request("GET", url, htmx=htmx)
        self.records.append((time.time(), kind_of(url) if htmx else "page", time.perf_counter() - t0,
                             reply.status_code))
        return reply

    def run(self):
        try:
            page = self.get("/", htmx=False)
            if page.status_code != 200:
                raise RuntimeError(f"the jobs page answered {page.status_code}")
            parser = _Pollers()
            parser.feed(page.text)
            start = time.monotonic()
            # [url, load due or None, every due, every]
            pollers = [[url, None if load is None else start + load, start + every, every]
                       for url, load, every in parser.found]
            self.pollers_at_start.update(kind_of(p[0]) for p in pollers)
            self.loaded.set()
            while pollers and not self.stop_event.is_set():
                p = min(pollers, key=lambda p: min(p[1] or math.inf, p[2]))
                due = min(p[1] or math.inf, p[2])
                if due > time.monotonic():
                    self.stop_event.wait(due - time.monotonic())
                    continue
                if p[1] is not None and p[1] <= p[2]:
                    p[1] = None
                else:
                    p[2] += p[3]
                    p[2] = max(p[2], time.monotonic())  # late by more than a period: the missed ones dropped
                if self.get(p[0], htmx=True).status_code == 286:
                    pollers.remove(p)
                    self.stopped_by_286[kind_of(p[0])] += 1
            self.stop_event.wait()
        except Exception as exc:  # reported by the scenario
            self.error = exc
            self.loaded.set()


# --- One scenario ---------------------------------------------------------------------


def pct(values, p):
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def per_minute(count: float, seconds: float) -> float:
    return count * 60.0 / seconds


class Bench:
    def __init__(self, args, procs: Processes, emulator: Emulator, base: str, cookies: dict, job_pks: list[int],
                 busy: float, idle: float):
        self.args, self.procs, self.emulator, self.base, self.cookies = args, procs, emulator, base, cookies
        self.job_pks, self.busy, self.idle = job_pks, busy, idle

    def watch(self):
        from jobs.models import CompanyWatch

        return CompanyWatch.objects.get(company__handle=COMPANY)

    def wait_idle(self) -> None:
        """Until the company's last look found nothing to watch: its next look an idle interval after it."""
        def idle():
            w = self.watch()
            return (w.last_look_at and not w.lease_owner
                    and (w.next_look_at - w.last_look_at).total_seconds() >= self.idle - 0.5)
        wait_until("the watcher's idle interval", idle, self.procs, timeout=3 * self.idle + 60)

    def align(self, interval: float) -> None:
        """Sleep until half an interval before the company's next look (so a window holds whole looks)."""
        from django.utils import timezone

        target = self.watch().next_look_at - dt.timedelta(seconds=interval / 2)
        now = timezone.now()
        while target < now + dt.timedelta(seconds=0.2):
            target += dt.timedelta(seconds=interval)
        sleep_until(time.monotonic() + (target - now).total_seconds(), self.procs)

    def run(self, runs: int, tabs: int) -> dict:
        from django.db.models import Max
        from django.utils import timezone

        from jobs.models import Execution

        label = ("at rest" if not runs else f"{runs} run{'s' * (runs != 1)}") + (
            f", {tabs} tab{'s' * (tabs != 1)}" if tabs else "")
        out = {"label": label, "runs": runs, "tabs": tabs}
        if not runs:
            self.wait_idle()
        last_pk = Execution.objects.aggregate(m=Max("pk"))["m"] or 0

        # 1. The presses.
        press_started = self.emulator.now()
        browser = Browser(self.base, self.cookies)
        t0 = time.perf_counter()
        statuses = collections.Counter()
        for pk in self.job_pks[:runs]:
            statuses[browser.request("POST", f"/jobs/{pk}/run", htmx=True).status_code] += 1
        out["press_seconds"] = time.perf_counter() - t0
        pressed_local = timezone.now()
        if runs and statuses != {200: runs}:
            sys.exit(f"{label}: presses answered {dict(statuses)}")
        rows = Execution.objects.filter(pk__gt=last_pk, operation="executeJob")
        accepted = rows.filter(outcome="accepted").count()
        if accepted != runs:
            sys.exit(f"{label}: {accepted} of {runs} presses accepted")
        pressed = set(rows.values_list("pk", flat=True))

        # 2. The tabs.
        stop = threading.Event()
        records: list = []
        tab_threads = [Tab(self.base, self.cookies, stop, records) for _ in range(tabs)]
        for tab in tab_threads:
            tab.start()
        for tab in tab_threads:
            tab.loaded.wait(120)
            if tab.error:
                sys.exit(f"{label}: a tab failed: {tab.error!r}")

        # 3. The window, half an interval after a look.
        if runs:
            wait_until("the watcher's look after the presses",
                       lambda: (w := self.watch()).last_look_at and w.last_look_at > pressed_local
                       and not w.lease_owner, self.procs, timeout=60)
        self.align(self.busy if runs else self.idle)
        start, local_start = self.emulator.now(), time.time()
        out["press_calls"] = self.emulator.calls(COMPANY, press_started, start) if runs else collections.Counter()
        sleep_until(time.monotonic() + self.args.window, self.procs)
        end, local_end = self.emulator.now(), time.time()
        window = (end - start).total_seconds()
        # Every look asks getActiveJobs once, and nothing else does in the window (no press).
        out.update(window=window, calls=self.emulator.calls(COMPANY, start, end),
                   quiet=self.emulator.calls(QUIET, start, end))
        out["looks"] = out["calls"].get("getActiveJobs", 0)
        # The runs were meant to outlast the window: any result already written says they did not.
        out["ended_in_window"] = Execution.objects.filter(pk__in=pressed).exclude(ips_result="").count()

        # 4. The end phase: every run's result, and its lag.
        if runs:
            wait_until("every run's IPS result", lambda: Execution.objects.filter(
                pk__in=pressed, ips_result="").count() == 0, self.procs,
                timeout=self.args.run_seconds + 3 * self.busy + 120)
            done = self.emulator.now()
            offset = self.emulator.offset()
            out.update(end_seconds=(done - end).total_seconds(), end_calls=self.emulator.calls(COMPANY, end, done),
                       offset=offset)
            out["end_looks"] = out["end_calls"].get("getActiveJobs", 0)
            # Time between the starts of consecutive looks (their getActiveJobs), window and end phase.
            starts = self.emulator.call_times(COMPANY, "getActiveJobs", start, done)
            out["periods"] = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
            finished = list(Execution.objects.filter(pk__in=pressed).values_list(
                "ips_result", "ips_result_at", "ips_ended_at", "started_by"))
            out["results"] = collections.Counter(r[0] for r in finished)
            out["lags"] = [(at - (ended - offset)).total_seconds() for _, at, ended, _ in finished if ended and at]
            out["not_here"] = Execution.objects.filter(pk__gt=last_pk).exclude(started_by="here").count()
        stop.set()
        for tab in tab_threads:
            tab.join(30)
        failed = sum(1 for r in records if r[3] not in (200, 286))
        if failed:
            sys.exit(f"{label}: {failed} answers to the tabs were neither 200 nor 286 "
                     f"({dict(collections.Counter(r[3] for r in records))}): see the gunicorn log")
        if tabs:
            in_window = [r for r in records if local_start <= r[0] < local_end]
            out["tab_requests"] = {k: sum(1 for r in in_window if r[1] == k) for k in ("status", "active")}
            out["tab_ms"] = [r[2] * 1000 for r in in_window]
            out["tab_statuses"] = collections.Counter(r[3] for r in records)
            out["pollers"] = sum((t.pollers_at_start for t in tab_threads), collections.Counter())
            out["stopped_286"] = sum((t.stopped_by_286 for t in tab_threads), collections.Counter())
        self.report(out)
        return out

    def report(self, out: dict) -> None:
        calls, w = out["calls"], out["window"]
        total = sum(calls.values())
        line = (f"{out['label']:<18} window {w:5.1f} s  looks {out['looks']:3d}  IPS calls/min "
                f"{per_minute(total, w):6.2f}  ({dict(sorted(calls.items()))}; company {QUIET}: "
                f"{per_minute(sum(out['quiet'].values()), w):.2f}/min)")
        if out["runs"]:
            lags = out["lags"]
            line += (f"\n{'':18} presses {out['press_seconds']:.1f} s, press phase calls "
                     f"{dict(sorted(out['press_calls'].items()))}; ended in the window: {out['ended_in_window']}"
                     f"\n{'':18} end phase {out['end_seconds']:.1f} s, {out['end_looks']} looks, calls "
                     f"{dict(sorted(out['end_calls'].items()))}; results {dict(out['results'])}; rows not "
                     f"pressed here: {out['not_here']}"
                     f"\n{'':18} lag n={len(lags)} median={statistics.median(lags):.2f} s "
                     f"max={max(lags):.2f} s (emulator clock - local: {out['offset'].total_seconds() * 1000:.0f} ms); "
                     f"looks every {statistics.median(out['periods']):.2f} s (median), {max(out['periods']):.2f} s "
                     f"(max)")
        if out["tabs"]:
            ms = out["tab_ms"]
            req = out["tab_requests"]
            line += (f"\n{'':18} tabs: pollers {dict(out['pollers'])}, stopped by 286 {dict(out['stopped_286'])};"
                     f" in the window: status {per_minute(req['status'], w):.0f}/min, active "
                     f"{per_minute(req['active'], w):.0f}/min, p50={pct(ms, 50):.0f} ms p95={pct(ms, 95):.0f} ms;"
                     f" answers {dict(sorted(out['tab_statuses'].items()))}")
        print(line, flush=True)



def production_env(port: int, database_url: str, workers: int, **more: str) -> dict:
    """The environment of a production-settings process (DEBUG off, fresh keys, HTTPS origin)."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ipsadmin.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}",
        DATABASE_URL=database_url,
        GUNICORN_WORKERS=str(workers),
        **more,
    )
    return env


def start_gunicorn(procs: Processes, env: dict, port: int) -> subprocess.Popen:
    """gunicorn with the project's config on ``port``, once it answers /healthz (as behind TLS)."""
    proc = procs.start("gunicorn", [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{port}", "ipsadmin.wsgi"], env)

    def healthy():
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-Proto": "https"},
                                timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until("gunicorn to answer /healthz", healthy, procs, timeout=60)
    return proc

def start_emulator(procs: Processes, env: dict, port: int, *args: str) -> Emulator:
    """The emulator in a process of its own (IPS's scheduler off), once it answers; then the database
    migrated and the static files collected, as a deploy does."""
    procs.start("emulator", [PYTHON, "manage.py", "ipsemulator", "--host", "127.0.0.1", "--port", str(port),
                             *args, "--quiet", "--no-scheduler"], env)
    emulator = Emulator(f"http://127.0.0.1:{port}")

    def emulator_up():
        try:
            return emulator.now()
        except requests.RequestException:
            return None

    wait_until("the emulator", emulator_up, procs, timeout=60)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    return emulator


def markdown(results: list[dict]) -> str:
    head = ("| scenario | window | looks | " + " | ".join(OPERATIONS)
            + " | other | IPS calls/min | company 48/min | tab polls/min | lag median | lag max |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        w, calls = r["window"], r["calls"]
        other = sum(v for k, v in calls.items() if k not in OPERATIONS)
        cells = [r["label"], f"{w:.0f} s", str(r["looks"])]
        cells += [f"{per_minute(calls.get(op, 0), w):.1f}" for op in OPERATIONS]
        cells += [f"{per_minute(other, w):.1f}", f"**{per_minute(sum(calls.values()), w):.1f}**",
                  f"{per_minute(sum(r['quiet'].values()), w):.1f}"]
        cells.append(f"{per_minute(sum(r['tab_requests'].values()), w):.0f}" if r["tabs"] else "—")
        if r["runs"]:
            cells += [f"{statistics.median(r['lags']):.1f} s", f"{max(r['lags']):.1f} s"]
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| scenario | presses | press phase: IPS calls | end phase | its looks | its IPS calls | results "
              "| a look every (median, max) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["runs"]:
            continue
        lines.append(
            f"| {r['label']} | {r['runs']} in {r['press_seconds']:.1f} s | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(r['press_calls'].items()))} | {r['end_seconds']:.1f} s | "
            f"{r['end_looks']} | {', '.join(f'{k} {v}' for k, v in sorted(r['end_calls'].items()))} | "
            f"{', '.join(f'{k} {v}' for k, v in r['results'].items())} | "
            f"{statistics.median(r['periods']):.1f} s, {max(r['periods']):.1f} s |")
    tabbed = [r for r in results if r["tabs"]]
    if tabbed:
        lines += ["", "| scenario | pollers on the pages | stopped by 286 | status polls/min | Active polls/min "
                  "| p50 | p95 |", "|---|---|---|---|---|---|---|"]
        for r in tabbed:
            ms, w = r["tab_ms"], r["window"]
            lines.append(
                f"| {r['label']} | {', '.join(f'{k} {v}' for k, v in sorted(r['pollers'].items()))} | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(r['stopped_286'].items())) or '—'} | "
                f"{per_minute(r['tab_requests']['status'], w):.0f} | {per_minute(r['tab_requests']['active'], w):.0f} "
                f"| {pct(ms, 50):.0f} ms | {pct(ms, 95):.0f} ms |")
    return "\n".join(lines)


# --- Main -----------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=120.0, help="seconds each scenario is measured (120)")
    parser.add_argument("--run-seconds", type=float, default=None,
                        help="how long a run lasts in IPS (default: the window + 45 s, so runs outlast it)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help=f"RUNS/TABS, comma-separated (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help="a PostgreSQL database to create (dropped first, and after), or sqlite:// for a "
                             f"temporary file (default {DEFAULT_URL})")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3, the config's)")
    parser.add_argument("--api-version", default=None,
                        help="the connection's IPS API version (default the connection's default, 2014-04-03; "
                             "'' for the unversioned pre-4.0 namespace, whose getJobLogs has no endDate)")
    parser.add_argument("--keep", action="store_true", help="keep the database, the data file and the logs")
    args = parser.parse_args()
    scenarios = [tuple(int(x) for x in s.split("/")) for s in args.scenarios.split(",")]
    args.run_seconds = args.run_seconds or args.window + 45
    busy = float(os.environ.get("IPS_WATCH_INTERVAL", "10"))
    idle = float(os.environ.get("IPS_WATCH_IDLE_INTERVAL", "60"))
    jobs = max(100, *(r for r, _ in scenarios))

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-watch-"))
    emulator_port, port = port_from_env("EMULATOR_PORT"), port_from_env("PORT")
    base = f"http://127.0.0.1:{port}"
    database_url = fresh_database(args.database_url, tmp)
    env = production_env(port, database_url, args.workers, IPS_WATCH_INTERVAL=f"{busy:g}", IPS_WATCH_IDLE_INTERVAL=f"{idle:g}")
    procs = Processes(tmp)
    try:
        write_data(tmp / "bench.toml", jobs)
        emulator = start_emulator(procs, env, emulator_port, "--data", str(tmp / "bench.toml"),
                                  "--job-duration", f"{args.run_seconds:g}")

        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connection

        from jobs.models import Company, Connection, Job, MembershipChange
        from jobs.services import people

        conn = Connection(name="Bench IPS emulator", region=Connection.Region.CUSTOM,
                          service_url=f"{emulator.base_url}/scene7/services/IpsApiService",
                          username="service@example.com")
        if args.api_version is not None:
            conn.api_version = args.api_version
        conn.set_password("demo")  # the emulator's service account
        conn.save()
        password = secrets.token_urlsafe(16)
        user = get_user_model().objects.create_user(USERNAME, password=password)
        for handle, name in ((COMPANY, "Bench Company"), (QUIET, "Quiet Company")):
            company = Company.objects.create(connection=conn, handle=handle, name=name)
            people.change_membership(None, user, company, "IpsUser", MembershipChange.Source.ADMIN)

        procs.start("watcher", [PYTHON, "manage.py", "watch_ips"], env)
        start_gunicorn(procs, env, port)
        # The watcher's first look syncs the jobs (getScheduledJobs).
        wait_until("the watcher's first sync",
                   lambda: Job.objects.filter(company__handle=COMPANY).count() == jobs, procs, timeout=60)
        job_pks = list(Job.objects.filter(company__handle=COMPANY).order_by("name").values_list("pk", flat=True))
        browser = Browser(base)
        browser.log_in(USERNAME, password)

        if connection.vendor == "postgresql":
            connection.ensure_connection()
            db = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
        else:
            db = f"SQLite {connection.Database.sqlite_version}"
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor())
        print(f"ipsadmin at {base} (gunicorn, {args.workers} sync workers, DEBUG=0) on {db} "
              f"({connection.settings_dict['NAME']}); IPS emulator at {emulator.base_url}; one watch_ips; "
              f"IPS API {conn.api_version or 'unversioned (pre-4.0)'}; "
              f"IPS_WATCH_INTERVAL={busy:g} s, IPS_WATCH_IDLE_INTERVAL={idle:g} s; window {args.window:g} s, "
              f"runs of {args.run_seconds:g} s; {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}",
              flush=True)

        bench = Bench(args, procs, emulator, base, browser.cookies, job_pks, busy, idle)
        results = [bench.run(runs, tabs) for runs, tabs in scenarios]
        procs.check()
        problems = [line for line in procs.log("watcher").splitlines()
                    if '"level": "ERROR"' in line or "failed" in line or "Traceback" in line]
        print(f"watcher log: {len(problems)} lines of errors" + "".join(f"\n  {p[:300]}" for p in problems[:10]))
        print()
        print(markdown(results))
    finally:
        procs.stop()
        if args.keep:
            print(f"kept {tmp} and {database_url}")
        else:
            drop_database(database_url)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
