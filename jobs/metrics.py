"""Prometheus metrics: what the processes count, and the one registry /metrics renders.

Endpoint contract (issue 21; jobs/views/health.py serves these, scripts/smoke.py reads them)
------------------------------------------------------------------------------------------
``GET /healthz``  liveness: 200 ``text/plain`` "ok". No database, no login, never cached.

``GET /readyz``   readiness: ``application/json``, never cached, no login, no secrets::

    {"ready": true,
     "checks": {
       "database":   {"ok": true},
       "migrations": {"ok": true, "unapplied": []},
       "worker":     {"ok": true, "last_seen": "2026-12-06T18:00:00+00:00", "max_age_seconds": 900},
       "watcher":    {"ok": true, "last_seen": "...", "max_age_seconds": 300},
       "ips":        {"ok": true, "connections": [
                        {"id": 1, "name": "Production", "last_contact": "...", "last_ok": "...",
                         "failing": false}]}}}

  200 when every check is ok, else 503 with ``"ready": false``, each failing check ``"ok": false`` and a
  ``"reason"`` (English text). ``ips`` is information only (IPS down does not make the dashboard unready:
  History and the audit trail still serve); it never names a URL or a password. A database that cannot be
  reached: ``checks`` holds only ``database`` (the rest need it). "Recently": settings READYZ_WORKER_MAX_AGE
  (default 900 s: three periods of the 5-minute notifications sweep, the chore every task worker runs) and
  READYZ_WATCHER_MAX_AGE (default 300 s: five idle looks). A fresh install with no company has no watcher
  to wait for (ok).

``GET /metrics``  Prometheus text format 0.0.4 (``text/plain; version=0.0.4``), never cached, no login.
  Served when the request carries ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time)
  or comes from an address in METRICS_ALLOW (addresses or networks, comma separated; the client address as
  the audit trail reads it, TRUSTED_PROXIES honoured). Otherwise 403; 404 when neither is configured
  (metrics off). With DEBUG on (``make run``) METRICS_ALLOW defaults to localhost.

  Counted by the processes that do the work (multiprocess files under PROMETHEUS_MULTIPROC_DIR, summed
  over every process that wrote there: gunicorn workers, ``watch_ips``, ``db_worker``):
    ipsadmin_presses_total{operation,outcome}            one per press (Execution row), after its commit
    ipsadmin_ips_calls_total{operation,result}           result: ok | authentication_fault |
                                                         authorization_fault | api_fault | fault |
                                                         unreachable | timed_out | bad_reply
    ipsadmin_ips_call_seconds{operation}                 histogram, every call that went out
    ipsadmin_follow_lag_seconds                          histogram: a run's end in IPS to its result stored
                                                         by the watcher, both on IPS's clock (its replies'
                                                         Date: whole seconds, so up to 1 s short)
    ipsadmin_notification_tries_total{result}            result: sent | failed (each try; a retry is a try)
  Read from the database at scrape time (right whichever host or process did the work):
    ipsadmin_database_up                                 1: the database answered this scrape's queries; 0: it
                                                         did not, and the gauges below are left out (the
                                                         process counts above are served all the same)
    ipsadmin_runs_followed                               runs IPS has not told the end of
    ipsadmin_task_queue_depth{queue}                     django-tasks-db tasks ready to run (TASKS_BACKEND=db;
                                                         every configured queue, 0 when empty; none with rq)
    ipsadmin_task_queue_oldest_age_seconds{queue}        how long the oldest ready one has been due (0: none)
    ipsadmin_chore_last_success_timestamp_seconds{chore,connection,company}
                                                         chore: sync | watch | memberships per company
                                                         (connection id, company handle); the global
                                                         chores (resume_notifications, ...) with both ""
  Counting never fails the work counted: callers go through ``safely`` (a count that cannot be written is
  logged, once per FAILURE_LOG_SECONDS). A process whose PROMETHEUS_MULTIPROC_DIR cannot be used counts for
  itself (ipsadmin/settings.py warns and drops the variable).
  Labels are bounded: operations are the WSDL's, outcomes and results are enums; no job names, no users.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess

log = logging.getLogger(__name__)

# The *_created series: not in multiprocess mode, so in no mode (one shape of answer).
disable_created_metrics()

#: The WSDL's operations the dashboard calls: anything else is counted as "other" (bounded labels).
OPERATIONS = frozenset({
    "executeJob", "pauseJob", "resumeJob", "stopJob", "deleteJob", "getScheduledJobs", "getActiveJobs",
    "getJobLogs", "getJobLogDetails", "checkLogin", "getCompanyInfo", "getUserInfo", "getCompanyMembership",
})
#: IPS call results, by the project's exception family (jobs/ips/errors.py).
IPS_RESULTS = ("ok", "authentication_fault", "authorization_fault", "api_fault", "fault", "unreachable",
               "timed_out", "bad_reply")

PRESSES = Counter("ipsadmin_presses", "Presses of a job action, by IPS operation and outcome.",
                  ["operation", "outcome"])
IPS_CALLS = Counter("ipsadmin_ips_calls", "SOAP calls to IPS, by operation and result.", ["operation", "result"])
IPS_CALL_SECONDS = Histogram(
    "ipsadmin_ips_call_seconds", "Time of a SOAP call to IPS, from sending to its reply read (or failure).",
    ["operation"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30),
)
#: Made at the first observation, not at import: a label-less histogram writes its file (histogram_<pid>.db)
#: when it is made, and every short manage.py process (cron, a shell) would leave one that each scrape reads.
_FOLLOW_LAG_SECONDS: Histogram | None = None
_FOLLOW_LAG_LOCK = threading.Lock()
NOTIFICATION_TRIES = Counter("ipsadmin_notification_tries", "Tries at sending a notification, by result.",
                             ["result"])


def multiprocess_dir() -> str:
    """The directory every process writes its counts to ('' outside multiprocess mode)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _operation(name: str) -> str:
    return name if name in OPERATIONS else "other"


def record_press(operation: str, outcome: str) -> None:
    PRESSES.labels(_operation(operation), outcome).inc()


def record_ips_call(operation: str, result: str, seconds: float) -> None:
    """One SOAP call that went out (jobs/ips/client.py names its ``result``, one of IPS_RESULTS)."""
    op = _operation(operation)
    IPS_CALLS.labels(op, result).inc()
    IPS_CALL_SECONDS.labels(op).observe(seconds)


def observe_follow_lag(seconds: float) -> None:
    global _FOLLOW_LAG_SECONDS
    if _FOLLOW_LAG_SECONDS is None:
        with _FOLLOW_LAG_LOCK:
            if _FOLLOW_LAG_SECONDS is None:
                _FOLLOW_LAG_SECONDS = Histogram(
                    "ipsadmin_follow_lag_seconds",
                    "From a run's end in IPS (its clock) to its result stored by the watcher.",
                    buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600),
                )
    # A Date header counts whole seconds: a result stored within the second of the end is no negative lag.
    _FOLLOW_LAG_SECONDS.observe(max(0.0, seconds))


def record_notification_try(sent: bool) -> None:
    NOTIFICATION_TRIES.labels("sent" if sent else "failed").inc()


#: A failing count is logged at most once in this long (per process): a full /run must not flood the log.
FAILURE_LOG_SECONDS = 300.0
_last_failure_logged: float | None = None


def safely(record, *args) -> None:
    """``record(*args)`` (one of the record_*/observe_* above), never raising: a count that cannot be written
    (the multiprocess directory gone or full, a bad mmap) must not fail the press, the look or the commit
    hook that counts it. Logged once per FAILURE_LOG_SECONDS; the work goes on uncounted."""
    global _last_failure_logged
    try:
        record(*args)
    except Exception:
        now = time.monotonic()
        if _last_failure_logged is None or now - _last_failure_logged >= FAILURE_LOG_SECONDS:
            _last_failure_logged = now
            log.warning("metrics: %s could not be counted (logged once per %.0f s while it lasts)",
                        getattr(record, "__name__", record), FAILURE_LOG_SECONDS, exc_info=True)


def render(*collectors) -> bytes:
    """The metrics text: the counts of every process (multiprocess mode) or of this one, then ``collectors``
    (read at scrape time)."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class _Default:
    """This process's own metrics (the default registry), inside a registry of one scrape."""

    def collect(self):
        yield from REGISTRY.collect()
