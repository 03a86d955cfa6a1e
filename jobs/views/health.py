"""Liveness, readiness and metrics for the ones who run the dashboard (contract: jobs/metrics.py).

No login, no session, never cached; nothing here calls IPS, and nothing answers a URL or a secret."""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Case, Count, F, Max, Min, Q, When
from django.db.models.functions import Greatest
from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotFound, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from django_tasks_db.models import DBTaskResult, get_date_max
from prometheus_client.core import GaugeMetricFamily

from .. import metrics
from ..middleware import client_ip
from ..models import Chore, Company, CompanyWatch, Connection, Execution

log = logging.getLogger(__name__)


@csrf_exempt
@require_safe
@never_cache
def healthz(request):
    """The process answers (no database: a database outage is /readyz's to tell)."""
    return HttpResponse("ok", content_type="text/plain")


# ------------------------------------------------------------------ readiness
@csrf_exempt
@require_safe
@never_cache
def readyz(request):
    ready, checks = readiness()
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


def readiness(now: dt.datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> tuple[bool, dict]:
    """(ready, checks): the database answers, no migration is unapplied, a task worker and the watcher were
    seen recently; each connection's last IPS contact (information, never unready)."""
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        log.warning("readyz: the database does not answer: %s", type(error).__name__)
        return False, {"database": {"ok": False, "reason": f"the database does not answer ({type(error).__name__})"}}
    now = now or timezone.now()
    checks = {"database": {"ok": True}}
    for name, check in (("migrations", lambda: _migrations(using)), ("worker", lambda: _worker(now)),
                        ("watcher", lambda: _watcher(now)),
                        ("ips", lambda: {"ok": True, "connections": _ips_contacts()})):
        try:
            checks[name] = check()
        except DatabaseError as error:  # a table missing (not migrated), the database gone mid-way
            log.warning("readyz: the %s check failed: %s", name, type(error).__name__)
            checks[name] = {"ok": False, "reason": f"could not be read from the database ({type(error).__name__})"}
        except Exception as error:  # e.g. a migration that does not load: still a 503 with its reason, never a 500
            log.exception("readyz: the %s check failed", name)
            checks[name] = {"ok": False, "reason": f"the check failed ({type(error).__name__})"}
    return all(check["ok"] for check in checks.values()), checks


def _migrations(using: str) -> dict:
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    unapplied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    if unapplied:
        return {"ok": False, "unapplied": unapplied,
                "reason": f"{len(unapplied)} migrations not applied (manage.py migrate)"}
    return {"ok": True, "unapplied": []}


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 3)


def _worker(now: dt.datetime) -> dict:
    """A task worker ran a chore (on any task backend: the chores are tasks) within READYZ_WORKER_MAX_AGE."""
    last = Chore.objects.aggregate(last=Max("last_run_at"))["last"]
    limit = settings.READYZ_WORKER_MAX_AGE
    check = {"ok": last is not None and now - last <= limit, "last_seen": last and last.isoformat(),
             "max_age_seconds": limit.total_seconds()}
    if last is None:
        check["reason"] = "no task worker seen: no chore has run yet (manage.py start_chores, then a worker)"
    elif not check["ok"]:
        check["reason"] = f"no task worker seen for {_age(now, last):.0f} s"
    return check


def _watcher(now: dt.datetime) -> dict:
    """The watcher (manage.py watch_ips) looked at a company within READYZ_WATCHER_MAX_AGE; no company, no wait."""
    limit = settings.READYZ_WATCHER_MAX_AGE
    if not Company.objects.exists():
        return {"ok": True, "last_seen": None, "max_age_seconds": limit.total_seconds()}
    last = CompanyWatch.objects.aggregate(last=Max("last_look_at"))["last"]
    check = {"ok": last is not None and now - last <= limit, "last_seen": last and last.isoformat(),
             "max_age_seconds": limit.total_seconds()}
    if last is None:
        check["reason"] = "the watcher has not looked at any company yet (manage.py watch_ips)"
    elif not check["ok"]:
        check["reason"] = f"the watcher has not looked at a company for {_age(now, last):.0f} s"
    return check


def _ips_contacts() -> list[dict]:
    """Each connection's last answer from IPS (a look), and its last look that went through; no address."""
    rows = Connection.objects.annotate(
        last_contact=Max("companies__watch__last_look_at"), last_ok=Max("companies__watch__last_ok_at")
    ).order_by("pk").values("pk", "name", "last_contact", "last_ok")
    return [{"id": r["pk"], "name": r["name"],
             "last_contact": r["last_contact"] and r["last_contact"].isoformat(),
             "last_ok": r["last_ok"] and r["last_ok"].isoformat(),
             "failing": r["last_contact"] is not None and (r["last_ok"] is None or r["last_ok"] < r["last_contact"])}
            for r in rows]


# -------------------------------------------------------------------- metrics
@csrf_exempt
@require_safe
@never_cache
def metrics_view(request):
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOW_NETWORKS):
        return HttpResponseNotFound("metrics are off", content_type="text/plain")
    if not _may_scrape(request):
        return HttpResponseForbidden("not allowed", content_type="text/plain")
    return HttpResponse(metrics.render(DatabaseCollector()), content_type="text/plain; version=0.0.4; charset=utf-8")


def _may_scrape(request) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer "):
        if hmac.compare_digest(given[len("Bearer "):].strip().encode(), token.encode()):
            return True
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in settings.METRICS_ALLOW_NETWORKS)


class DatabaseCollector:
    """What the database knows, read at scrape time (a few indexed or tiny queries): right whichever host
    or process did the work. The database down: ``ipsadmin_database_up 0`` and none of its gauges, while
    the process counts are served all the same (they matter most then)."""

    def collect(self):
        now = timezone.now()
        up = GaugeMetricFamily("ipsadmin_database_up",
                               "Whether the database answered this scrape's queries (1) or not (0).")
        try:
            followed = GaugeMetricFamily("ipsadmin_runs_followed", "Runs IPS has not told the end of yet.")
            followed.add_metric([], Execution.objects.open_runs().count())
            families = [followed, *_queue(now), _chores()]  # read whole before any is yielded
        except DatabaseError as error:
            log.warning("metrics: the database does not answer: %s", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _queue(now: dt.datetime):
    depth = GaugeMetricFamily("ipsadmin_task_queue_depth", "Tasks ready to run (django-tasks-db).", labels=["queue"])
    oldest = GaugeMetricFamily("ipsadmin_task_queue_oldest_age_seconds",
                               "How long the oldest task ready to run has waited (django-tasks-db).", labels=["queue"])
    if settings.TASKS_BACKEND == "db":
        never = get_date_max()
        due_since = Case(When(run_after=never, then=F("enqueued_at")),
                         default=Greatest(F("run_after"), F("enqueued_at")))
        rows = {row["queue_name"]: row for row in DBTaskResult.objects.ready().values("queue_name")
                .order_by("queue_name").annotate(depth=Count("id"), since=Min(due_since))}
        # Every configured queue, empty ones at 0: an alert needs the series, not its absence.
        for queue in sorted({*(settings.TASKS["default"].get("QUEUES") or ["default"]), *rows}):
            row = rows.get(queue)
            depth.add_metric([queue], row["depth"] if row else 0)
            oldest.add_metric([queue], max(0.0, (now - row["since"]).total_seconds()) if row else 0.0)
    yield depth
    yield oldest


def _chores():
    family = GaugeMetricFamily("ipsadmin_chore_last_success_timestamp_seconds",
                               "When a chore last went through (Unix time), per company where it is per company.",
                               labels=["chore", "connection", "company"])
    companies = Company.objects.annotate(
        watched=Max("watch__last_ok_at"),
        members_read=Max("memberships__read_at", filter=Q(memberships__from_ips=True)),
    ).values_list("connection_id", "handle", "last_synced_at", "watched", "members_read")
    for connection_id, handle, synced, watched, memberships in companies:
        for chore, when in (("sync", synced), ("watch", watched), ("memberships", memberships)):
            if when is not None:
                family.add_metric([chore, str(connection_id), handle], when.timestamp())
    for name, when in Chore.objects.filter(last_run_at__isnull=False).values_list("name", "last_run_at"):
        family.add_metric([name, "", ""], when.timestamp())
    return family
