"""What one IPS call costs the dashboard, apart from IPS itself.

Starts the emulator in-process, then measures: the WSDL parse (once per
process), building a client for a new connection over an already parsed WSDL,
and sequential executeJob / getScheduledJobs round trips (the emulator's reset
before each executeJob, outside the timing), the same executeJob request POSTed
raw with requests, with the resident memory before and after. Run: .venv/bin/python bench/client_overhead.py [N]
(the emulator's port: EMULATOR_PORT from the environment, else a free one).
"""

import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")

import django  # noqa: E402
import requests  # noqa: E402

django.setup()

from ipsemulator import server  # noqa: E402
from jobs import ips  # noqa: E402


def rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def raw_request(client, emulator):
    """The client's own executeJob request (bytes and headers, recorded once), POSTed with plain requests:
    what the call costs without zeep, the deadline watch and the reply's reading."""
    transport = client._zeep.transport
    recorded = {}
    post = transport.post

    def recording(address, message, headers):
        recorded.update(address=address, message=message, headers=dict(headers))
        return post(address, message, headers)

    transport.post = recording
    try:
        emulator.state.reset()
        client.execute_job("47", "47|My Test Job|")
    finally:
        del transport.post
    http = requests.Session()

    def send():
        reply = http.post(recorded["address"], data=recorded["message"], headers=recorded["headers"], timeout=30)
        assert reply.status_code == 200 and b"Fault" not in reply.content, reply.text[:500]

    return send


def main(n):
    emulator = server.start(port=int(os.environ.get("EMULATOR_PORT") or 0), job_duration=0.05)
    try:
        before = rss_mib()
        t = time.perf_counter()
        endpoint = ips.Endpoint(service_url=emulator.service_url, user="service@example.com", password="demo")
        client = ips.get_client(endpoint)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(20):
            ips.IpsClient(ips.Endpoint(service_url=emulator.service_url, user=f"u{i}@x", password="p"))
        per_client = (time.perf_counter() - t) / 20
        parsed = ips.stats["wsdl_parses"]

        def timed(fn, setup=None):
            out = []
            for _ in range(n):
                if setup is not None:
                    setup()
                t = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t) * 1000)
            return out

        # No run in flight, so executeJob is accepted: reset before each call, outside the timing.
        exec_ms = timed(lambda: client.execute_job("47", "47|My Test Job|"), setup=emulator.state.reset)
        raw = raw_request(client, emulator)
        raw_ms = timed(raw, setup=emulator.state.reset)
        list_ms = timed(lambda: client.get_scheduled_jobs("47"))
        after = rss_mib()
        print(f"WSDL parse + first client: {first * 1000:.1f} ms (WSDL parses in this process: {parsed})")
        print(f"client for another connection, WSDL already parsed: {per_client * 1000:.2f} ms")
        for name, ms in (("executeJob", exec_ms), ("executeJob, the same bytes POSTed raw", raw_ms),
                         ("getScheduledJobs (5 jobs)", list_ms)):
            print(
                f"{name}: n={n} p50={statistics.median(ms):.2f} ms p95={pct(ms, 95):.2f} ms max={max(ms):.2f} ms"
            )
        print(f"RSS: {before:.1f} MiB before the first client, {after:.1f} MiB after {2 * n} calls")
    finally:
        emulator.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
