"""How long a press of Run takes, one at a time and in a burst.

Sets up what `make run` does, in a temporary directory: the IPS emulator
(in this process, with a generated company of jobs), a fresh SQLite database
(migrate, load_demo), and gunicorn with ipsadmin/gunicorn.conf.py (3 sync
workers by default). Logs in through the login form as the demo IpsUser, then
measures, over HTTP as htmx sends it:

* N sequential presses of Run, each on a different job (all accepted);
* a burst of 20 threads pressing Run on the same job at once (one accepted,
  the others refused as already running);
* a burst of 20 threads pressing Run on 20 different jobs (all accepted).

Run: .venv/bin/python bench/run_burst.py [--presses N] [--workers W] [--keep]
Ports: EMULATOR_PORT (the emulator) and PORT (gunicorn) from the environment, else free ones.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conftest import free_port, wait_for  # noqa: E402  (the tests' helpers)
from ipsemulator import server as emulator_server  # noqa: E402
from ipsemulator.clock import ManualClock  # noqa: E402

PYTHON = sys.executable
BURST = 20
WARMUP = 6  # presses not measured: each worker parses the WSDL on its first run


def pct(values, p):
    """Nearest-rank percentile."""
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def summary(name, latencies, statuses, wall=None):
    ms = [x * 1000 for x in latencies]
    line = (
        f"{name:<34} n={len(ms):<4} p50={pct(ms, 50):7.1f} ms  p95={pct(ms, 95):7.1f} ms  "
        f"max={max(ms):7.1f} ms  statuses={dict(sorted(statuses.items()))}"
    )
    if wall is not None:
        line += f"  wall={wall * 1000:.0f} ms"
    print(line, flush=True)


def write_data(path: Path, count: int) -> None:
    jobs = "\n".join(
        f'[[jobs]]\ncompany = "47"\nname = "Bench job {n:03d}"\ntype = "ImageServingPublish"\n'
        for n in range(1, count + 1)
    )
    path.write_text(
        f"""[emulator]
server_name = "ips-bench"
utc_offset = "+00:00"

[[companies]]
handle = "47"
name = "Bench Company"

{jobs}

[[users]]
email = "service@example.com"
password = "demo"
default_role = "IpsUser"
memberships = [{{ company = "47", role = "IpsUser" }}]
""",
        encoding="utf-8",
    )


def manage(env, *args):
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def wait_healthy(url, proc, log_path, timeout=30):
    def healthy():
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, "gunicorn to answer /healthz", timeout=timeout, poll=0.1)
    except AssertionError as exc:
        sys.exit(str(exc))


def log_in(base, username, password="demo") -> dict:
    """Log in through the login form; returns the cookies of the session."""
    s = requests.Session()
    page = s.get(base + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    reply = s.post(
        base + "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": base + "/accounts/login/"},
        timeout=10,
    )
    reply.raise_for_status()
    assert "sessionid" in s.cookies, "login failed"
    s.get(base + "/", timeout=10)  # a fresh CSRF cookie for the logged-in session
    return dict(s.cookies)


def htmx_session(cookies) -> requests.Session:
    s = requests.Session()
    s.cookies.update(cookies)
    s.headers.update({"X-CSRFToken": cookies["csrftoken"], "HX-Request": "true"})
    return s


def press(session, base, pk):
    t = time.perf_counter()
    r = session.post(f"{base}/jobs/{pk}/run", timeout=60)
    return time.perf_counter() - t, r.status_code


def burst(cookies, base, pks):
    barrier = threading.Barrier(len(pks))
    results = [None] * len(pks)

    def one(i, pk):
        session = htmx_session(cookies)
        barrier.wait(timeout=30)
        results[i] = press(session, base, pk)

    threads = [threading.Thread(target=one, args=(i, pk)) for i, pk in enumerate(pks)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    return [r[0] for r in results], collections.Counter(r[1] for r in results), time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=50, help="sequential presses (default 50)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3, as make run)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-"))
    jobs_needed = WARMUP + args.presses + 1 + BURST
    write_data(tmp / "bench.toml", jobs_needed)
    emulator = emulator_server.start(port=int(os.environ.get("EMULATOR_PORT") or 0), data_path=tmp / "bench.toml")
    # The emulator's clock stands still: every run stays active in IPS, so a
    # second press of the same job is refused however long the bench takes.
    emulator.state.clock = ManualClock()
    env = dict(
        os.environ, DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", DEBUG="1", GUNICORN_WORKERS=str(args.workers)
    )
    proc = None
    log = None
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "load_demo", "--service-url", emulator.service_url)
        with sqlite3.connect(tmp / "db.sqlite3") as db:
            pks = [pk for (pk,) in db.execute("select id from jobs_job order by name")]
        assert len(pks) == jobs_needed, (len(pks), jobs_needed)

        port = int(os.environ.get("PORT") or free_port())
        base = f"http://127.0.0.1:{port}"
        log_path = tmp / "gunicorn.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
             "ipsadmin.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_healthy(base, proc, log_path)
        cookies = log_in(base, "ipsuser")
        session = htmx_session(cookies)

        print(
            f"ipsadmin at {base}: gunicorn, {args.workers} sync workers, SQLite {tmp / 'db.sqlite3'}; "
            f"IPS emulator in-process at {emulator.base_url}",
            flush=True,
        )
        queue = iter(pks)
        for pk in [next(queue) for _ in range(WARMUP)]:
            press(session, base, pk)

        latencies, statuses = [], collections.Counter()
        for pk in [next(queue) for _ in range(args.presses)]:
            seconds, status = press(session, base, pk)
            latencies.append(seconds)
            statuses[status] += 1
        summary(f"sequential, {args.presses} different jobs", latencies, statuses)

        same = next(queue)
        latencies, statuses, wall = burst(cookies, base, [same] * BURST)
        summary(f"burst of {BURST} threads, same job", latencies, statuses, wall)

        latencies, statuses, wall = burst(cookies, base, [next(queue) for _ in range(BURST)])
        summary(f"burst of {BURST} threads, {BURST} jobs", latencies, statuses, wall)

        executes = [c for c in emulator.state.calls if c["operation"] == "executeJob"]
        same_job = sum(1 for c in executes if c["job_handle"] == "47|Bench job %03d|" % (pks.index(same) + 1))
        print(f"executeJob calls: {len(executes)} in all, {same_job} for the burst's single job", flush=True)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if log is not None:
            log.close()
        emulator.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
