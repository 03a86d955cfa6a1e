"""History's filters in pairs and with every sort: the planned page (history.plan: a rare
filter's rows read whole from its index, else the page's order walked) shows exactly the
rows of a plain ORM filter and order, page after page, forward and back, ties included.

DRIVE_CAP is made small (5) so that, over a few dozen rows, some filters drive and others are
walked past: both shapes, and each choice of index, meet every pair."""

import datetime as dt
import itertools
import re

import pytest
from django.db import connection
from django.utils import timezone

from jobs import history
from jobs.forms import HistoryFilterForm
from jobs.models import Company, Execution, Job, Membership

from .conftest import make_execution

URL = "/history/"


def shown(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="execution-(\d+)"', response.content.decode())]


def _walk(client, url, direction="next"):
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(shown(response))
        rel = {"next": 'rel="next"', "prev": 'rel="prev"'}[direction]
        link = re.search(rf'<a href="([^"]+)"[^>]*{rel}', response.content.decode())
        url = link and link[1].replace("&amp;", "&")
    return pages


@pytest.fixture
def world(users, synced, other_company):
    """47 rows in two companies: three jobs, three users, outcomes and IPS results of every
    kind, runs IPS started, runtimes with ties and without, some at the very same instant."""
    Membership.objects.create(user=users["IpsAdmin"], company=other_company, role="IpsAdmin")
    jobs = list(Job.objects.filter(company=synced).order_by("pk")[:2]) + [
        Job.objects.filter(company=other_company).order_by("pk").first()]
    for job in jobs:
        # "job" in each name: the job-name part below matches all three (several jobs, a split).
        if "job" not in job.name.casefold():
            job.name = f"{job.name} job"
            job.save(update_fields=["name"])
    people = [users["IpsUser"], users["IpsAdmin"], users["othercompany"]]
    now = timezone.now()
    outcomes = ["accepted", "accepted", "refused", "accepted", "denied", "timed_out", "accepted"]
    results = ["ok", "errors", "ok", "fatal", "warnings", "ok"]
    for i in range(47):
        job = jobs[i % 3]
        user = people[2] if job.company_id == other_company.pk else people[i % 2]
        at = now - dt.timedelta(hours=(i if i % 9 else i - 1) * 7)  # pairs at one instant
        if i % 11 == 5:
            # A run the IPS schedule fired, found by the watcher: nobody pressed it, no request time.
            ex = Execution.objects.create(
                job=job, company=job.company, company_handle=job.company.handle, job_handle=job.handle,
                job_name=job.name, username="ips-schedule@example.com", outcome="accepted",
                started_by="schedule", requested_at=at, ips_run_handle=f"run-{i}")
        else:
            ex = make_execution(job, user, outcomes[i % len(outcomes)], requested_at=at)
        if ex.outcome == "accepted" and i % 4:
            ex.ips_result = results[i % len(results)]
            # Ties on the runtime; some runs IPS never timed.
            ex.ips_runtime_ms = None if i % 13 == 0 else 1000 * (i % 5)
            ex.ips_result_at = now
            ex.save()
    return {"company": synced, "other": other_company, "jobs": jobs}


def filters(world) -> dict:
    """label: (actor, the page's parameters)."""
    jobs = world["jobs"]
    return {
        "company": ("admin", {"company": world["company"].pk}),
        "other company": ("admin", {"company": world["other"].pk}),
        "job": ("admin", {"job": jobs[0].pk}),
        "job name (several)": ("admin", {"job_name": "job"}),
        "user": ("admin", {"user": "ipsuser"}),
        "user part (several)": ("admin", {"user": "ips"}),
        "started by schedule": ("admin", {"started_by": "schedule"}),
        "started by here": ("admin", {"started_by": "here"}),
        "outcome accepted": ("admin", {"outcome": "accepted"}),
        "outcome refused": ("admin", {"outcome": "refused"}),
        "IPS result ok": ("admin", {"ips_result": "ok"}),
        "IPS result fatal": ("admin", {"ips_result": "fatal"}),
        "last 24 h": ("admin", {"range": "24h"}),
        "last 7 days": ("admin", {"range": "7d"}),
        "custom range": ("admin", {"range": "custom",
                                   "from": (timezone.now() - dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M"),
                                   "to": (timezone.now() - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")}),
        "as a user of two companies": ("IpsAdmin", {}),
        "as a user of one company": ("IpsUser", {}),
    }


LABELS = list(filters({"company": type("C", (), {"pk": 0}), "other": type("C", (), {"pk": 0}),
                       "jobs": [type("J", (), {"pk": 0})]}))
PAIRS = [(a, b) for a, b in itertools.combinations(LABELS, 2)
         if not (a.startswith("as ") and b.startswith("as "))
         # Not a company the user has no role in: the form refuses it (test_history.py).
         and (a, b) != ("other company", "as a user of one company")]
SORTS = list(history.SORTS)


def expected(users, actor, params) -> list[int]:
    """The plain ORM answer: the form's filter() over the rows the actor may read, in the sort's order."""
    user = users[actor]
    companies = list(Company.objects.all()) if user.is_superuser else [
        m.company for m in Membership.objects.filter(user=user)]
    form = HistoryFilterForm(params, companies=companies, user=user)
    assert form.is_valid(), form.errors
    rows = Execution.objects.all() if user.is_superuser else Execution.objects.filter(company__in=companies)
    rows = form.filter(rows)
    sort = form.chosen_sort
    if sort.needs_value:
        rows = rows.filter(**{f"{sort.field}__isnull": False})
    return list(rows.order_by(*sort.ordering).values_list("pk", flat=True))


def _check(client, login, users, actor, params, monkeypatch):
    """With a cap of 5 (dense filters walked past, rare ones driving) and of 1,000 (every filter drives)."""
    monkeypatch.setattr(history, "PAGE_SIZE", 6)
    login(actor)
    want = expected(users, actor, params)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    for cap in (5, 1000):
        monkeypatch.setattr(history, "DRIVE_CAP", cap)
        forward = _walk(client, URL + "?" + query)
        assert [pk for p in forward for pk in p] == want, cap
        backward = _walk(client, URL + "?" + "&".join(x for x in (query, "page=last") if x), "prev")
        assert [pk for p in reversed(backward) for pk in p] == want, cap
    return want


def _merge(world, *labels, sort=None):
    fs = filters(world)
    actor, params = "admin", {}
    for label in labels:
        who, p = fs[label]
        actor = who if who != "admin" else actor
        params.update(p)
    if sort and sort != history.DEFAULT_SORT.key:
        params["sort"] = sort
    return actor, params


@pytest.mark.parametrize("a, b", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_each_pair_of_filters_pages_through_the_plain_answer(a, b, client, login, users, world, monkeypatch):
    actor, params = _merge(world, a, b)
    _check(client, login, users, actor, params, monkeypatch)


@pytest.mark.parametrize("label, sort", list(itertools.product(LABELS, SORTS)),
                         ids=[f"{f}+{s}" for f, s in itertools.product(LABELS, SORTS)])
def test_each_filter_with_each_sort_pages_through_the_plain_answer(label, sort, client, login, users, world,
                                                                   monkeypatch):
    actor, params = _merge(world, label, sort=sort)
    _check(client, login, users, actor, params, monkeypatch)


def test_the_world_meets_both_shapes(world, users):
    """The table above is worth its cells: over these rows, with a cap of 5, some filters
    drive (at most 5 rows) and some are walked past, and pairs have rows in common."""
    fs = filters(world)
    counts = {label: len(expected(users, *fs[label])) for label in fs}
    assert any(0 < n <= 5 for n in counts.values()) and any(n > 5 for n in counts.values()), counts
    assert len(expected(users, *_merge(world, "company", "outcome accepted"))) > 4


def test_a_rare_filter_is_read_from_its_index_and_sorted(world, monkeypatch):
    """The plan on SQLite: a filter at or under the cap drives; above it, the sort's index is
    walked. (PostgreSQL plans from its statistics: no driver.)"""
    monkeypatch.setattr(history, "DRIVE_CAP", 10)
    runtime = history.SORTS["-ips_runtime"]
    rare = history.Term("outcome", ("refused",))  # 6 rows
    dense = history.Term("job_id", (world["jobs"][0].pk,))  # 16 rows
    sqlite = connection.vendor == "sqlite"
    newest = history.DEFAULT_SORT
    assert history.plan(Execution.objects.all(), [rare, dense], newest).driver == ("outcome" if sqlite else "")
    assert history.plan(Execution.objects.all(), [dense], runtime).driver == ""


def test_pairs_that_cannot_match_ask_nothing(world, django_assert_num_queries):
    """By the audit trail's rules: a refusal has no IPS result nor runtime, a run IPS started no
    request time, a job belongs to one company. Walked, each would read an index to its end."""
    runtime, request_time = history.SORTS["-ips_runtime"], history.SORTS["request_time"]
    other_job = Job.objects.filter(company=world["other"]).first()
    for terms, sort in [
        ([history.Term("outcome", ("refused",)), history.Term("ips_result", ("ok",))], history.DEFAULT_SORT),
        ([history.Term("outcome", ("denied",))], runtime),
        ([history.Term("started_by", ("schedule",))], request_time),
        ([history.Term("company_id", (world["company"].pk,)), history.Term("job_id", (other_job.pk,))],
         history.DEFAULT_SORT),
    ]:
        with django_assert_num_queries(1 if any(t.field == "job_id" for t in terms) else 0):
            page = history.planned_page(Execution.objects.all(), terms, sort)
        assert page.rows == [] and page.count == 0


VALUE_SORTS = [key for key, sort in history.SORTS.items() if sort.needs_value]


def _rows_queries(queries) -> list[str]:
    """The SQL of the queries that read a page's rows (every column), not the count nor the look behind."""
    return [q["sql"] for q in queries if '"jobs_execution"."operation"' in q["sql"]]


@pytest.mark.parametrize("sort", VALUE_SORTS)
def test_several_jobs_by_a_value_are_read_job_by_job_on_postgresql(sort, client, login, users, world, monkeypatch):
    """On PostgreSQL, a job-name part (several jobs) sorted by a value reads each job's first
    rows from its (job, value) index, one query planned once and run for each job (LATERAL), fetched by
    primary key: the same rows as the plain query, page after page, forward and back, ties included."""
    from django.test.utils import CaptureQueriesContext

    actor, params = _merge(world, "job name (several)", sort=sort)
    with CaptureQueriesContext(connection) as queries:
        want = _check(client, login, users, actor, params, monkeypatch)
    assert len(want) > 6  # several pages of 6
    assert len({Execution.objects.get(pk=pk).job_id for pk in want}) == 3
    reads = _rows_queries(queries)
    if connection.vendor == "postgresql":
        assert reads and all("CROSS JOIN LATERAL" in sql and "= ANY(ARRAY(" in sql for sql in reads), reads[0]
        # Each branch names its job alone: beside an IN over them all, PostgreSQL misjudges the rows.
        assert not any('"job_id" IN (' in sql for sql in reads)
    plain = history.plan(Execution.objects.all(), [history.Term("job_id", tuple(j.pk for j in world["jobs"]))],
                         history.SORTS[sort])
    assert (plain.split is not None) == (connection.vendor == "postgresql" or plain.driver == "job_id")


def test_more_jobs_than_the_union_takes_are_read_by_one_query_on_postgresql(client, login, users, world,
                                                                            monkeypatch):
    """Above PG_UNION_MAX jobs, PostgreSQL gets the plain IN (planning the union would cost more than it saves)."""
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(history, "PG_UNION_MAX", 2)
    actor, params = _merge(world, "job name (several)", sort="-ips_runtime")
    with CaptureQueriesContext(connection) as queries:
        _check(client, login, users, actor, params, monkeypatch)
    if connection.vendor == "postgresql":
        assert not any("LATERAL" in sql for sql in _rows_queries(queries))
