"""History's filters and sorts alone and in pairs, at 10k and 1M audit rows: the ratio of each page.

The rows and the databases are history_scale.py's (its loader, its names:
PostgreSQL ``ipsadmin_bench_d_<rows>``, ``var/bench-history-<rows>.sqlite3``).

1. For each size, a child process makes the database (or, with ``--reuse``,
   keeps one that has its rows and builds the indexes of migration 0018
   again, so a changed index is rebuilt; PostgreSQL then gets ANALYZE;
   HISTORY_PAIRS_NO_REBUILD=1 in the environment keeps them as they are,
   for a change of code only).
2. One process asks, through the project's WSGI application as
   history_scale.py does (DEBUG off, a session cookie), every filter alone,
   every sort alone, every filter with every sort, the admin's search by
   part of a job name, a deep page (the middle of what matches) for a few,
   and every pair of filters (the selective ones first): the first page of
   each, once to warm up (and count queries), then ``--repeat`` times. The
   sizes are taken in turn for every timed request (the connection switched
   between their databases, an untimed request first), so the load of a
   shared machine falls on both alike. The median is printed, with the
   fastest and the rows shown.

The parent then prints each page at the largest size against the smallest,
and flags (``!!``) a ratio above 1.5. A page with fewer rows at the small
size than at the large one renders less there: like is compared with like
by asking that page again at both sizes with as many rows a page as the
small size shows (history.PAGE_SIZE set in the measuring process; labelled
"[N a page at both]", column "like"), and that ratio flags. Beside it,
"fair": the small size corrected by the cost of the rows it lacks (per row:
a full first page less an empty one, at the small size; the two are always
measured, ``--only`` or not). "!!": above the limit by the medians and by
the fastest of each size (like, else fair); "! (median only)": the medians
alone, most likely noise on a shared machine.

``--gunicorn LABELS``: the same pages (labels separated by ``;``) through
gunicorn under production settings (DEBUG=0, ipsadmin/gunicorn.conf.py),
over HTTP, on the kept databases: the check that a figure holds as a user
meets it. PORT from the environment, else a free one.

Run: .venv/bin/python bench/history_pairs.py [--database-url URL] [--rows 10000,1000000] [--repeat 5]
         [--reuse] [--keep] [--only REGEX] [--gunicorn "label;label"] > LOG
     .venv/bin/python bench/history_pairs.py --markdown LOG   (the table, from a run's output)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import history_scale as hs  # noqa: E402

PYTHON = sys.executable
LIMIT = 1.5


# --- The pages ----------------------------------------------------------------------------


def filters(company_big, company_small, job, middle_day) -> dict[str, tuple[str, dict]]:
    """label: (who asks, the page's parameters)."""
    return {
        "company (900 jobs)": ("admin", {"company": company_big.pk}),
        "company (400 jobs)": ("admin", {"company": company_small.pk}),
        "job (busiest)": ("admin", {"job": job.pk}),
        "job name part (several)": ("admin", {"job_name": "Cleanup 00"}),
        "user": ("admin", {"user": "user03"}),
        "user part (several)": ("admin", {"user": "user1"}),
        "started by here": ("admin", {"started_by": "here"}),
        "outcome accepted": ("admin", {"outcome": "accepted"}),
        "outcome refused (rare)": ("admin", {"outcome": "refused"}),
        "IPS result errors": ("admin", {"ips_result": "errors"}),
        "IPS result fatal (rare)": ("admin", {"ips_result": "fatal"}),
        "last hour": ("admin", {"range": "1h"}),
        "last 24 h": ("admin", {"range": "24h"}),
        "last 30 days": ("admin", {"range": "30d"}),
        "3 days, months ago": ("admin", {"range": "custom", "from": (middle_day - hs.dt.timedelta(days=3)).isoformat(),
                                         "to": middle_day.isoformat()}),
        "as ops3 (3 companies)": ("ops3", {}),
        "as ops1 (1 company)": ("ops1", {}),
    }


SORT_KEYS = ["requested", "-ips_runtime", "ips_runtime", "-request_time", "request_time"]
#: Pages also asked deep (the middle of what matches).
DEEP = {("", "-ips_runtime"), ("", "request_time"), ("company (900 jobs)", "-ips_runtime"),
        ("outcome refused (rare)", "-ips_runtime"), ("last 24 h", "-ips_runtime"), ("user", "-request_time"),
        ("company (400 jobs)", "")}


def _deep_cursor(who, params, sort_key) -> str:
    """The cursor of the middle row of what the page's filters match (capped at 2,000 rows)."""
    from django.contrib.auth import get_user_model

    from jobs import history
    from jobs.forms import HistoryFilterForm
    from jobs.models import Company

    user = get_user_model().objects.get(username=who)
    companies = list(Company.objects.all()) if user.is_superuser else [m.company for m in user.memberships.all()]
    form = HistoryFilterForm({**params, "sort": sort_key}, companies=companies, user=user)
    assert form.is_valid(), form.errors
    sort = form.chosen_sort
    rows = history.visible_to(user, [c.pk for c in companies], by_company_index=not form.narrows())
    qs = history.ordered(form.filter(rows), sort).order_by(*sort.ordering)
    ids = list(qs.values_list("pk", flat=True)[:2000])
    if len(ids) < 4:
        return ""
    return history.Cursor.of(qs.model.objects.get(pk=ids[len(ids) // 2]), sort).encode()


def plan(n: int):
    """(who, label, path) of every page measured."""
    from django.db.models import Count

    from jobs.models import Company, Execution, Job

    big, small = Company.objects.get(handle="47"), Company.objects.get(handle="52")
    busiest = Execution.objects.values("job_id").annotate(n=Count("id")).order_by("-n", "job_id").first()["job_id"]
    middle = Execution.objects.order_by("-requested_at", "-id")[n // 2]
    fs = filters(big, small, Job.objects.get(pk=busiest), middle.requested_at.date())
    h = "/history/?"
    out = [("admin", "first page (no filter)", "/history/"), ("admin", "started by schedule (none: empty page)",
                                                                h + "started_by=schedule")]
    for key in SORT_KEYS:
        out.append(("admin", f"sort {key}", h + urlencode({"sort": key})))
    for label, (who, params) in fs.items():
        out.append((who, label, h + urlencode(params) if params else "/history/"))
    for label, (who, params) in fs.items():
        for key in SORT_KEYS:
            out.append((who, f"{label} + sort {key}", h + urlencode({**params, "sort": key})))
    for term in ("Cleanup 00", "Upload 01", "Video"):
        out.append(("admin", f"admin search job name {term!r}", "/admin/jobs/execution/?" + urlencode({"q": term})))
    for label, key in sorted(DEEP):
        who, params = fs[label] if label else ("admin", {})
        cursor = _deep_cursor(who, params, key or "-requested")
        if cursor:
            name = " + ".join(x for x in (label, f"sort {key}" if key else "") if x) or "no filter"
            query = {**params, **({"sort": key} if key else {}), "after": cursor}
            out.append((who, f"DEEP {name}", h + urlencode(query)))
    names, pairs = list(fs), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (wa, pa), (wb, pb) = fs[a], fs[b]
            if set(pa) & set(pb) and not {"range"} >= set(pa) & set(pb) or wa != "admin" and wb != "admin":
                continue  # the same field twice: one value only
            if "range" in pa and "range" in pb:
                continue
            who = wa if wa != "admin" else wb
            pairs.append((who, f"{a} + {b}", h + urlencode({**pa, **pb})))
    # Pairs of the selective filters first: a run cut short has measured those.
    rank = lambda label: -sum(name in SELECTIVE for name in label.split(" + "))  # noqa: E731
    return out + sorted(pairs, key=lambda p: rank(p[1]))


SELECTIVE = {"job (busiest)", "job name part (several)", "user", "user part (several)", "outcome refused (rare)",
             "IPS result errors", "IPS result fatal (rare)", "company (400 jobs)", "3 days, months ago"}


# --- The child: one database, every page --------------------------------------------------------


def prepare(args) -> None:
    """The database of this size with its rows, and today's indexes."""
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    reused = False
    if args.reuse:
        try:
            from jobs.models import Execution

            reused = Execution.objects.count() == args.rows
        except Exception:
            reused = False
        connections.close_all()
    if reused and os.environ.get("HISTORY_PAIRS_NO_REBUILD"):
        return
    if reused:
        # The indexes of 0018 built again: a change of them since the last run counts.
        began = time.monotonic()
        from django.db.migrations.recorder import MigrationRecorder

        index_migration = importlib.import_module("jobs.migrations.0018_history_filter_combinations").Migration
        with connection.cursor() as cursor:
            for operation in index_migration.operations:
                if hasattr(operation, "index"):
                    cursor.execute(f'DROP INDEX IF EXISTS "{operation.index.name}"')
            # The index 0018 replaces, as 0013 made it.
            cursor.execute('CREATE INDEX IF NOT EXISTS "execution_job_recent" ON "jobs_execution" '
                           '("job_id", "requested_at" DESC, "id" DESC)')
        later = sorted(m for m in MigrationRecorder(connection).applied_migrations() if m[0] == "jobs" and m[1] > "0018")
        # Recorded as unapplied (their tables stay), 0018 applied for real, the later ones recorded again.
        call_command("migrate", "jobs", "0017", fake=True, verbosity=0)
        call_command("migrate", "jobs", "0018", verbosity=0)
        for _, name in later:
            call_command("migrate", "jobs", name, fake=True, verbosity=0)
        call_command("migrate", verbosity=0)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE jobs_execution")
        print(json.dumps({"indexes_rebuilt": round(time.monotonic() - began, 1)}), flush=True)
        return
    hs.create_database(args.database_url)
    import random

    from django.utils import timezone

    call_command("migrate", verbosity=0)
    rng = random.Random(hs.SEED)
    _, _, active, members = hs.setup_world(rng)
    took = hs.load_executions(rng, args.rows, active, members, timezone.now())
    print(json.dumps({"generated": args.rows, "seconds": round(took, 1)}), flush=True)


def worker(args) -> None:
    """Prepare this size's database (a child of its own: django.setup() once per database)."""
    prepare(args)


def _use(url: str) -> None:
    """Point the default connection at another size's database (the next query reconnects)."""
    import dj_database_url
    from django.db import connection

    connection.close()
    connection.settings_dict.update({k: v for k, v in dj_database_url.parse(url).items() if k in ("NAME", "HOST", "PORT", "USER")})


def measurer(args) -> None:
    """Every page at each size, the sizes taken in turn for each timed request: the load
    of a shared machine falls on both alike. Per page and size: one request to warm up and
    count queries, then ``--repeat`` timed ones, each after an untimed one on its database."""
    from django.conf import settings

    urls = args.urls.split(",")
    sizes = [int(s) for s in args.rows.split(",")]
    os.environ["DATABASE_URL"] = urls[0]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    settings.DEBUG = False
    app = get_wsgi_application()
    plans, browsers = {}, {}
    for url, n in zip(urls, sizes):
        _use(url)
        plans[n] = {label: (who, path) for who, label, path in plan(n)}
        for who in {who for who, _ in plans[n].values()}:
            browsers[n, who] = hs.Browser(app, who)
    only = re.compile(args.only) if args.only else None
    for label in plans[sizes[0]]:
        # The two reference pages always: the "fair" column's cost of a row needs them.
        if only and not only.search(label) and label not in REFERENCES or not all(label in plans[n] for n in sizes):
            continue
        records = _timed(label, plans, browsers, urls, sizes, args.repeat)
        for r in records.values():
            print(json.dumps(r), flush=True)
        shown = {n: records[n]["rows"] for n in sizes}
        fewer = shown[min(sizes)]
        if len(sizes) > 1 and 0 < fewer < shown[max(sizes)] and plans[sizes[0]][label][1].startswith("/history/"):
            # Like with like: the small size shows fewer rows than the large. Both sizes again
            # with that many rows a page (history.PAGE_SIZE in this process): the same rows
            # rendered, the large size's query stopping after as many as the small one's.
            from jobs import history

            saved, history.PAGE_SIZE = history.PAGE_SIZE, fewer
            try:
                for r in _timed(label, plans, browsers, urls, sizes, args.repeat, like=fewer).values():
                    print(json.dumps(r), flush=True)
            finally:
                history.PAGE_SIZE = saved


#: The pages the "fair" column's cost of a row is measured from (a full first page less an empty one).
REFERENCES = ("first page (no filter)", "started by schedule (none: empty page)")
#: How a page measured with as many rows a page as the small size shows is labelled.
LIKE = " [{} a page at both]"
_LIKE = re.compile(r" \[(\d+) a page at both\]$")


def _timed(label, plans, browsers, urls, sizes, repeat, like=0) -> dict:
    """One page at each size: a request to warm up and count queries, then ``repeat`` timed
    ones, the sizes in turn, each after an untimed one on its database."""
    firsts = {}
    for url, n in zip(urls, sizes):
        _use(url)
        who, path = plans[n][label]
        firsts[n] = hs.measure(browsers[n, who], label + (LIKE.format(like) if like else ""), path, 1)
    times = {n: [] for n in sizes}
    for _ in range(repeat):
        for url, n in zip(urls, sizes):
            _use(url)
            who, path = plans[n][label]
            browser = browsers[n, who]
            browser.request("GET", path)
            began = time.perf_counter()
            browser.request("GET", path)
            times[n].append((time.perf_counter() - began) * 1000)
    for n in sizes:
        firsts[n].update(size=n, ms=statistics.median(times[n]), min_ms=min(times[n]))
    return firsts


# --- Through gunicorn --------------------------------------------------------------------------


def gunicorn_check(args, labels: list[str]) -> None:
    """The pages named, over HTTP through gunicorn under production settings, at each size."""
    import requests
    from cryptography.fernet import Fernet

    import watch_cost as wc

    for rows in [int(s) for s in args.rows.split(",")]:
        url = hs.database_url(args.database_url, rows)
        tmp = Path(tempfile.mkdtemp(prefix="ipsadmin-bench-pairs-"))
        port = wc.port_from_env("PORT")
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
        env.update(DJANGO_SETTINGS_MODULE="ipsadmin.settings", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(64),
                   IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(), ALLOWED_HOSTS="127.0.0.1",
                   CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}", DATABASE_URL=url, GUNICORN_WORKERS="1")
        procs = wc.Processes(tmp)
        try:
            procs.start("gunicorn", [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind",
                                     f"127.0.0.1:{port}", "ipsadmin.wsgi"], env)

            def healthy():
                try:
                    return requests.get(base + "/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=2).ok
                except requests.RequestException:
                    return False

            wc.wait_until("gunicorn to answer /healthz", healthy, procs, timeout=60)
            os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings"})
            import django

            django.setup()
            from django.db import connections

            paths = {label: (who, path) for who, label, path in plan(rows)}
            connections.close_all()
            browsers = {}
            print(f"{rows:,} rows on {url}, through gunicorn at {base} (1 sync worker, DEBUG=0)", flush=True)
            for label in labels:
                who, path = paths[label]
                if who not in browsers:
                    browsers[who] = wc.Browser(base)
                    browsers[who].log_in(who, "bench")
                browser = browsers[who]
                reply = browser.request("GET", path)
                shown = reply.text.count('<tr id="execution-') + reply.text.count('<th class="field-requested_at')
                times = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    browser.request("GET", path)
                    times.append((time.perf_counter() - began) * 1000)
                print(json.dumps({"page": label, "size": rows, "status": reply.status_code, "rows": shown,
                                  "ms": statistics.median(times), "min_ms": min(times), "gunicorn": True}), flush=True)
        finally:
            procs.stop()


# --- The parent ----------------------------------------------------------------------------


def _prepare(url: str, rows: int, args) -> None:
    command = [PYTHON, __file__, "--worker", "--database-url", url, "--rows", str(rows)]
    if args.reuse:
        command.append("--reuse")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(f"{rows:,} rows on {url}: {done.stdout.strip()}", flush=True)
    if done.returncode:
        raise SystemExit(f"preparing {rows} rows failed:\n{done.stderr[-3000:]}")


def _measure(urls: list[str], sizes: list[int], args) -> dict[int, list[dict]]:
    command = [PYTHON, __file__, "--measurer", "--urls", ",".join(urls), "--rows", ",".join(map(str, sizes)),
               "--repeat", str(args.repeat)]
    if args.only:
        command += ["--only", args.only]
    out = {n: [] for n in sizes}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as child:
        for line in child.stdout:
            try:
                r = json.loads(line)
            except ValueError:
                print(line, end="", file=sys.stderr)
                continue
            out[r["size"]].append(r)
            print(f"  {r['size']:>9,}  {r['page']:<70} {r['ms']:8.1f} ms (min {r['min_ms']:6.1f})  {r['rows']:>3} rows"
                  f"  {r['queries']:>2} q  status {r['status']}", flush=True)
    if child.returncode:
        raise SystemExit(f"measuring failed ({child.returncode})")
    return out


def compare(small: list[dict], large: list[dict], n_small: int, n_large: int) -> list[str]:
    """Each page at the large size against the small, flagged above LIMIT.

    A page that shows fewer rows at the small size is judged like with like: by its
    measurement with that many rows a page at both sizes (LIKE, column "like"), else by
    "fair" (the small size plus the rendering of the rows it lacks, per row: a full first
    page less an empty one). Flagged "!!" when the medians and the fastest both say so."""
    before = {r["page"]: r for r in small if "page" in r}
    after = {r["page"]: r for r in large if "page" in r}
    full, empty = before.get(REFERENCES[0]), before.get(REFERENCES[1])

    def per_row(key):
        return max(0.0, (full[key] - empty[key]) / max(1, full["rows"])) if full and empty else 0.0

    row_ms, row_min = per_row("ms"), per_row("min_ms")
    out = [f"{n_large:,} rows against {n_small:,} (first page unless DEEP; median ms, rows shown at each size; "
           f"a row renders in {row_ms:.2f} ms at {n_small:,}: full page less empty page; "
           f"like: both sizes again with as many rows a page as the smaller shows; min÷min: the fastest "
           f"of each size, like with like where measured, else fair)",
           f"  {'page':<70} {'small':>9} {'rows':>4} {'large':>9} {'rows':>4} {'ratio':>6} {'fair':>6} {'like':>6}"
           f" {'min÷min':>7}"]
    flagged = 0
    for r in large:
        if "page" not in r or r["page"] not in before or _LIKE.search(r["page"]):
            continue
        b = before[r["page"]]
        ratio, fastest = r["ms"] / b["ms"], r["min_ms"] / b["min_ms"]
        lacking = r["rows"] - b["rows"]
        fair = r["ms"] / (b["ms"] + row_ms * lacking) if lacking > 0 else ratio
        fair_min = r["min_ms"] / (b["min_ms"] + row_min * lacking) if lacking > 0 else fastest
        like_page = r["page"] + LIKE.format(b["rows"])
        like = fastest_like = None
        if lacking > 0 and like_page in after and like_page in before:
            like = after[like_page]["ms"] / before[like_page]["ms"]
            fastest_like = after[like_page]["min_ms"] / before[like_page]["min_ms"]
        judged, judged_min = (like, fastest_like) if like is not None else (fair, fair_min)
        # Above the limit by the medians; "!!" when the fastest of each size says so too (not noise alone).
        flag = ("!!" if judged_min > LIMIT else "! (median only)") if judged > LIMIT else ""
        flagged += bool(flag)
        like_text = f"×{like:5.2f}" if like is not None else f"{'':>6}"
        out.append(f"  {r['page']:<70} {b['ms']:7.1f}ms {b['rows']:>4} {r['ms']:7.1f}ms {r['rows']:>4} ×{ratio:5.2f}"
                   f" ×{fair:5.2f} {like_text} ×{(fastest_like if like is not None else fair_min):5.2f} {flag}")
    out.append(f"  {flagged} page(s) above ×{LIMIT} by the medians (like, else fair), "
               f"{sum(1 for line in out if line.endswith('!!'))} of them by the fastest too")
    return out


_RECORD = re.compile(r"^\s+(?P<n>[\d,]+)\s{2}(?P<page>.+?)\s{2,}(?P<ms>[\d.]+) ms \(min\s+(?P<min>[\d.]+)\)\s+"
                     r"(?P<rows>\d+) rows\s+(?P<q>\d+) q")


def markdown(log: str) -> str:
    """A run's comparison (its output saved in ``log``, complete or cut short) as a markdown table."""
    by_size = {}
    for line in open(log, encoding="utf-8"):
        if m := _RECORD.match(line):
            by_size.setdefault(int(m["n"].replace(",", "")), []).append(
                {"page": m["page"], "ms": float(m["ms"]), "min_ms": float(m["min"]), "rows": int(m["rows"])})
    small, large = min(by_size), max(by_size)
    lines = compare(by_size[small], by_size[large], small, large)
    out = [lines[0], "", f"| page | {small:,} | rows | {large:,} | rows | ratio | fair | like | fastest ÷ fastest | |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    row = re.compile(r"^  (?P<page>.+?)\s+(?P<a>[\d.]+)ms\s+(?P<ra>\d+)\s+(?P<b>[\d.]+)ms\s+(?P<rb>\d+)\s+×\s*(?P<r>[\d.]+)"
                     r"\s+×\s*(?P<f>[\d.]+)\s+(?:×\s*(?P<l>[\d.]+)\s+)?×\s*(?P<m>[\d.]+)\s*(?P<flag>.*)$")
    for line in lines[2:-1]:
        if m := row.match(line):
            like = f"×{m['l']}" if m["l"] else ""
            out.append(f"| {m['page']} | {m['a']} ms | {m['ra']} | {m['b']} ms | {m['rb']} | ×{m['r']} | ×{m['f']} | {like} "
                       f"| ×{m['m']} | {m['flag']} |")
    out += ["", lines[-1].strip()]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=hs.DEFAULT_URL)
    parser.add_argument("--rows", default="10000,1000000", help="sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep a database that has its rows (indexes rebuilt)")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--only", help="only the pages whose label matches this regular expression")
    parser.add_argument("--gunicorn", metavar="LABELS", help="these pages (';'-separated) through gunicorn, on kept databases")
    parser.add_argument("--markdown", metavar="LOG", help="a run's comparison, from its output saved in LOG, as markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measurer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.rows = int(args.rows)
        return worker(args)
    if args.measurer:
        return measurer(args)
    if args.markdown:
        return print(markdown(args.markdown))
    sizes = [int(s) for s in args.rows.split(",")]
    if args.gunicorn:
        for line_ in _gunicorn_lines(args):
            print(line_, flush=True)
        return
    (ROOT / "var").mkdir(exist_ok=True)
    urls = [hs.database_url(args.database_url, rows) for rows in sizes]
    try:
        for url, rows in zip(urls, sizes):
            _prepare(url, rows, args)
        results = _measure(urls, sizes, args)
    finally:
        if not args.keep:
            for url in urls:
                hs.drop_database(url)
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        print()
        print("\n".join(compare(results[small], results[large], small, large)))


def _gunicorn_lines(args):
    """Run gunicorn_check in a child per size (each needs its own django.setup), and compare."""
    labels = [x.strip() for x in args.gunicorn.split(";") if x.strip()]
    by_size = {}
    for rows in [int(s) for s in args.rows.split(",")]:
        command = [PYTHON, "-c", "import sys; sys.argv = sys.argv[1:]; sys.path.insert(0, 'bench'); "
                   "import history_pairs as hp; hp.gunicorn_check(hp._args(), sys.argv[-1].split(';'))",
                   "x", "--database-url", args.database_url, "--rows", str(rows), "--repeat", str(args.repeat),
                   ";".join(labels)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
        by_size[rows] = []
        for line in out.stdout.splitlines():
            try:
                by_size[rows].append(json.loads(line))
                r = by_size[rows][-1]
                yield f"  {r['page']:<70} {r['ms']:8.1f} ms  {r['rows']:>3} rows  status {r['status']}  (gunicorn, {rows:,})"
            except ValueError:
                yield line
    if len(by_size) > 1:
        small, large = min(by_size), max(by_size)
        before = {r["page"]: r for r in by_size[small]}
        yield ""
        yield f"through gunicorn: {large:,} rows against {small:,}"
        for r in by_size[large]:
            b = before[r["page"]]
            yield (f"  {r['page']:<70} {b['ms']:7.1f}ms {b['rows']:>4} {r['ms']:7.1f}ms {r['rows']:>4} ×{r['ms'] / b['ms']:5.2f}"
                   + (" !!" if r["ms"] / b["ms"] > LIMIT else ""))


def _args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=hs.DEFAULT_URL)
    parser.add_argument("--rows")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("labels")
    return parser.parse_args()


if __name__ == "__main__":
    main()
