"""The admin's executions changelist at a million rows: no full count, no DISTINCT over the
table, filters and search that an index serves, sorting by time only."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.admin import CappedCountPaginator

from .conftest import make_execution

CHANGELIST = reverse("admin:jobs_execution_changelist")


@pytest.fixture
def rows(users, job):
    made = [make_execution(job, users["IpsUser"], "accepted") for _ in range(3)]
    made.append(make_execution(job, users["IpsCompanyAdmin"], "denied"))
    return made


def _get(client, params=None):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST, params or {})
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def _listed(response) -> set[int]:
    return {int(pk) for pk in re.findall(r'/admin/jobs/execution/(\d+)/change/', response.content.decode())}


def test_the_changelist_never_counts_or_scans_the_whole_table(client, login, rows):
    login("admin")
    response, sql = _get(client)
    audit = [q for q in sql if "jobs_execution" in q]
    assert not any("DISTINCT" in q for q in audit), audit
    counts = [q for q in audit if "COUNT(" in q.upper()]
    # One count, of at most the cap's rows: no second count for "N total".
    assert len(counts) == 1 and f"LIMIT {CappedCountPaginator.cap + 1}" in counts[0]
    assert _listed(response) == {r.pk for r in rows}
    body = response.content.decode()
    assert "4 executions" in body
    # Filters whose choices are fixed; none by role or operation (not indexed); no date drill-down.
    assert "By outcome" in body and "By IPS result" in body and "By requested at" in body
    assert "By role" not in body and 'class="xfull"' not in body and "date-hierarchy" not in body


def test_past_the_cap_it_says_more_than(client, login, rows, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    login("admin")
    body = _get(client)[0].content.decode()
    assert "More than 2 executions" in body


def test_it_sorts_by_time_only(client, login, rows):
    login("admin")
    body = _get(client)[0].content.decode()
    # The time column, shown with its zone (admin/values.py), is the only sortable one.
    assert re.findall(r'class="sortable[^"]*column-(\w+)', body) == ["requested_at_shown"]


@pytest.mark.parametrize(
    "term, expected",
    [
        ("request_id_of_0", [0]),
        ("IPSCOMPANYADMIN", [3]),  # a user name, whole, any case
        ("test job", [0, 1, 2, 3]),  # part of a job's name
        ("ipscomp", []),  # part of a user name: not indexed, not searched
        ("nothing like it", []),
    ],
)
def test_search_uses_one_index(term, expected, client, login, rows):
    login("admin")
    if term == "request_id_of_0":
        term = rows[0].request_id
    response, sql = _get(client, {"q": term})
    assert _listed(response) == {rows[i].pk for i in expected}
    # LIKE only over the (small) job table, never over the audit rows.
    audit = [q for q in sql if 'FROM "jobs_execution"' in q]
    assert audit and all(" LIKE " not in q for q in audit), audit


def test_filters_by_outcome_company_and_date(client, login, rows, job):
    login("admin")
    assert _listed(_get(client, {"outcome__exact": "denied"})[0]) == {rows[3].pk}
    assert _listed(_get(client, {"company__id__exact": job.company.pk})[0]) == {r.pk for r in rows}
    assert _listed(_get(client, {"requested_at__gte": "2000-01-01 00:00:00+00:00"})[0]) == {r.pk for r in rows}


def test_a_search_past_the_cap_says_more_than(client, login, rows, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    login("admin")
    body = _get(client, {"q": "test job"})[0].content.decode()
    assert "more than 2 results" in body and "4 results" not in body


def test_a_job_name_search_over_busy_jobs_walks_the_time_order(client, login, users, synced, monkeypatch):
    """Several jobs with more runs than history.DRIVE_CAP: on SQLite the page walks the time
    order with "+job_id" (no per-job fetch and sort of all their runs); the count still reads
    their index. Same rows either way."""
    from jobs.models import Execution, Job

    monkeypatch.setattr("jobs.admin.records.DRIVE_CAP", 2)
    jobs = list(Job.objects.filter(company=synced, name__icontains="u").order_by("pk")[:2])
    assert len(jobs) == 2
    made = [make_execution(jobs[i % 2], users["IpsUser"], "denied") for i in range(6)]
    login("admin")
    response, sql = _get(client, {"q": "u"})
    expected = set(Execution.objects.filter(job__name__icontains="u").values_list("pk", flat=True))
    assert {m.pk for m in made} <= expected and _listed(response) == expected
    rows = [q for q in sql if 'FROM "jobs_execution"' in q and "ORDER BY" in q and "COUNT(" not in q]
    counts = [q for q in sql if 'FROM "jobs_execution"' in q and "COUNT(" in q]
    if connection.vendor == "sqlite":
        assert rows and all('+"jobs_execution"."job_id" IN' in q for q in rows), rows
    assert counts and all('+"jobs_execution"."job_id"' not in q for q in counts), counts
