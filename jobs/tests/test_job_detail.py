"""The per-job page: who sees it, its IPS facts, its figures and recent runs, at any size."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs import history
from jobs.models import Execution

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, make_execution

# actor -> status of the job's page. Seeing a job needs getScheduledJobs in its company
# (WebServiceUser and ImagePortalUser may not list jobs); no role there: no such job.
JOB_PAGE_TABLE = {
    "IpsAdmin": 200,
    "IpsCompanyAdmin": 200,
    "IpsUser": 200,
    "WebServiceUser": 403,
    "TrialSiteAdmin": 200,
    "TrialSiteUser": 200,
    "ImagePortalAdmin": 200,
    "ImagePortalUser": 403,
    "ImagePortalContrib": 200,
    "ImagePortalContribUser": 200,
    "nomember": 404,
    "othercompany": 404,
    "admin": 200,
    "anonymous": 302,
}


def test_the_job_page_table_covers_every_actor():
    assert sorted(JOB_PAGE_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_job_page_role_table(actor, client, login, users, job):
    job.description = "Secret nightly description"
    job.save()
    ran = make_execution(job, users["TrialSiteUser"], "accepted")
    login(actor)
    response = client.get(reverse("jobs:job_detail", args=[job.pk]))
    assert response.status_code == JOB_PAGE_TABLE[actor]
    body = response.content.decode()
    if response.status_code == 200:
        assert escape(job.name) in body and job.description in body
        assert f'id="execution-{ran.pk}"' in body
        return
    if actor == ANONYMOUS:
        assert response["Location"].startswith(reverse("login"))
        return
    # Refused: why, and nothing of the job.
    for secret in (job.name, job.description, "trialsiteuser", job.handle):
        assert escape(secret) not in body, (actor, secret)
    if response.status_code == 403:
        assert f"Your role {actor} in company 47 cannot list jobs (getScheduledJobs)." in body


def test_an_unknown_job_is_not_found(client, login, users):
    login("IpsUser")
    assert client.get(reverse("jobs:job_detail", args=[999_999])).status_code == 404


def _ips(execution, result, seconds):
    execution.ips_result = result
    execution.ips_runtime_ms = None if seconds is None else int(seconds * 1000)
    execution.ips_result_at = timezone.now()
    execution.save()
    return execution


@pytest.fixture
def runs(users, job):
    """Eight presses of Run and a stop, oldest first, at known times."""
    user = users["IpsUser"]
    start = timezone.now() - dt.timedelta(days=1)
    at = iter(start + dt.timedelta(minutes=i) for i in range(100))
    made = {}
    for i, secs in enumerate([1, 2, 3, 4]):
        made[f"ok{i}"] = _ips(make_execution(job, user, requested_at=next(at)), "ok", secs)
    made["warnings"] = _ips(make_execution(job, user, requested_at=next(at)), "warnings", 5)
    made["errors"] = _ips(make_execution(job, user, requested_at=next(at)), "errors", 10)
    made["refused"] = make_execution(job, user, "refused", requested_at=next(at))
    made["denied"] = make_execution(job, users["IpsCompanyAdmin"], "denied", requested_at=next(at))
    made["stop"] = make_execution(job, user, "accepted", operation="stopJob", requested_at=next(at))
    return made


def test_the_figures_of_the_latest_runs(client, login, runs, job):
    stats = history.job_stats(job)
    # Sent to IPS: the four ok, warnings, errors, refused (not the refusal made here, not the stop).
    assert (stats.runs, stats.ended, stats.succeeded, stats.warnings, stats.failed) == (7, 7, 5, 1, 2)
    assert stats.success_rate == pytest.approx(500 / 7)
    assert stats.timed == 6
    assert stats.avg_runtime == dt.timedelta(seconds=25 / 6)
    # Nearest rank: the 6th of 6 timed runs.
    assert stats.p95_runtime == dt.timedelta(seconds=10)
    assert history.last_failure(job) == runs["refused"]
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "71 %" in body and "10 s" in body and "4 s" in body
    assert reverse("jobs:run_detail", args=[runs["refused"].pk]) in body
    assert f"{reverse('jobs:history')}?job={job.pk}" in body
    # Its recent runs, newest first, the stop and the refusal included.
    ids = [int(pk) for pk in re.findall(r'<tr id="execution-(\d+)"', body)]
    assert ids[:3] == [runs["stop"].pk, runs["denied"].pk, runs["refused"].pk]


def test_the_figures_cover_a_window_of_the_latest_runs(runs, job, monkeypatch):
    monkeypatch.setattr(history, "STATS_WINDOW", 3)
    stats = history.job_stats(job)
    # The three latest sent: refused, errors, warnings.
    assert (stats.runs, stats.ended, stats.succeeded, stats.failed, stats.timed) == (3, 3, 1, 2, 2)
    assert stats.p95_runtime == dt.timedelta(seconds=10)
    assert stats.since == runs["warnings"].requested_at


def test_a_run_still_in_ips_is_not_counted_as_ended(users, job):
    make_execution(job, users["IpsUser"], "accepted")  # IPS has not said yet
    _ips(make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(hours=1)), "ok", 3)
    stats = history.job_stats(job)
    assert (stats.runs, stats.ended, stats.succeeded) == (2, 1, 1) and stats.success_rate == 100


def test_the_last_failure_is_found_however_many_runs_succeeded_since(users, job):
    failed = _ips(make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(days=30)), "fatal", 1)
    for i in range(5):
        _ips(make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(days=20 - i)), "ok", 1)
    assert history.last_failure(job) == failed
    # Stopped, warnings and no result are not failures; neither is a refusal made here.
    make_execution(job, users["IpsCompanyAdmin"], "denied")
    assert history.last_failure(job) == failed


def test_a_job_never_run_says_so(client, login, job):
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "Never run from the dashboard." in body and "No runs yet." in body


def test_the_page_shows_the_ips_facts_and_the_schedule_in_words(client, login, job):
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "every day at 00:00 PST" in body and "00 00 00 * *" in body
    assert f'data-copy="{escape(job.handle)}"' in body and "ImageServingPublish" in body
    # Run from here, like from the jobs page.
    assert reverse("jobs:run", args=[job.pk]) in body


def test_every_job_row_and_history_row_link_to_the_job_page(client, login, users, job):
    make_execution(job, users["IpsUser"], "accepted")
    login("IpsUser")
    url = reverse("jobs:job_detail", args=[job.pk])
    assert f'href="{url}"' in client.get(reverse("jobs:list")).content.decode()
    assert f'href="{url}"' in client.get(reverse("jobs:history")).content.decode()


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_job_pages_queries_do_not_grow_with_its_runs(client, login, users, job, django_assert_max_num_queries):
    login("IpsUser")
    url = reverse("jobs:job_detail", args=[job.pk])
    _ips(make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(days=2)), "errors", 2)
    few = _queries(client, url)
    for i in range(history.STATS_WINDOW + 20):
        ex = make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(minutes=i + 1))
        _ips(ex, "ok", 1 + i % 9)
    assert Execution.objects.filter(job=job).count() > history.STATS_WINDOW
    with django_assert_max_num_queries(few):
        client.get(url)
    with django_assert_max_num_queries(12):
        client.get(url, **HTMX)
