"""History at 10k, 100k and 1M audit rows: every page, the export, on SQLite or PostgreSQL.

For each size, in a database of its own (PostgreSQL ``ipsadmin_bench_d_<rows>``,
created again; or ``var/bench-history-<rows>.sqlite3``), a child process:

1. migrates, then writes 3 companies, 2,000 jobs (200 of which are run), 30
   users with their memberships, and the audit rows over the past year, by
   raw SQL (COPY on PostgreSQL, executemany on SQLite): the application
   refuses to create finished rows, and PostgreSQL's audit trigger refuses
   an INSERT with a final outcome, so it is disabled for the load (as the
   superuser) and enabled again. The indexes are dropped for the load and
   built again after it. PostgreSQL then gets VACUUM ANALYZE (what autovacuum
   does to a table in steady state: statistics, visibility map); SQLite gets
   nothing: no page depends on its statistics (nothing runs ANALYZE there).
2. asks every page through the project's WSGI application, as a browser
   would (the session cookie of the user it acts as): each request once to
   warm up and count its queries, then ``--repeat`` times, timed; the
   median is printed, with the query count and the size of the answer.
3. exports every row as CSV in a fresh process of its own, and prints the
   time, the rows and that process's peak resident memory.

The parent prints each size's table as it comes, then each page at the
largest size against the smallest. ``--reuse`` keeps a database that already
has its rows (to measure again after a change of code, not of indexes);
``--keep`` keeps the databases afterwards. ``--markdown LOG`` prints the
tables of docs/benchmarks.md from a run's output saved in LOG.

Run: .venv/bin/python bench/history_scale.py [--database-url URL] [--rows 10000,1000000]
         [--repeat 7] [--reuse] [--keep] > LOG; .venv/bin/python bench/history_scale.py --markdown LOG
     URL: postgres://postgres@127.0.0.1:5432/ipsadmin_bench_d (default) or sqlite://
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ipsadmin_bench_d"

COMPANIES = [("47", "Demo Company", 900), ("48", "Café Zürich", 700), ("52", "Nordic Retail", 400)]
ACTIVE_JOBS = 200
USERS = 30
SEED = 20261129
#: Runs of the last 24 hours (100 an hour), the same at every size: the "last hour" and "today"
#: pages then show as many rows at 10k as at 1M (with a year spread evenly, 10k
#: rows leave the last hour empty, and an empty page is no figure to compare).
RECENT_DAY = 2_400


# --- The databases -------------------------------------------------------------------


def database_url(base: str, rows: int) -> str:
    if base.startswith("sqlite"):
        return f"sqlite:///{ROOT / 'var' / f'bench-history-{rows}.sqlite3'}"
    scheme, _, rest = base.rpartition("/")
    return f"{scheme}/{rest}_{rows}"


def _pg_admin(url: str):
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    conn = psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                           password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True)
    return conn, cfg["NAME"]


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    conn, name = _pg_admin(url)
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(url: str) -> None:
    drop_database(url)
    if url.startswith("sqlite"):
        return
    conn, name = _pg_admin(url)
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')


# --- The rows ---------------------------------------------------------------------------

SCHEDULES = [("00 00 00 * * ", "PST"), ("00 30 02 * * ", "PST"), ("00 15 * * * ", "PST"), ("0 30 2 ? * MON-FRI", "PST"),
             ("00 00 06 * * ", "CET"), ("00 00 01 * * 1", "CET"), ("00 00 04 1 * ", "JST"), ("0 0/15 * * * ?", "JST")]
KINDS = ["Nightly Publish", "Upload", "Metadata Import", "Optimize", "Cleanup", "Video Sync", "Catalog Export"]
# (outcome, weight) of a press of Run; accepted runs then get an IPS result.
RUN_OUTCOMES = [("accepted", 880), ("denied", 30), ("already_running", 30), ("job_gone", 18), ("refused", 15),
                ("unreachable", 10), ("timed_out", 8), ("bad_reply", 2), ("interrupted", 3), ("error", 1), ("ips_error", 3)]
STOP_OUTCOMES = [("accepted", 70), ("not_running", 20), ("denied", 10)]
IPS_RESULTS = [("ok", 800), ("warnings", 120), ("errors", 40), ("fatal", 10), ("stopped", 20), ("no_result", 10)]
NOT_SENT = {"denied", "already_running", "job_gone", "not_running"}


def _pick(rng, table):
    total = sum(w for _, w in table)
    x = rng.random() * total
    for value, weight in table:
        x -= weight
        if x < 0:
            return value
    return table[-1][0]


def setup_world(rng):
    """Companies, jobs, users and memberships through the ORM (none is guarded); the bench's actors."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.models import Company, Connection, Job, Membership
    from jobs.roles import UserType

    User = get_user_model()
    conn = Connection(name="Bench", region=Connection.Region.CUSTOM, service_url="http://127.0.0.1:9/scene7/services/IpsApiService",
                      username="service@example.com")
    conn.set_password("bench")
    conn.save()
    companies = [Company.objects.create(connection=conn, handle=h, name=n) for h, n, _ in COMPANIES]
    now = timezone.now()
    jobs = []
    for company, (_, _, count) in zip(companies, COMPANIES):
        for i in range(count):
            name = f"{KINDS[i % len(KINDS)]} {i:04d}"
            schedule, zone = SCHEDULES[i % len(SCHEDULES)]
            jobs.append(Job(company=company, handle=f"{company.handle}|{name}|", name=name, type="ImageServingPublish",
                            description=f"Bench job {i} of {company.name}", exec_schedule=schedule, time_zone=zone,
                            next_fire_time=now + dt.timedelta(hours=1 + i % 24), trigger_state="Normal",
                            submit_user_email="ops@example.com", last_synced_at=now))
    Job.objects.bulk_create(jobs, batch_size=500)
    jobs = list(Job.objects.select_related("company").order_by("pk"))
    active = rng.sample(jobs, ACTIVE_JOBS)

    roles = [UserType.IPS_USER, UserType.IPS_ADMIN, UserType.TRIAL_SITE_USER, UserType.IMAGE_PORTAL_CONTRIB]
    users = []
    for i in range(USERS):
        name = "ops3" if i == 0 else "ops1" if i == 1 else f"user{i:02d}"
        user = User.objects.create_user(name, password="bench")
        member_of = companies if i == 0 or i % 3 == 0 else [companies[0]] if i == 1 else [companies[i % 3], companies[(i + 1) % 3]][: 1 + i % 2]
        for company in member_of:
            Membership.objects.create(user=user, company=company, role=rng.choice(roles))
        users.append(user)
    User.objects.create_superuser("admin", password="bench")
    members = {}
    for m in Membership.objects.select_related("user"):
        members.setdefault(m.company_id, []).append((m.user, m.role))
    return companies, jobs, active, members


def execution_rows(rng, n: int, active, members, now, names: list[str], defaults: list, when):
    """n audit rows over the past year, oldest first (ids in time order, as in life), as
    tuples in the order of ``names``; ``when`` turns a UTC datetime into the database's value."""
    at = {name: i for i, name in enumerate(names)}
    start = now - dt.timedelta(days=365)
    span = (now - start).total_seconds()
    recent = min(RECENT_DAY, n // 2)
    day = dt.timedelta(days=1).total_seconds()
    times = sorted(rng.random() * (span - day) for _ in range(n - recent))
    times += sorted(span - day + rng.random() * day for _ in range(recent))
    ms = dt.timedelta(milliseconds=1)
    jobs = [(j.pk, j.company_id, j.company.handle, j.handle, j.name) for j in active]
    people = {c: [(u.pk, u.username, role) for u, role in m] for c, m in members.items()}
    run_table = [(o, w) for o, w in RUN_OUTCOMES]
    messages = {"unreachable": "IPS: unreachable", "timed_out": "IPS: timed out", "bad_reply": "IPS: bad reply",
                "ips_error": "IPS: error page", "error": "IPS: error", "interrupted": "IPS: interrupted"}
    random_, lognorm, pick, getrandbits = rng.random, rng.lognormvariate, _pick, rng.getrandbits
    for k, offset in enumerate(times):
        job_pk, company_pk, company_handle, job_handle, job_name = jobs[int(random_() ** 1.3 * len(jobs))]  # some run far more
        user_pk, username, role = rng.choice(people[company_pk])
        requested = start + dt.timedelta(seconds=offset)
        stop = random_() < 0.03
        outcome = pick(rng, STOP_OUTCOMES if stop else run_table)
        sent = outcome not in NOT_SENT
        duration = int(lognorm(3.4, 0.6)) if sent else int(random_() * 5)
        row = defaults.copy()
        row[at["operation"]] = "stopJob" if stop else "executeJob"
        row[at["job_id"]], row[at["company_id"]], row[at["company_handle"]] = job_pk, company_pk, company_handle
        row[at["job_handle"]], row[at["job_name"]] = job_handle, job_name
        row[at["user_id"]], row[at["username"]], row[at["role"]] = user_pk, username, role
        row[at["outcome"]], row[at["requested_at"]] = outcome, when(requested)
        if sent:
            row[at["sent_at"]] = when(requested + 2 * ms)
        row[at["finished_at"]] = when(requested + (duration + 2) * ms)
        row[at["duration_ms"]] = duration
        row[at["client_ip"]], row[at["user_agent"]] = f"10.0.{k % 200}.{k % 250 + 1}", "Mozilla/5.0 (bench)"
        row[at["request_id"]] = f"{getrandbits(128):032x}"
        if outcome == "denied":
            row[at["message"]] = f"Your role {role} in company {company_handle} cannot run jobs (executeJob)."
        elif outcome == "refused":
            row[at["fault_family"]], row[at["fault_code"]] = "ipsApiFault", 30000
            row[at["fault_reason"]], row[at["message"]] = "Job is already scheduled", "IPS refused the run."
        elif outcome in messages:
            row[at["message"]] = messages[outcome]
        if outcome == "accepted" and not stop:
            result = pick(rng, IPS_RESULTS)
            runtime = int(lognorm(11.0, 0.8))  # a minute, give or take
            files = rng.randint(1, 400)
            errors = min(files, rng.randint(1, 20)) if result == "errors" else 0
            ips_start = requested + dt.timedelta(seconds=1)
            row[at["ips_run_handle"]], row[at["ips_run_name"]] = f"{company_handle}||{job_name}_{k}", f"{job_name}_{k}"
            row[at["ips_state"]], row[at["ips_progress"]], row[at["ips_log_type"]] = "Done", 100, "EndUpload"
            row[at["ips_success_count"]], row[at["ips_error_count"]] = files - errors, errors
            row[at["ips_warning_count"]] = rng.randint(1, 50) if result == "warnings" else 0
            row[at["ips_duplicate_count"]], row[at["ips_update_count"]], row[at["ips_total_count"]] = 0, 0, files
            row[at["ips_fatal"]], row[at["ips_started_at"]] = result == "fatal", when(ips_start)
            row[at["ips_ended_at"]] = when(ips_start + runtime * ms)
            row[at["ips_result"]], row[at["ips_result_at"]] = result, when(ips_start + (runtime + 1500) * ms)
            if result != "no_result":
                row[at["ips_runtime_ms"]] = runtime
        yield row


def _columns():
    from jobs.models import Execution

    return [f for f in Execution._meta.concrete_fields if not f.primary_key]


def _defaults(fields) -> list:
    """What the application would write in a column the generator leaves out."""
    out = []
    for f in fields:
        if f.has_default():
            out.append(f.get_default())
        elif not f.null and f.get_internal_type() in ("CharField", "TextField"):
            out.append("")
        else:
            out.append(None)
    return out


def load_executions(rng, n: int, active, members, now) -> float:
    """Write the rows by raw SQL, indexes dropped and built again; returns the seconds taken."""
    from django.db import connection

    fields = _columns()
    names = [f.attname for f in fields]
    began = time.monotonic()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            rows = execution_rows(rng, n, active, members, now, names, _defaults(fields), lambda d: d)
            cursor.execute("SELECT indexdef, indexname FROM pg_indexes WHERE tablename = 'jobs_execution' AND indexname NOT LIKE '%pkey'")
            indexes = cursor.fetchall()
            cursor.execute("ALTER TABLE jobs_execution DISABLE TRIGGER jobs_execution_append_only")
            try:
                for _, name in indexes:
                    cursor.execute(f'DROP INDEX "{name}"')
                with cursor.cursor.copy(f"COPY jobs_execution ({', '.join(names)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                for definition, _ in indexes:
                    cursor.execute(definition)
            finally:
                cursor.execute("ALTER TABLE jobs_execution ENABLE TRIGGER jobs_execution_append_only")
            # What autovacuum does to a table in steady state: statistics and the visibility map.
            cursor.execute("VACUUM ANALYZE jobs_execution")
        else:
            # Stored as Django stores them on SQLite: naive UTC text.
            rows = execution_rows(rng, n, active, members, now.replace(tzinfo=None), names, _defaults(fields), str)
            cursor.execute("SELECT sql, name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs_execution' AND sql IS NOT NULL")
            indexes = cursor.fetchall()
            raw = connection.connection
            raw.execute("PRAGMA synchronous = OFF")
            raw.execute("BEGIN")
            for _, name in indexes:
                raw.execute(f'DROP INDEX "{name}"')
            sql = f"INSERT INTO jobs_execution ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            raw.executemany(sql, rows)
            for definition, _ in indexes:
                raw.execute(definition)
            raw.execute("COMMIT")
            raw.execute("PRAGMA synchronous = FULL")
    return time.monotonic() - began


# --- Asking pages ------------------------------------------------------------------------


class Browser:
    """Requests through the project's WSGI application with one user's session cookie."""

    def __init__(self, app, username: str | None):
        from importlib import import_module

        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.middleware.csrf import _get_new_csrf_string

        SessionStore = import_module(settings.SESSION_ENGINE).SessionStore

        self.app = app
        self.csrf = _get_new_csrf_string()
        self.cookies = {"csrftoken": self.csrf}
        if username:
            user = get_user_model().objects.get(username=username)
            session = SessionStore()
            session["_auth_user_id"] = str(user.pk)
            # The local accounts' backend: the last (the IPS one, and axes, come first).
            session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[-1]
            session["_auth_user_hash"] = user.get_session_auth_hash()
            session.create()
            self.cookies["sessionid"] = session.session_key

    def request(self, method: str, path: str, headers=None, consume=True):
        path, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost", "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "HTTP_X_CSRFTOKEN": self.csrf, "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "CONTENT_LENGTH": "0",
        }
        for k, v in (headers or {}).items():
            environ["HTTP_" + k.upper().replace("-", "_")] = v
        status = []
        result = self.app(environ, lambda s, h, exc_info=None: status.append(s))
        size = rows = 0
        try:
            for chunk in result:
                size += len(chunk)
                # History's rows, and the admin changelist's (its first column is the time).
                rows += chunk.count(b'<tr id="execution-') + chunk.count(b'<th class="field-requested_at')
        finally:
            if hasattr(result, "close"):
                result.close()
        self.rows = rows
        return int(status[0].split()[0]), size


def measure(browser, label, path, repeat, headers=None, method="GET"):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        status, size = browser.request(method, path, headers)
    count = len(queries)  # now: the next request empties the log
    rows = browser.rows
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        browser.request(method, path, headers)
        times.append((time.perf_counter() - began) * 1000)
    return {"page": label, "path": path, "status": status, "bytes": size, "queries": count, "rows": rows,
            "ms": statistics.median(times), "min_ms": min(times)}


class old_admin:
    """The executions changelist as configured before history at scale: for the figures beside."""

    def __enter__(self):
        from django.contrib import admin
        from django.core.paginator import Paginator

        from jobs.models import Execution

        self.model_admin = admin.site._registry[Execution]
        self.saved = {k: getattr(self.model_admin, k) for k in (
            "list_filter", "search_fields", "date_hierarchy", "paginator", "show_full_result_count", "sortable_by",
            "show_facets", "get_search_results")}
        self.model_admin.list_filter = ["outcome", "operation", "role", "company", "requested_at"]
        self.model_admin.search_fields = ["job_name", "job_handle", "username", "request_id", "fault_reason"]
        self.model_admin.date_hierarchy = "requested_at"
        self.model_admin.paginator = Paginator
        self.model_admin.show_full_result_count = True
        self.model_admin.sortable_by = None
        self.model_admin.show_facets = admin.ShowFacets.ALLOW
        self.model_admin.get_search_results = admin.ModelAdmin.get_search_results.__get__(self.model_admin)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.model_admin, k, v)


def pages(n: int, repeat: int):
    """Every page, as the users who see them."""
    from django.core.wsgi import get_wsgi_application
    from django.db.models import Count

    from jobs.history import Cursor, DEFAULT_SORT
    from jobs.models import Company, Execution, Job

    app = get_wsgi_application()
    admin_, ops3, ops1 = Browser(app, "admin"), Browser(app, "ops3"), Browser(app, "ops1")
    company = Company.objects.get(handle="47")
    busiest = Execution.objects.values("job_id").annotate(n=Count("id")).order_by("-n").first()["job_id"]
    job = Job.objects.get(pk=busiest)
    middle = Execution.objects.order_by("-requested_at", "-id")[n // 2]
    deep = Cursor.of(middle, DEFAULT_SORT).encode()
    a_week_in_june = {"from": (middle.requested_at - dt.timedelta(days=3)).strftime("%Y-%m-%d"),
                      "to": middle.requested_at.strftime("%Y-%m-%d")}
    request_id = middle.request_id
    h = "/history/?"
    today = dt.datetime.now(dt.timezone.utc).date()
    tomorrow = today + dt.timedelta(days=1)
    htmx = {"HX-Request": "true", "HX-Current-URL": "http://localhost/history/"}
    plan = [
        (admin_, "history: first page (superuser)", "/history/", None),
        (ops3, "history: first page, user of 3 companies", "/history/", None),
        (ops1, "history: first page, user of 1 company", "/history/", None),
        (admin_, "history: first page, htmx (filters + rows)", "/history/", htmx),
        (admin_, "history: deep page (middle of the table)", h + urlencode({"after": deep}), None),
        (ops3, "history: deep page, user of 3 companies", h + urlencode({"after": deep}), None),
        (admin_, "history: last page (oldest)", h + "page=last", None),
        (ops3, "history: last page, user of 3 companies", h + "page=last", None),
        (admin_, "history: company", h + urlencode({"company": company.pk}), None),
        (admin_, "history: job", h + urlencode({"job": job.pk}), None),
        (admin_, "history: job name (part, several jobs)", h + urlencode({"job_name": "Cleanup 00"}), None),
        (admin_, "history: user (any case)", h + urlencode({"user": "USER03"}), None),
        (admin_, "history: user (part, several users)", h + urlencode({"user": "user1"}), None),
        (ops3, "history: mine", h + "who=mine", None),
        (admin_, "history: outcome accepted", h + "outcome=accepted", None),
        (admin_, "history: outcome refused (rare)", h + "outcome=refused", None),
        (ops3, "history: outcome timed out, user of 3 companies", h + "outcome=timed_out", None),
        (admin_, "history: IPS result errors", h + "ips_result=errors", None),
        (admin_, "history: last hour", h + "range=1h", None),
        (admin_, "history: today", h + "range=today", None),
        (admin_, "history: last 7 days", h + "range=7d", None),
        (admin_, "history: last 30 days", h + "range=30d", None),
        (admin_, "history: custom range (3 days, months ago)", h + urlencode(a_week_in_june), None),
        (admin_, "history: company + outcome + 30 days", h + urlencode({"company": company.pk, "outcome": "accepted", "range": "30d"}), None),
        (admin_, "history: longest IPS runtime first", h + "sort=-ips_runtime", None),
        (admin_, "history: longest request time first", h + "sort=-request_time", None),
        (admin_, "per-job page (busiest job)", f"/jobs/{job.pk}/", None),
        (admin_, "jobs page (2,000 jobs, superuser)", "/", None),
        (ops3, "jobs page, user of 3 companies", "/", None),
        (admin_, "jobs page: search", "/?" + urlencode({"q": "Upload"}), None),
        (admin_, "jobs page: a company's page 10", "/?" + urlencode({f"p{company.pk}": 10}), None),
        (admin_, "admin executions: first page", "/admin/jobs/execution/", None),
        (admin_, "admin executions: search user", "/admin/jobs/execution/?q=user03", None),
        (admin_, "admin executions: search request id", f"/admin/jobs/execution/?q={request_id}", None),
        (admin_, "admin executions: outcome refused", "/admin/jobs/execution/?outcome__exact=refused", None),
        (admin_, "admin executions: today", "/admin/jobs/execution/?" + urlencode(
            {"requested_at__gte": f"{today} 00:00:00+00:00", "requested_at__lt": f"{tomorrow} 00:00:00+00:00"}), None),
    ]
    for browser, label, path, headers in plan:
        yield measure(browser, label, path, repeat, headers)
    with old_admin():
        old_repeat = max(1, min(repeat, 3))
        yield measure(admin_, "admin executions BEFORE: first page", "/admin/jobs/execution/", old_repeat)
        yield measure(admin_, "admin executions BEFORE: search user", "/admin/jobs/execution/?q=user03", old_repeat)


def worker(args) -> None:
    """In a child process: the database of one size, generated (unless reused) and measured."""
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    reused = False
    if args.reuse:
        import django

        django.setup()
        try:
            from jobs.models import Execution

            reused = Execution.objects.count() == args.rows
        except Exception:
            reused = False
        if not reused:
            from django.db import connections

            connections.close_all()
    if not reused:
        create_database(args.database_url)
        import django

        django.setup()
        from django.core.management import call_command
        from django.utils import timezone

        call_command("migrate", verbosity=0)
        rng = random.Random(SEED)
        _, _, active, members = setup_world(rng)
        took = load_executions(rng, args.rows, active, members, timezone.now())
        print(json.dumps({"generated": args.rows, "seconds": round(took, 1)}), flush=True)
    from django.conf import settings

    # As in production: no query log kept per request.
    settings.DEBUG = False
    for result in pages(args.rows, args.repeat):
        print(json.dumps(result), flush=True)


def export_worker(args) -> None:
    """In a fresh child process: every row as CSV, as the superuser; time, rows, peak memory."""
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    from jobs.models import HistoryExport

    settings.DEBUG = False
    browser = Browser(get_wsgi_application(), "admin")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    status, size = browser.request("POST", "/history/export.csv")
    took = time.perf_counter() - began
    export = HistoryExport.objects.order_by("-pk").first()
    print(json.dumps({"page": "export: every row as CSV", "status": status, "bytes": size, "rows": export.row_count,
                      "completed": export.completed, "ms": took * 1000,
                      "rss_mib_before": before / 1024, "rss_mib_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)


# --- The parent ----------------------------------------------------------------------------


def _child(mode: str, url: str, rows: int, args) -> list[dict]:
    command = [PYTHON, __file__, mode, "--database-url", url, "--rows", str(rows), "--repeat", str(args.repeat)]
    if args.reuse:
        command.append("--reuse")
    out = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as child:
        for line in child.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                print(line, end="", file=sys.stderr)
                continue
            out.append(record)
            print(_line(record), flush=True)
    if child.returncode:
        raise SystemExit(f"{mode} for {rows} rows failed ({child.returncode})")
    return out


def _line(r: dict) -> str:
    if "generated" in r:
        return f"  generated {r['generated']:,} rows in {r['seconds']} s"
    if "rss_mib_peak" in r:
        return (f"  {r['page']:<52} {r['ms'] / 1000:8.1f} s  {r['rows']:>9,} rows  {r['bytes'] / 2**20:7.1f} MiB"
                f"  peak RSS {r['rss_mib_peak']:.0f} MiB  status {r['status']}")
    listed = r["page"].startswith(("history", "per-job", "admin"))  # pages of audit rows: how many shown
    rows = f"{r['rows']:>3} rows" if listed and "rows" in r else " " * 8
    return f"  {r['page']:<52} {r['ms']:8.1f} ms  {r['queries']:>3} queries  {rows}  {r['bytes'] / 1024:7.1f} KiB  status {r['status']}"


_LINE = re.compile(r"^  (?P<page>.+?)\s{2,}(?P<ms>[\d.]+) ms\s+(?P<q>\d+) queries\s+(?:(?P<rows>\d+) rows)?\s+"
                   r"[\d.]+ KiB\s+status \d+$")
_EXPORT = re.compile(r"^  export: every row as CSV\s+(?P<s>[\d.]+) s\s+(?P<rows>[\d,]+) rows\s+(?P<mib>[\d.]+) MiB"
                     r"\s+peak RSS (?P<rss>\d+) MiB")
_GENERATED = re.compile(r"^  generated [\d,]+ rows in (?P<s>[\d.]+) s")
_SIZE = re.compile(r"^(?P<n>[\d,]+) rows on ")


def markdown(log: str) -> str:
    """The tables of docs/benchmarks.md, from what a run printed (saved to ``log``)."""
    data, order, exports, generated, size = {}, [], {}, {}, None
    for line in open(log, encoding="utf-8"):
        line = line.rstrip("\n")
        if m := _SIZE.match(line):
            size = int(m["n"].replace(",", ""))
        elif "rows against" in line:
            break
        elif m := _GENERATED.match(line):
            generated[size] = m["s"]
        elif m := _EXPORT.match(line):
            exports[size] = m
        elif m := _LINE.match(line):
            order += [m["page"]] if m["page"] not in order else []
            data.setdefault(m["page"], {})[size] = m
    sizes = sorted({n for by_size in data.values() for n in by_size})
    out = ["| page | " + " | ".join(f"{n:,} rows" for n in sizes) + f" | {sizes[-1]:,} ÷ {sizes[0]:,} | queries |",
           "|---|" + "---:|" * len(sizes) + "---:|---|"]
    for page in order:
        by_size = data[page]
        listed = page.startswith(("history", "per-job", "admin"))
        cells = [f"{float(by_size[n]['ms']):.1f} ms" + (
            f" ({by_size[n]['rows'] or 0} rows)" if listed and (by_size[n]["rows"] or "0") not in ("50", "100") else "")
            for n in sizes]
        ratio = float(by_size[sizes[-1]]["ms"]) / float(by_size[sizes[0]]["ms"])
        out.append(f"| {page} | " + " | ".join(cells) + f" | ×{ratio:.2f} | {' / '.join(by_size[n]['q'] for n in sizes)} |")
    out.append("")
    for n in sizes:
        if e := exports.get(n):
            out.append(f"- export of {e['rows']} rows: {e['s']} s, {e['mib']} MiB of CSV, peak RSS {e['rss']} MiB"
                       + (f"; rows generated in {generated[n]} s" if n in generated else ""))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rows", default="10000,1000000", help="sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep a database that already has its rows")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--markdown", metavar="LOG", help="print the tables of docs/benchmarks.md from a run's output")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.rows = int(args.rows)
        return worker(args)
    if args.export_worker:
        return export_worker(args)
    if args.markdown:
        return print(markdown(args.markdown))
    sizes = [int(s) for s in args.rows.split(",")]
    (ROOT / "var").mkdir(exist_ok=True)
    results = {}
    for rows in sizes:
        url = database_url(args.database_url, rows)
        print(f"{rows:,} rows on {url}", flush=True)
        try:
            results[rows] = _child("--worker", url, rows, args)
            if not args.no_export:
                results[rows] += _child("--export-worker", url, rows, args)
        finally:
            if not args.keep:
                drop_database(url)
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        before = {r["page"]: r for r in results[small] if "page" in r}
        print(f"\n{large:,} rows against {small:,}: time ratio (within 1.5 wanted), queries")
        for r in results[large]:
            if "page" not in r or r["page"] not in before:
                continue
            b = before[r["page"]]
            q = f"{b.get('queries', '-')} → {r.get('queries', '-')}" if "queries" in r else ""
            print(f"  {r['page']:<52} {b['ms']:8.1f} → {r['ms']:8.1f} ms  ×{r['ms'] / b['ms']:5.2f}  {q}")


if __name__ == "__main__":
    main()
