"""Signing in with IPS as a person meets it: the login form's POST, against three IPS round trips.

Issue 18 asks for an IPS sign-in within 1.1x of its three IPS round trips
(checkLogin, then getUserInfo and getCompanyMembership as the person:
jobs/auth.py, jobs/services/people.py). This measures it as it would run in
production, each piece in a process of its own, set up as bench/watch_cost.py
does (its helpers are reused):

* the IPS emulator (``manage.py ipsemulator --no-scheduler``) with its demo
  data (ipsemulator/demo.toml): ipsuser@example.com / demo, IpsUser in 47;
* a fresh database (PostgreSQL ``ipsadmin_bench_sign_in`` by default, created
  and dropped here; or ``sqlite://``), migrated, with one connection to the
  emulator with sign-in with IPS on (as load_demo sets it up: the service
  account service@example.com / demo, companies 47 and 48), and one local
  superuser (``bench.admin``, no "@") with a random password;
* gunicorn with ipsadmin/gunicorn.conf.py under production settings (DEBUG=0,
  random keys, ``X-Forwarded-Proto: https`` from the client).

For each latency of ``--latencies`` (seconds, default 0,0.15), the emulator
delays every SOAP call by it (``POST /_emulator/inject`` {"kind": "latency",
"seconds": L, "times": null}; ``POST /_emulator/reset`` between latencies),
then N (``-n``, default 30) sign-ins of the IPS person and N of the local
superuser, one after the other, each as a fresh browser: GET the login page,
POST the credentials and CSRF token, expect 302 and a session. Only the POST
is timed. The IPS calls each sign-in made are counted with the emulator's
``GET /_emulator/calls?count=1``. Before measuring, ``--warm`` sign-ins of
each kind (default 2 per worker, unmeasured) let every worker read the WSDL
and open its connections.

Prints the load average at the start and the end, one line per latency and kind, then a Markdown table: p50/p95 of the
POST, 3 x latency, and the p50 and p95 over 3 x latency.

Run: .venv/bin/python bench/sign_in.py [-n 30] [--latencies 0,0.15] [--workers 3]
         [--database-url postgres://postgres@127.0.0.1:5432/ipsadmin_bench_sign_in | sqlite://] [--keep]
Ports: EMULATOR_PORT (the emulator) and PORT (gunicorn) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.watch_cost import (  # noqa: E402  (the same helpers, the same way of running things)
    Browser, Emulator, Processes, drop_database, fresh_database, pct, port_from_env, start_emulator,
    production_env, start_gunicorn,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_sign_in"
IPS_EMAIL, IPS_PASSWORD = "ipsuser@example.com", "demo"
LOCAL_USER = "bench.admin"
COMPANIES = (("47", "Demo Company"), ("48", "Café Zürich"))


def sign_in(base: str, username: str, password: str) -> float:
    """One fresh browser's sign-in: the seconds its POST took (302 and a session, else exit)."""
    browser = Browser(base)
    page = browser.request("GET", "/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    t0 = time.perf_counter()
    reply = browser.request("POST", "/accounts/login/", referer="/accounts/login/",
                            data={"username": username, "password": password, "csrfmiddlewaretoken": token})
    took = time.perf_counter() - t0
    if reply.status_code != 302 or "sessionid" not in browser.cookies:
        sys.exit(f"sign-in of {username} failed: {reply.status_code}\n{reply.text[:2000]}")
    return took


def load() -> str:
    """The machine's load average (1, 5, 15 min): the figures are only as quiet as the machine was."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def control(emulator: Emulator, what: str, body: dict | None = None) -> None:
    reply = emulator.http.post(f"{emulator.base_url}/_emulator/{what}", json=body or {}, timeout=10)
    if reply.status_code != 200:
        sys.exit(f"POST /_emulator/{what} {body}: {reply.status_code} {reply.text}")


def ips_calls(emulator: Emulator, since, until) -> collections.Counter:
    reply = emulator.http.get(f"{emulator.base_url}/_emulator/calls",
                              params={"since": since.isoformat(), "until": until.isoformat(), "count": "1"}, timeout=30)
    reply.raise_for_status()
    return collections.Counter(reply.json()["operations"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="sign-ins measured per latency and kind (30)")
    parser.add_argument("--latencies", default="0,0.15", help="IPS latencies in seconds, comma-separated (0,0.15)")
    parser.add_argument("--warm", type=int, default=None, help="unmeasured sign-ins first (default 2 per worker)")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help=f"a PostgreSQL database to create (dropped first, and after), or sqlite:// (default {DEFAULT_URL})")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3, the config's)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    warm = args.warm if args.warm is not None else 2 * args.workers

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-sign-in-"))
    emulator_port, port = port_from_env("EMULATOR_PORT"), port_from_env("PORT")
    base = f"http://127.0.0.1:{port}"
    database_url = fresh_database(args.database_url, tmp)
    env = production_env(port, database_url, args.workers)
    procs = Processes(tmp)
    try:
        emulator = start_emulator(procs, env, emulator_port)

        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connection

        from jobs.models import Company, Connection

        conn = Connection(name="Bench IPS emulator", region=Connection.Region.CUSTOM,
                          service_url=f"{emulator.base_url}/scene7/services/IpsApiService",
                          username="service@example.com", ips_sign_in=True)
        conn.set_password("demo")  # the emulator's service account
        conn.save()
        for handle, name in COMPANIES:
            Company.objects.create(connection=conn, handle=handle, name=name)
        local_password = secrets.token_urlsafe(16)
        get_user_model().objects.create_superuser(LOCAL_USER, password=local_password)

        start_gunicorn(procs, env, port)

        if connection.vendor == "postgresql":
            connection.ensure_connection()
            db = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
        else:
            db = f"SQLite {connection.Database.sqlite_version}"
        connection.close()
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor())
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True).stdout.strip()
        backends = __import__("django.conf").conf.settings.AUTHENTICATION_BACKENDS
        print(f"tree {ROOT} at {head[:90]}\nbackends {', '.join(b.rsplit('.', 1)[1] for b in backends)}\n"
              f"ipsadmin at {base} (gunicorn, {args.workers} sync workers, DEBUG=0) on {db}; IPS emulator at "
              f"{emulator.base_url}; n={args.n}, {warm} warm-up sign-ins of each kind per latency; "
              f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; {load()}", flush=True)

        rows = []
        for latency in latencies:
            control(emulator, "reset")
            if latency:
                control(emulator, "inject", {"kind": "latency", "seconds": latency, "times": None})
            for kind, username, password in (("IPS", IPS_EMAIL, IPS_PASSWORD), ("local", LOCAL_USER, local_password)):
                for _ in range(warm):
                    sign_in(base, username, password)
                procs.check()
                since = emulator.now()
                times = [sign_in(base, username, password) * 1000 for _ in range(args.n)]
                calls = ips_calls(emulator, since, emulator.now())
                per = {op: n / args.n for op, n in sorted(calls.items())}
                three = 3 * latency * 1000
                row = dict(latency=latency, kind=kind, p50=pct(times, 50), p95=pct(times, 95),
                           mean=sum(times) / len(times), min=min(times), three=three, calls=per)
                rows.append(row)
                ratio = f"p50/3RT {row['p50'] / three:.2f}, p95/3RT {row['p95'] / three:.2f}" if three and kind == "IPS" else ""
                print(f"latency {latency * 1000:4.0f} ms  {kind:<5}  p50 {row['p50']:6.1f} ms  p95 {row['p95']:6.1f} ms  "
                      f"min {row['min']:6.1f} ms  3 x latency {three:5.0f} ms  {ratio}  IPS calls per sign-in {per}",
                      flush=True)
        procs.check()
        print(f"at the end: {load()}")
        print()
        print("| IPS latency | who | p50 | p95 | 3 × latency | p50 ÷ 3 RT | p95 ÷ 3 RT | p50 − 3 × latency | IPS calls each |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ips_row = r["kind"] == "IPS"
            ratio = (lambda v: f"{v / r['three']:.2f}") if r["three"] and ips_row else (lambda v: "—")
            three, over = (f"{r['three']:.0f} ms", f"{r['p50'] - r['three']:.0f} ms") if ips_row else ("—", "—")
            print(f"| {r['latency'] * 1000:.0f} ms | {'IPS person' if ips_row else 'local superuser'} | "
                  f"{r['p50']:.0f} ms | {r['p95']:.0f} ms | {three} | {ratio(r['p50'])} | {ratio(r['p95'])} | "
                  f"{over} | {sum(r['calls'].values()):g} |")
    finally:
        procs.stop()
        if args.keep:
            print(f"kept {tmp} and {database_url}")
        else:
            drop_database(database_url)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
