"""Every history page is read from an index in its order: no sort of the rows, no scan of the table.

The plans of the very queries the pages send (captured), on both databases:
SQLite (which never gets statistics here) must not sort for ORDER BY nor
scan the table without an index; PostgreSQL, told not to scan tables or sort
unless it must, must not need to sort (an ordered index path exists).
Figures at a million rows: docs/benchmarks.md.
"""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import history
from jobs.models import Execution, Job

from .conftest import make_execution

URL = reverse("jobs:history")

# (actor, filters, the index SQLite reads the page from).
PAGES = [
    ("admin", {}, "execution_recent"),
    ("admin", {"page": "last"}, "execution_recent"),
    ("admin", {"company": "47"}, "execution_company_recent"),
    ("admin", {"job": "my test job"}, "execution_job_status_recent"),
    ("admin", {"user": "ipsuser"}, "execution_user_recent"),
    ("IpsUser", {"who": "mine"}, "execution_user_company"),  # mine, in their one company
    ("admin", {"outcome": "refused"}, "execution_outcome_recent"),
    ("admin", {"ips_result": "errors"}, "execution_ips_result_recent"),
    ("admin", {"range": "7d"}, "execution_recent"),
    ("admin", {"range": "custom", "from": "2026-01-01", "to": "2026-12-31"}, "execution_recent"),
    ("admin", {"sort": "-ips_runtime"}, "execution_ips_runtime"),
    ("admin", {"sort": "request_time"}, "execution_req_time_at"),
    ("admin", {"company": "47", "outcome": "accepted", "range": "30d"}, "execution_"),
    # A user of two companies: their filter is checked on the way (history.visible_to).
    ("IpsAdmin", {}, "execution_recent"),
    ("IpsAdmin", {"outcome": "accepted"}, "execution_outcome_recent"),
]


@pytest.fixture
def data(users, synced, other_company):
    from jobs.models import Membership

    Membership.objects.create(user=users["IpsAdmin"], company=other_company, role="IpsAdmin")
    jobs = list(Job.objects.all()[:4])
    for i in range(12):
        ex = make_execution(jobs[i % 4], users["IpsUser"], requested_at=timezone.now() - dt.timedelta(hours=i))
        ex.ips_result, ex.ips_runtime_ms = "ok", 1000 * i
        ex.save()
    return jobs


def _params(params, job):
    params = dict(params)
    if params.get("company") == "47":
        params["company"] = str(job.company_id)
    if params.get("job") == "my test job":
        params["job"] = str(Job.objects.get(handle="47|My Test Job|").pk)
    return params


def _page_queries(client, params) -> list[str]:
    """The SQL of the page's row queries: FROM the audit rows, in an order, one page long."""
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, params).status_code == 200
    rows = [
        q["sql"] for q in queries.captured_queries
        if 'FROM "jobs_execution"' in q["sql"] and "ORDER BY" in q["sql"] and f"LIMIT {history.PAGE_SIZE + 1}" in q["sql"]
    ]
    assert rows, [q["sql"][:200] for q in queries.captured_queries]
    return rows


def _plan(sql) -> list[str]:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute("EXPLAIN " + sql)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return [str(row[-1]) for row in cursor.fetchall()]


def _id(value):
    if isinstance(value, dict):
        return "&".join(f"{k}={x}" for k, x in value.items()) or "-"
    return value


@pytest.mark.parametrize("actor, params, index", PAGES, ids=_id)
def test_the_page_is_read_from_an_index_in_its_order(actor, params, index, client, login, data):
    login(actor)
    for sql in _page_queries(client, _params(params, data[0])):
        plan = _plan(sql)
        text = "\n".join(plan)
        if connection.vendor == "postgresql":
            assert "Sort" not in text and "Seq Scan on jobs_execution" not in text, text
        else:
            assert "TEMP B-TREE" not in text, text
            assert all("USING" in line for line in plan if "jobs_execution" in line), text
            assert f"INDEX {index}" in text, text


def test_a_jobs_last_failure_is_the_first_entry_of_its_partial_index(data):
    sql, params = Execution.objects.filter(job=data[0]).failures().order_by("-requested_at", "-id")[:1].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(r[0] for r in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(r[-1]) for r in cursor.fetchall())
    assert "execution_job_failures" in plan, plan


# Filters in pairs, and with a sort by value (history.plan). Walked (every filter dense:
# DRIVE_CAP 0): the page is read in its order from the index named, composite where one serves.
WALKED = [
    ("admin", {"outcome": "accepted", "sort": "request_time"}, "execution_outcome_req_time"),
    ("admin", {"outcome": "accepted", "sort": "-ips_runtime"}, "execution_outcome_runtime"),
    ("admin", {"ips_result": "ok", "sort": "request_time"}, "execution_result_req_time"),
    ("admin", {"ips_result": "ok", "sort": "ips_runtime"}, "execution_result_runtime"),
    ("admin", {"company": "47", "sort": "-ips_runtime"}, "execution_ips_runtime"),
    ("admin", {"range": "7d", "sort": "-request_time"}, "execution_req_time_at"),
    ("admin", {"user": "ipsuser", "outcome": "accepted"}, "execution_user_outcome"),
    ("admin", {"user": "ipsuser", "ips_result": "ok"}, "execution_user_result"),
    ("admin", {"company": "47", "outcome": "accepted"}, "execution_company_outcome"),
    ("admin", {"company": "47", "ips_result": "ok"}, "execution_company_result"),
    ("admin", {"user": "ipsuser", "job": "my test job"}, "execution_user_job"),
    ("admin", {"user": "ipsuser", "company": "47"}, "execution_user_company"),
    ("IpsAdmin", {"sort": "-ips_runtime"}, "execution_ips_runtime"),
    ("IpsUser", {"sort": "request_time"}, "execution_req_time_at"),
]
# Driven (a filter at or under DRIVE_CAP): its rows read from its own index, then sorted (few).
DRIVEN = [
    ("admin", {"range": "24h", "sort": "-ips_runtime"}, "execution_recent"),
    ("admin", {"range": "24h", "sort": "request_time"}, "execution_recent"),
    ("admin", {"company": "47", "sort": "ips_runtime"}, "execution_company_recent"),
    ("admin", {"outcome": "accepted", "sort": "-request_time"}, "execution_outcome_"),
    ("IpsUser", {"sort": "-ips_runtime"}, "execution_company_recent"),
]


@pytest.mark.parametrize("actor, params, index", WALKED, ids=_id)
def test_a_dense_pair_is_walked_in_order_from_its_index(actor, params, index, client, login, data, monkeypatch):
    monkeypatch.setattr(history, "DRIVE_CAP", 0)
    monkeypatch.setattr(history, "PG_SPAN_CAP", 0)  # PostgreSQL's time range of few rows: none here
    login(actor)
    for sql in _page_queries(client, _params(params, data[0])):
        text = "\n".join(_plan(sql))
        if connection.vendor == "postgresql":
            assert "Sort" not in text and "Seq Scan on jobs_execution" not in text, text
        else:
            assert "TEMP B-TREE" not in text, text
            assert f"INDEX {index} " in text or text.endswith(f"INDEX {index}"), text


@pytest.mark.parametrize("actor, params, index", DRIVEN, ids=_id)
def test_a_rare_filters_rows_come_from_its_own_index(actor, params, index, client, login, data):
    login(actor)
    for sql in _page_queries(client, _params(params, data[0])):
        text = "\n".join(_plan(sql))
        if connection.vendor == "sqlite":
            assert f"INDEX {index}" in text, text
            assert "SCAN jobs_execution" not in text, text
        elif "range" in params and params.get("sort", "").lstrip("-") in ("ips_runtime", "request_time"):
            # A time range of few rows by a value: read from the time index and sorted, never a walk
            # of the value's index (PostgreSQL's statistics would choose one: 34k entries at 1M rows).
            assert "execution_recent" in text and "Sort" in text, text
            assert "execution_ips_runtime" not in text and "execution_req_time_at" not in text, text


def _count_plan(terms, sort=history.DEFAULT_SORT) -> str:
    """The plan of the count of a walked page (every filter dense)."""
    # A cap of -1: no filter is rare, not even one that matches nothing here.
    chosen = history.plan(Execution.objects.all(), terms, sort, cap=-1)
    # As capped_count() asks it: the ids only (an index that carries the filters answers alone).
    sql, params = chosen.count.order_by(*chosen.count_ordering).values("pk")[: history.COUNT_CAP + 1].query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def test_a_users_runs_of_several_jobs_are_counted_in_their_composite_index(data):
    """A user and a job-name part (several jobs), each common, rare together: the count reads
    execution_user_job (user, job), exactly their rows, on both databases."""
    from django.db.models import Value
    from django.db.models.functions import Lower

    terms = [history.Term("job_id", tuple(j.pk for j in data[:3])),
             history.Term("username_lower", ("ipsuser",), lambda name: Lower(Value(name)))]
    plan = _count_plan(terms)
    if connection.vendor == "postgresql":
        # User by user (history.plan's LATERAL count), each user's rows from an index led by the user:
        # at 1M rows execution_user_job with both columns; on this tiny table any of the user's indexes.
        assert "lower(split.value)" in plan and "Index Cond: (lower((username)::text)" in plan, plan
        assert "Seq Scan on jobs_execution" not in plan, plan
    else:
        assert "execution_user_job" in plan, plan


def test_several_jobs_with_an_outcome_are_counted_in_the_jobs_index(data):
    """Several jobs and an outcome (or an IPS result), both dense: on SQLite the count reads
    execution_job_status_recent, which carries the outcome, not the outcome's index row by row."""
    for term in (history.Term("outcome", ("refused",)), history.Term("ips_result", ("fatal",))):
        plan = _count_plan([history.Term("job_id", tuple(j.pk for j in data[:3])), term])
        if connection.vendor == "sqlite":
            assert "COVERING INDEX execution_job_status_recent" in plan, plan


@pytest.mark.parametrize("sort, index", [("-ips_runtime", "execution_user_runtime"), ("ips_runtime", "execution_user_runtime"),
                                         ("-request_time", "execution_user_req_time"),
                                         ("request_time", "execution_user_req_time")])
def test_a_users_runs_by_a_value_are_read_in_order_from_their_own_index(sort, index, client, login, data):
    """PostgreSQL: a user's page by a value comes in order from (lower(username), value, id), not
    from the value's index walked past every other user's runs (SQLite: history.plan drives it)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite's page is chosen by history.plan's probes (test_a_rare_filters_…)")
    login("admin")
    page_sql = [sql for sql in _page_queries(client, {"user": "ipsuser", "sort": sort}) if "LIMIT" in sql and "COUNT" not in sql]
    assert page_sql
    for sql in page_sql:
        text = "\n".join(_plan(sql))
        assert index in text and "Sort" not in text, text


def test_a_user_part_with_a_job_reads_each_users_runs_of_it_from_their_composite(client, login, data, monkeypatch):
    """Several users (a part of a name: "ips") with one job, both dense: each user's branch of the
    page has its own user and the job, and reads execution_user_job with both columns. Each branch
    also carried an IN over every user matched: at 1M rows SQLite then read each user's every run
    from execution_user_recent, checking the job (×5; on a small table it chooses well, so the
    branch's SQL is checked too)."""
    monkeypatch.setattr(history, "DRIVE_CAP", 0)
    login("admin")
    [sql] = _page_queries(client, _params({"user": "ips", "job": "my test job"}, data[0]))
    plan = _plan(sql)
    if connection.vendor == "sqlite":
        branches = [line for line in plan if "jobs_execution USING INDEX" in line]
        assert len(branches) > 1, plan  # one per user matched
        assert all("execution_user_job (<expr>=? AND job_id=?)" in line for line in branches), plan
        assert 'LOWER("jobs_execution"."username") IN' not in sql, sql
        assert sql.count('LOWER("jobs_execution"."username") = ') == len(branches), sql
    else:
        assert "Seq Scan on jobs_execution" not in "\n".join(plan), plan
