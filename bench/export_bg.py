"""The history CSV export through HTTP, as a background task, against the streamed export it replaced.

Issue 18 asks for the 1M-row export completed through gunicorn under production
settings with no worker timeout, its time, and the web worker's busy time. This
runs, in processes of their own:

* a database of ``--rows`` audit rows (PostgreSQL ``ipsadmin_bench_export_<rows>``,
  or ``var/bench-export-<rows>.sqlite3`` with ``sqlite://``), loaded as
  bench/history_scale.py loads its own (its loader, imported: 3 companies,
  2,000 jobs, 30 users, rows over a year), kept for the next run unless
  ``--fresh``;
* gunicorn with ipsadmin/gunicorn.conf.py under production settings (DEBUG=0,
  random keys, 3 sync workers, GUNICORN_TIMEOUT 45 s), and one
  ``manage.py db_worker`` (django-tasks-db, the default backend);
* ``--old``: gunicorn of the tree at ``--old-rev`` (default HEAD; 7518999 is the
  last whose export streams from the web worker), ``git archive`` unpacked in a
  temporary directory.

Each run, as the superuser ``admin`` (every row): POST /history/export.csv as
htmx (the request time is the web worker's busy time), then poll the
progress panel every 0.5 s as the page does until it answers 286, then
download the file. It prints the request times (POST, polls p50/max, download),
the total from the POST to the last byte, rows/s, and the db_worker's peak
resident memory (VmHWM). The old export: one POST, read to its end; its time,
status, bytes and whether gunicorn cut it off.

Run: .venv/bin/python bench/export_bg.py [--rows 1000000] [--runs 2] [--old | --old-only]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_export | sqlite://] [--fresh]
Ports: PORT (gunicorn, new), OLD_PORT (gunicorn, old) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.watch_cost import PYTHON, Browser, Processes, port_from_env, wait_until  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_export"


def database_url(base: str, rows: int) -> str:
    if base.startswith("sqlite"):
        return f"sqlite:///{ROOT / 'var' / f'bench-export-{rows}.sqlite3'}"
    return f"{base}_{rows}"


def load(url: str, rows: int) -> None:
    """In a child process: the database with its rows (history_scale's loader), unless it has them already."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import random

    from bench import history_scale

    import django

    try:
        django.setup()
        from django.core.management import call_command

        from jobs.models import Execution

        call_command("migrate", verbosity=0)  # a kept database gets new migrations (0019)
        if Execution.objects.count() == rows:
            print(json.dumps({"reused": rows}), flush=True)
            return
    except Exception:
        pass
    from django.db import connections

    connections.close_all()
    history_scale.create_database(url)
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    rng = random.Random(history_scale.SEED)
    _, _, active, members = history_scale.setup_world(rng)
    took = history_scale.load_executions(rng, rows, active, members, timezone.now())
    print(json.dumps({"generated": rows, "seconds": round(took, 1)}), flush=True)


def readers(url: str) -> None:
    """In a child process: every row read in the export's order (newest first, as the superuser), by the
    keyset chunks the export uses and by a server-side cursor (``.iterator()``), bare and as CSV cells."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import datetime as dt

    import django

    django.setup()
    from django.db import connection, transaction

    from jobs import csvexport, history
    from jobs.models import Execution

    fields = [f for _, f in csvexport.EXPORT_COLUMNS]
    sort = history.DEFAULT_SORT

    def keyset():
        return history.chunks(Execution.objects.all(), sort, fields, 2000)

    def cursor():
        return Execution.objects.order_by(*sort.ordering).values_list(*fields).iterator(chunk_size=2000)

    def timed(label, rows):
        t = time.perf_counter()
        n = sum(1 for _ in rows)
        took = time.perf_counter() - t
        print(json.dumps({"reader": label, "rows": n, "s": round(took, 2), "rows_per_s": round(n / took)}), flush=True)

    timed("keyset chunks of 2000, bare", keyset())
    timed("server-side cursor (autocommit: WITH HOLD), bare", cursor())
    if connection.vendor == "postgresql":
        with transaction.atomic():
            timed("server-side cursor in a transaction, bare", cursor())
    cells = csvexport._cell

    def as_cells(rows):
        for row in rows:
            yield [cells(v, dt.UTC) for v in row]

    timed("keyset chunks, as CSV cells", as_cells(keyset()))
    timed("server-side cursor, as CSV cells", as_cells(cursor()))


def peak_rss_mib(pid: int) -> float:
    """VmHWM of the process, or of its one Python child (manage.py runs in the process itself)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_gunicorn(procs: Processes, name: str, tree: Path, env: dict, port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    procs.procs[name] = (subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "ipsadmin.wsgi"],
        cwd=tree, env={**env, "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{port}"},
        stdout=open(procs.tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True),
        procs.tmp / f"{name}.log")

    def healthy():
        try:
            return requests.get(base + "/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(f"{name} to answer /healthz", healthy, procs, timeout=60)
    return base


def signed_in(base: str) -> Browser:
    """The superuser's browser, signed in (then History, not the jobs page: only the export is measured)."""
    browser = Browser(base)
    page = browser.request("GET", "/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    reply = browser.request("POST", "/accounts/login/", referer="/accounts/login/",
                            data={"username": "admin", "password": "bench", "csrfmiddlewaretoken": token})
    if reply.status_code != 302 or "sessionid" not in browser.cookies:
        sys.exit(f"login failed: {reply.status_code}\n{reply.text[:2000]}")
    page = browser.request("GET", "/history/")  # a fresh CSRF cookie for the signed-in session
    if page.status_code != 200:
        sys.exit(f"History answered {page.status_code} after login")
    return browser


def one_export(base: str, worker_pid: int) -> dict:
    browser = signed_in(base)
    t0 = time.perf_counter()
    reply = browser.request("POST", "/history/export.csv", htmx=True, referer="/history/")
    post = time.perf_counter() - t0
    if reply.status_code != 200 or "export-panel" not in reply.text:
        sys.exit(f"export POST answered {reply.status_code}: {reply.text[:2000]}")
    pk = int(reply.text.split("/history/exports/", 1)[1].split("/", 1)[0])
    polls = []
    while True:
        time.sleep(0.5)
        t = time.perf_counter()
        panel = browser.request("GET", f"/history/exports/{pk}/", htmx=True, referer="/history/")
        polls.append(time.perf_counter() - t)
        if panel.status_code == 286:
            break
        if panel.status_code != 200 or time.perf_counter() - t0 > 1800:
            sys.exit(f"progress answered {panel.status_code}: {panel.text[:2000]}")
    if "Ready:" not in panel.text:
        sys.exit(f"the export did not finish ready: {panel.text[:2000]}")
    ready = time.perf_counter() - t0
    t = time.perf_counter()
    size = 0
    with browser.http.get(f"{base}/history/exports/{pk}/download", stream=True, timeout=600, headers={
            "X-Forwarded-Proto": "https", "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}) as r:
        if r.status_code != 200:
            sys.exit(f"download answered {r.status_code}")
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
    download = time.perf_counter() - t
    total = time.perf_counter() - t0
    rows = int(panel.text.split("Ready: ", 1)[1].split(" ", 1)[0].replace(",", ""))
    return {"kind": "background", "post_ms": post * 1000, "poll_ms_p50": statistics.median(polls) * 1000,
            "poll_ms_max": max(polls) * 1000, "polls": len(polls), "ready_s": ready, "download_ms": download * 1000,
            "total_s": total, "rows": rows, "bytes": size, "rows_per_s": rows / ready,
            "worker_peak_rss_mib": peak_rss_mib(worker_pid)}


def old_export(base: str) -> dict:
    browser = signed_in(base)
    t0 = time.perf_counter()
    size, error = 0, ""
    try:
        with browser.http.post(f"{base}/history/export.csv", stream=True, timeout=600, headers={
                "X-Forwarded-Proto": "https", "Referer": browser.origin + "/history/",
                "X-CSRFToken": browser.cookies["csrftoken"],
                "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}) as r:
            status = r.status_code
            for chunk in r.iter_content(1 << 20):
                size += len(chunk)
    except requests.RequestException as e:  # gunicorn killed the worker midway: the stream breaks off
        status, error = -1, type(e).__name__
    took = time.perf_counter() - t0
    return {"kind": "streamed (HEAD)", "status": status, "total_s": took, "bytes": size, "broke_off": error}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--old", action="store_true", help="also the streamed export of --old-rev")
    parser.add_argument("--old-rev", default="HEAD",
                        help="the tree whose streamed export --old runs (7518999: the last before issue 18)")
    parser.add_argument("--old-only", action="store_true", help="only the streamed export of git HEAD")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--fresh", action="store_true", help="load the rows again")
    parser.add_argument("load_only", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = database_url(args.database_url, args.rows)
    if args.load_only == "load":
        load(url, args.rows)
        return
    if args.load_only == "readers":
        readers(url)
        return
    if args.fresh:
        from bench import history_scale

        history_scale.drop_database(url)
    began = time.monotonic()
    subprocess.run([PYTHON, __file__, "load", "--rows", str(args.rows), "--database-url", args.database_url],
                   cwd=ROOT, check=True)
    print(f"database ready in {time.monotonic() - began:.0f} s", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-export-"))
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    env.update(DJANGO_SETTINGS_MODULE="ipsadmin.settings", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(64),
               IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(), ALLOWED_HOSTS="127.0.0.1",
               DATABASE_URL=url, GUNICORN_WORKERS="3", EXPORTS_DIR=str(tmp / "exports"), PYTHONUNBUFFERED="1")
    procs = Processes(tmp)
    old_tree = None
    results = []
    try:
        base = start_gunicorn(procs, "gunicorn", ROOT, env, port_from_env("PORT"))
        worker = procs.start("db_worker", [PYTHON, "manage.py", "db_worker", "--interval", "0.2",
                                           "--no-startup-delay"], env)
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor())
        db = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
        print(f"{args.rows} rows on {db}; gunicorn (3 sync workers, DEBUG=0, timeout 45 s) + 1 db_worker; "
              f"{os.cpu_count()} CPUs ({cpu}); load {os.getloadavg()[0]:.2f}", flush=True)
        for _ in range(0 if args.old_only else args.runs):
            r = one_export(base, worker.pid)
            results.append(r)
            print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
        if args.old or args.old_only:
            old_tree = tmp / "head"
            # HEAD's files, without touching this checkout's index or worktrees.
            old_tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old_rev], check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
            # Production settings serve static files from a manifest: collected as for a deploy.
            subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=old_tree, env=env,
                           check=True)
            old_base = start_gunicorn(procs, "gunicorn-head", old_tree, env, port_from_env("OLD_PORT"))
            for _ in range(args.runs):
                r = old_export(old_base)
                results.append(r)
                print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
        print(f"load after: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
