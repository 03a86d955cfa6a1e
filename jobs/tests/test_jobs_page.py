"""The jobs page at thousands of jobs: search, a page per company, each company's last 24 hours."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.views import jobs as job_views
from jobs.models import Company, Job

from .conftest import HTMX, make_execution

LIST = reverse("jobs:list")


def job_ids(body: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="job-(\d+)"', body)]


@pytest.fixture
def many_jobs(synced):
    """60 more jobs in company 47."""
    Job.objects.bulk_create(
        Job(company=synced, handle=f"47|Bulk {i:03d}|", name=f"Bulk {i:03d}", exec_schedule="00 00 06 * * ", time_zone="CET")
        for i in range(60)
    )
    return synced


def test_jobs_come_a_page_at_a_time_per_company(client, login, many_jobs, monkeypatch):
    monkeypatch.setattr(job_views, "JOBS_PER_PAGE", 20)
    login("admin")
    other = Company.objects.get(handle="48")
    # Both companies open (the address names them): each lists a page of its jobs.
    body = client.get(LIST, {"open": [many_jobs.pk, other.pk]}).content.decode()
    in_47 = list(Job.objects.filter(company=many_jobs).order_by("name", "pk").values_list("pk", flat=True))
    in_48 = list(Job.objects.filter(company=other).order_by("name", "pk").values_list("pk", flat=True))
    assert job_ids(body) == in_47[:20] + in_48
    assert "Jobs 1–20 of 65" in body
    # The next page of 47 keeps 48 where it was.
    nxt = re.search(r'<a href="([^"]+)"[^>]*rel="next"', body)[1].replace("&amp;", "&")
    assert nxt == f"{LIST}?open={many_jobs.pk}&open={other.pk}&p{many_jobs.pk}=2"
    assert job_ids(client.get(nxt).content.decode()) == in_47[20:40] + in_48
    # A page past the end: the last one.
    assert job_ids(client.get(LIST, {f"p{many_jobs.pk}": 99}).content.decode())[:5] == in_47[60:65]


def test_htmx_pages_one_company_only(client, login, many_jobs, monkeypatch):
    monkeypatch.setattr(job_views, "JOBS_PER_PAGE", 20)
    login("IpsUser")
    response = client.get(LIST, {f"p{many_jobs.pk}": 2}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET=f"company-{many_jobs.pk}")
    body = response.content.decode()
    assert body.lstrip().startswith(f'<section class="company card" id="company-{many_jobs.pk}">')
    assert "<html" not in body and "Jobs 21–40 of 65" in body


def test_search_finds_jobs_by_any_part_of_their_name_in_every_company(client, login, many_jobs):
    login("admin")
    body = client.get(LIST, {"q": "publish"}).content.decode()
    names = set(Job.objects.filter(pk__in=job_ids(body)).values_list("name", flat=True))
    # Few matches: every company with one lists them.
    assert {c for c in Job.objects.filter(name__icontains="publish").values_list("company", flat=True)} == {
        many_jobs.pk, Company.objects.get(handle="48").pk}
    assert names == set(Job.objects.filter(name__icontains="publish").values_list("name", flat=True))
    assert "Bulk" not in body and 'value="publish"' in body
    body = client.get(LIST, {"q": "no such job"}).content.decode()
    assert "No job here has “no such job” in its name." in body


def test_search_shows_only_the_users_companies(client, login, many_jobs):
    login("IpsUser")
    body = client.get(LIST, {"q": "a"}).content.decode()
    assert not set(job_ids(body)) & set(Job.objects.filter(company__handle="48").values_list("pk", flat=True))


def test_each_company_says_what_its_last_24_hours_did(client, login, users, job):
    now = timezone.now()
    ok = make_execution(job, users["IpsUser"], requested_at=now - dt.timedelta(hours=1))
    ok.ips_result, ok.ips_runtime_ms = "ok", 120_000
    ok.save()
    make_execution(job, users["IpsUser"], "refused", requested_at=now - dt.timedelta(hours=2))
    make_execution(job, users["IpsUser"], "refused", requested_at=now - dt.timedelta(hours=30))  # too old
    make_execution(job, users["IpsCompanyAdmin"], "denied", requested_at=now - dt.timedelta(hours=3))  # not sent
    login("IpsUser")
    body = client.get(LIST).content.decode()
    summary = re.search(rf'<p class="summary small" id="summary-{job.company.pk}">(.*?)</p>', body, re.S)[1]
    text = " ".join(re.sub(r"<[^>]+>", " ", summary).split())
    assert text.startswith("Last 24 h: 2 runs · 50 % succeeded · 1 failed · average IPS runtime 2 min")
    assert f"{reverse('jobs:history')}?company={job.company.pk}&amp;range=24h" in summary


def test_the_active_poller_asks_for_the_jobs_of_its_page(client, login, users, many_jobs, monkeypatch):
    monkeypatch.setattr(job_views, "JOBS_PER_PAGE", 20)
    login("IpsUser")
    body = client.get(LIST, {"q": "bulk", f"p{many_jobs.pk}": 2}).content.decode()
    url = reverse("jobs:active", args=[many_jobs.pk]) + "?q=bulk&amp;page=2"
    assert f'hx-get="{url}"' in body
    # IPS runs one job of page 1 and one of page 2: only the cell of the poller's page comes.
    bulk = list(Job.objects.filter(name__icontains="bulk").order_by("name", "pk"))
    for job in (bulk[3], bulk[23]):
        make_execution(job, users["IpsUser"], ips_state="Running", ips_progress=10)
    answer = client.get(url.replace("&amp;", "&"), **HTMX).content.decode()
    cells = [int(pk) for pk in re.findall(r'<td class="action" id="action-(\d+)"', answer)]
    assert cells == [bulk[23].pk]


def _queries(client, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LIST, params or {}).status_code == 200
    return len(queries)


@pytest.mark.parametrize("params", [{}, {"q": "a"}, {"p1": "2"}], ids=["first", "search", "page"])
def test_the_jobs_pages_queries_do_not_grow_with_jobs_runs_or_companies(params, client, login, users, synced, django_assert_max_num_queries):
    login("admin")
    job = Job.objects.filter(company=synced).order_by("name").first()
    make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(hours=2))
    few = _queries(client, params)
    Job.objects.bulk_create(Job(company=synced, handle=f"47|More {i}|", name=f"More {i}") for i in range(120))
    for i in range(30):
        make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(minutes=i + 1))
    from jobs.models import Company

    for handle in ("60", "61"):
        Company.objects.create(connection=synced.connection, handle=handle, name=f"Company {handle}")
    with django_assert_max_num_queries(few):
        client.get(LIST, params)
