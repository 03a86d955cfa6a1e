"""The jobs page of several companies: one company's jobs at a time, the others summarized; the
Active-in-IPS poll sends only the cells whose state changed."""

import datetime as dt
import re
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.models import Company, Job
from jobs.views import jobs as job_views

from .conftest import HTMX, make_execution

LIST = reverse("jobs:list")


def job_ids(body: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="job-(\d+)"', body)]


def section(body: str, company) -> str:
    found = re.search(rf'<section class="company card[^"]*" id="company-{company.pk}">(.*?)</section>', body, re.S)
    assert found, f"no section of {company}"
    return found[1]


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def open_link(html: str) -> re.Match:
    return re.search(r'<a class="button open-company" href="([^"]+)" hx-get="([^"]+)"[^>]*aria-label="([^"]+)">([^<]+)</a>', html)


@pytest.fixture
def other(synced):
    return Company.objects.get(handle="48")


@pytest.fixture
def many_jobs(synced, other):
    """30 more jobs in each company."""
    Job.objects.bulk_create(
        Job(company=c, handle=f"{c.handle}|Bulk {i:03d}|", name=f"Bulk {i:03d}") for c in (synced, other) for i in range(30)
    )
    return synced


def in_order(company) -> list[int]:
    return list(Job.objects.filter(company=company).order_by("name", "pk").values_list("pk", flat=True))


def test_a_superuser_sees_the_first_company_and_a_summary_of_the_others(client, login, users, many_jobs, other):
    login("admin")
    job = Job.objects.filter(company=other).order_by("name").first()
    ok = make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(hours=1))
    ok.ips_result = "ok"
    ok.save()
    make_execution(job, users["IpsUser"], "refused", requested_at=timezone.now() - dt.timedelta(hours=2))
    make_execution(Job.objects.get(company=other, name="Bulk 001"), users["IpsUser"], ips_state="Running")
    Company.objects.filter(pk=other.pk).update(last_synced_at=timezone.now())
    body = client.get(LIST).content.decode()
    # Demo Company comes first by name: a glimpse of its first jobs, and a link to all of them.
    assert job_ids(body) == in_order(many_jobs)[: job_views.FIRST_VIEW_ROWS]
    first = section(body, many_jobs)
    assert f"Jobs 1–{job_views.FIRST_VIEW_ROWS} of 35" in text(first)
    assert reverse("jobs:active", args=[many_jobs.pk]) in first
    link = open_link(first)
    assert link[4] == "Show all jobs" and link[3] == "Show all jobs of Demo Company"
    assert unescape(link[1]) == f"{LIST}?open={many_jobs.pk}"
    # Other Company: what it holds, its day, who may do what, when it was synced; no rows, no polling.
    summary = section(body, other)
    said = text(summary)
    assert "33 jobs · 1 running in IPS now" in said
    assert "Last 24 h: 3 runs · 50 % succeeded · 1 failed" in said
    assert "Your IPS user type here: IpsAdmin" in said and "synced just now" in said
    assert "<tr" not in summary and "/active" not in summary
    link = open_link(summary)
    assert link[4] == "Show jobs" and link[3] == "Show jobs of Other Company"
    assert link[1] == link[2] and unescape(link[1]) == f"{LIST}?open={many_jobs.pk}&open={other.pk}"


def test_a_user_of_one_company_sees_it_whole(client, login, many_jobs):
    login("IpsUser")
    body = client.get(LIST).content.decode()
    assert job_ids(body) == in_order(many_jobs)
    assert "open-company" not in body and "company-summarized" not in body


def test_the_open_link_without_js_opens_the_company_and_keeps_the_first(client, login, many_jobs, other):
    login("admin")
    link = open_link(section(client.get(LIST).content.decode(), other))
    body = client.get(unescape(link[1])).content.decode()
    assert job_ids(body) == in_order(many_jobs) + in_order(other)
    assert "open-company" not in body
    # The address alone opens a company: the first is then summarized.
    body = client.get(LIST, {"open": other.pk}).content.decode()
    assert job_ids(body) == in_order(other)
    assert open_link(section(body, many_jobs))


def test_htmx_opens_a_company_in_place_and_pushes_the_address(client, login, many_jobs, other):
    login("admin")
    link = open_link(section(client.get(LIST).content.decode(), other))
    assert f'hx-target="#company-{other.pk}"' in link[0] and 'hx-swap="outerHTML" hx-push-url="true"' in link[0]
    response = client.get(unescape(link[2]), HTTP_HX_TARGET=f"company-{other.pk}",
                          HTTP_HX_CURRENT_URL=f"http://testserver{LIST}", **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith(f'<section class="company card" id="company-{other.pk}">')
    assert "<html" not in body and job_ids(body) == in_order(other)
    assert reverse("jobs:active", args=[other.pk]) in body
    assert response["HX-Push-Url"] == f"{LIST}?open={many_jobs.pk}&open={other.pk}"
    # A company opened earlier (in the browser's address) stays in the address.
    third = Company.objects.create(connection=other.connection, handle="49", name="Third Company")
    response = client.get(LIST, {"open": [many_jobs.pk, third.pk]}, HTTP_HX_TARGET=f"company-{third.pk}",
                          HTTP_HX_CURRENT_URL=f"http://testserver{LIST}?open={many_jobs.pk}&open={other.pk}", **HTMX)
    assert response["HX-Push-Url"] == f"{LIST}?open={many_jobs.pk}&open={other.pk}&open={third.pk}"


def test_a_search_lists_the_matches_within_a_budget_and_counts_the_rest(client, login, many_jobs, other, monkeypatch):
    monkeypatch.setattr(job_views, "SEARCH_ROWS", 40)
    login("admin")
    body = client.get(LIST, {"q": "bulk"}).content.decode()
    # 30 matches in each: the first company's fill most of the budget, the other's are counted.
    assert job_ids(body) == list(Job.objects.filter(company=many_jobs, name__startswith="Bulk").order_by("name", "pk")
                                 .values_list("pk", flat=True))
    summary = section(body, other)
    assert "30 jobs have “bulk” in their name" in text(summary)
    assert unescape(open_link(summary)[1]) == f"{LIST}?q=bulk&open={many_jobs.pk}&open={other.pk}"
    # Within the budget, every company with matches lists them.
    monkeypatch.setattr(job_views, "SEARCH_ROWS", 60)
    body = client.get(LIST, {"q": "bulk"}).content.decode()
    assert len(job_ids(body)) == 60 and "open-company" not in body
    # A company without matches says so.
    body = client.get(LIST, {"q": "My Test"}).content.decode()
    assert "No job here has “My Test” in its name." in text(section(body, other))


def test_the_rows_say_and_do_what_they_did(client, login, users, job):
    """Addresses built once per page, not per row: the same as reverse() gives."""
    login("IpsUser")
    execution = make_execution(job, users["IpsUser"])
    row = re.search(rf'<tr id="job-{job.pk}".*?</tr>', client.get(LIST).content.decode(), re.S)[0]
    assert f'href="{reverse("jobs:job_detail", args=[job.pk])}"' in row
    assert f'href="{reverse("jobs:run_detail", args=[execution.pk])}"' in row
    assert f'hx-get="{reverse("jobs:status", args=[job.pk])}"' in row
    # The run is open in IPS (the watcher's record): the row offers Stop, and Pause.
    for action in ("stop", "pause"):
        url = reverse("jobs:press", args=[job.pk, action])
        assert f'action="{url}"' in row and f'hx-post="{url}"' in row
    assert row.count('name="csrfmiddlewaretoken"') == 2
    local = timezone.localtime(execution.requested_at)
    assert f'<time datetime="{local.isoformat()}">{local:%Y-%m-%d %H:%M:%S} {local.tzname()}</time>' in row


def _poll(client, company, busy=(), **params):
    answer = client.get(reverse("jobs:active", args=[company.pk]), {"busy": list(busy), **params}, **HTMX)
    assert answer.status_code == 200
    body = answer.content.decode()
    cells = dict(re.findall(r'<td class="action" id="action-(\d+)" hx-swap-oob="true">(.*?)</td>', body, re.S))
    return {int(pk): cell for pk, cell in cells.items()}


def test_the_poll_sends_only_the_cells_that_changed(client, login, users, job, synced, other):
    login("IpsUser")
    body = client.get(LIST).content.decode()
    # The poller sends the busy cells' ids (hx-include); the page starts with none.
    assert (f'hx-include="#company-{synced.pk} h2, #company-{synced.pk} td.action > input[name=busy], '
            f'#company-{synced.pk} input[name=seen]"') in body
    assert 'name="busy"' not in body
    assert _poll(client, synced) == {}
    run = make_execution(job, users["IpsUser"], ips_state="Running", ips_progress=40)
    # Running now: its cell, saying so (no percentage: it would go stale), and marked busy.
    cells = _poll(client, synced)
    assert list(cells) == [job.pk]
    assert f'<input type="hidden" name="busy" value="{job.pk}">' in cells[job.pk]
    assert ('title="IPS reports this job running: wait for it to finish." data-action="run">'
            '<span aria-hidden="true">Running in IPS</span>') in cells[job.pk]
    assert "40%" not in cells[job.pk]
    # Shown busy and still running: nothing to send. A job of another company: never.
    elsewhere = Job.objects.filter(company=other).first()
    assert _poll(client, synced, busy=[job.pk, elsewhere.pk]) == {}
    # Shown busy, ended: its idle cell.
    run.ips_state, run.ips_result, run.ips_result_at = "Done", "ok", timezone.now()
    run.save()
    cells = _poll(client, synced, busy=[job.pk])
    assert list(cells) == [job.pk]
    assert 'name="busy"' not in cells[job.pk] and 'class="run"' in cells[job.pk]


def test_the_poll_of_a_glimpse_sends_only_its_rows(client, login, users, many_jobs, other):
    login("admin")
    body = client.get(LIST).content.decode()
    rows = job_views.FIRST_VIEW_ROWS
    url = unescape(re.search(rf'hx-get="({reverse("jobs:active", args=[many_jobs.pk])}[^"]*)"', body)[1])
    assert url.endswith(f"?page=1&rows={rows}")
    shown, hidden = (Job.objects.get(pk=pk) for pk in in_order(many_jobs)[rows - 1: rows + 1])
    for job in (shown, hidden):
        make_execution(job, users["IpsUser"], ips_state="Running")
    answer = client.get(url, **HTMX).content.decode()
    assert re.findall(r'id="action-(\d+)" hx-swap-oob', answer) == [str(shown.pk)]


def test_the_poll_never_calls_ips(client, login, users, job, synced, ips_emulator):
    login("IpsUser")
    make_execution(job, users["IpsUser"], ips_state="Running")
    before = len(ips_emulator.state.calls)
    assert list(_poll(client, synced)) == [job.pk]
    assert len(ips_emulator.state.calls) == before


def _count(client, url, params) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params, **HTMX).status_code == 200
    return len(queries)


def test_the_polls_queries_do_not_grow_with_jobs_or_runs(client, login, users, synced, django_assert_max_num_queries):
    login("IpsUser")
    jobs = list(Job.objects.filter(company=synced).order_by("name"))
    url = reverse("jobs:active", args=[synced.pk])
    make_execution(jobs[0], users["IpsUser"], ips_state="Running")
    few = _count(client, url, {})
    Job.objects.bulk_create(Job(company=synced, handle=f"47|More {i}|", name=f"More {i}") for i in range(80))
    for job in jobs[1:]:
        make_execution(job, users["IpsUser"], ips_state="Running")
    with django_assert_max_num_queries(few):
        client.get(url, **HTMX)
    # Nothing changed: fewer still.
    busy = {"busy": [j.pk for j in jobs]}
    assert _count(client, url, busy) < few


@pytest.mark.parametrize("params", [{}, {"q": "o"}, {"open": "all"}], ids=["first", "search", "open"])
def test_the_first_views_queries_do_not_grow_with_companies_or_jobs(params, client, login, users, synced, other,
                                                                    django_assert_max_num_queries):
    login("admin")
    if params.get("open"):
        params = {"open": [synced.pk, other.pk]}
    for company in (synced, other):
        make_execution(Job.objects.filter(company=company).order_by("name").first(), users["admin"])
    few = _count(client, LIST, params)
    for i in range(10):
        company = Company.objects.create(connection=synced.connection, handle=f"6{i}", name=f"Company 6{i}")
        Job.objects.bulk_create(Job(company=company, handle=f"6{i}|Job {k}|", name=f"Job {k}") for k in range(30))
        make_execution(Job.objects.filter(company=company).order_by("name").first(), users["admin"], ips_state="Running")
    with django_assert_max_num_queries(few):
        body = client.get(LIST, params).content.decode()
    assert body.count("open-company") >= 9


def test_the_poll_sends_again_the_cells_of_jobs_read_from_ips_since(client, login, users, job, synced, other):
    """Paused by someone else (or marked gone by a sync) after the page was made: the next poll sends that
    job's cell, with its buttons as IPS now says; a job read before the poll's time is not sent."""
    login("IpsUser")
    body = client.get(LIST).content.decode()
    seen = re.search(r'<input type="hidden" name="seen" value="([^"]+)">', body)[1]
    assert _poll(client, synced, seen=seen) == {}
    Job.objects.filter(pk=job.pk).update(trigger_state="Paused", last_synced_at=timezone.now())
    cells = _poll(client, synced, seen=seen)
    assert list(cells) == [job.pk] and 'class="resume"' in cells[job.pk] and 'class="pause"' not in cells[job.pk]
    # Its answer carries a later time: that change is not sent again.
    answer = client.get(reverse("jobs:active", args=[synced.pk]), {"seen": seen}, **HTMX).content.decode()
    later = re.search(r'<input type="hidden" name="seen" value="([^"]+)">', answer)[1]
    assert later > seen and _poll(client, synced, seen=later) == {}
    # A mangled time is no time: nothing more than the busy cells.
    assert _poll(client, synced, seen="yesterday") == {}
