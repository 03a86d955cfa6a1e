"""Every run on the audit trail, whoever started it: pressed here, fired by the IPS schedule, or sent
by another IPS client (found by the company's watcher). History filters by who started a run and
says so on each row (and in its CSV), a job's figures count all of its runs, a run's page works for
any of them under getJobLogDetails' table, and the Active-in-IPS panel says who pressed a run here.

The runs are made in the emulator over real HTTP and recorded by the watcher (``look``), on the
emulator's manual clock: nothing waits."""

import csv
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from ipsemulator import operations
from jobs import history
from jobs.models import Execution, HistoryExport, Job

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, RUN_SECONDS, look, make_execution, press_run
from .test_export import IMMEDIATE_TASKS, download_text
from .test_history_indexes import _page_queries, _plan

URL = reverse("jobs:history")
EXPORT = reverse("jobs:history_export")
ITALIAN = {"HTTP_ACCEPT_LANGUAGE": "it-IT,it;q=0.9"}
ROBOT = "robot@example.com"
StartedBy = Execution.StartedBy

# getJobLogs (history, the run's row) and getJobLogDetails (its log lines), from the IPS reference;
# the superuser acts as IpsAdmin. TrialSiteAdmin may read history, not log details.
LOGS = {"IpsAdmin", "IpsCompanyAdmin", "IpsUser", "TrialSiteAdmin", "TrialSiteUser", "ImagePortalAdmin",
        "ImagePortalUser", "ImagePortalContrib", "ImagePortalContribUser", "admin"}
DETAILS = LOGS - {"TrialSiteAdmin"}
# stopJob: the Stop button on the run page.
STOP = LOGS - {"ImagePortalUser"}


def shown(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="execution-(\d+)"', response.content.decode())]


def row_html(body: str, pk: int) -> str:
    return re.search(rf'<tr id="execution-{pk}".*?</tr>', body, re.S)[0]


def _scheduled(job, clock, ips_emulator, outcome="success") -> Execution:
    """A run the IPS schedule fires, to its end, recorded by the watcher."""
    ips_emulator.state.jobs[job.handle].outcome = outcome
    handle = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    ips_emulator.state.jobs[job.handle].outcome = "success"
    return Execution.objects.get(company=job.company, ips_run_handle=handle)


def _by_robot(job, clock, ips_emulator) -> Execution:
    """A run another IPS client started (not executeJob from here), to its end."""
    state = ips_emulator.state
    state.add_user(ROBOT, "pw", "IpsUser", {job.company.handle: "IpsUser"})
    with state._lock:
        handle = operations.start_run(state, state.jobs[job.handle], ROBOT, state.now()).handle
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    return Execution.objects.get(company=job.company, ips_run_handle=handle)


@pytest.fixture
def runs(job, users, clock, ips_emulator):
    """Four runs of My Test Job, oldest first: two by the IPS schedule (the second with errors), one
    pressed here by the IpsUser in between, one by another IPS client; all ended and recorded."""
    first = _scheduled(job, clock, ips_emulator)
    pressed = press_run(job, users["IpsUser"], "press-here-1")
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    pressed.refresh_from_db()
    failed = _scheduled(job, clock, ips_emulator, outcome="errors")
    other = _by_robot(job, clock, ips_emulator)
    made = {"schedule": first, "here": pressed, "failed": failed, "other": other}
    assert [made[k].started_by for k in made] == ["schedule", "here", "schedule", "other"]
    assert all(r.ips_result for r in made.values()), {k: r.ips_result for k, r in made.items()}
    assert made["failed"].ips_result == "errors" and made["schedule"].ips_result == "ok"
    return made


# --- History: who started each run, and a filter by it ------------------------------------------------


def test_history_says_who_started_each_run(client, login, runs, job):
    login("IpsUser")
    response = client.get(URL)
    body = response.content.decode()
    assert shown(response) == [runs[k].pk for k in ("other", "failed", "here", "schedule")]
    assert "<th>Started by</th>" in body
    here = row_html(body, runs["here"].pk)
    assert '<td class="who" data-label="Started by">ipsuser</td>' in here
    # Pressed here: IPS's result first, the press's own outcome after it.
    assert '<span class="run-status run-status-ok">finished</span> <span class="press-outcome">request: accepted</span>' in here
    for key, label in (("schedule", "IPS schedule"), ("failed", "IPS schedule"), ("other", "another IPS client")):
        row = row_html(body, runs[key].pk)
        who = re.search(r'<td class="who"[^>]*>(.*?)</td>', row, re.S)[1]
        assert label in who and escape(runs[key].username) in who
        # Nobody pressed it: IPS's result is its status, never "accepted".
        what = re.search(r'<td class="what"[^>]*>(.*?)</td>', row, re.S)[1]
        assert "accepted" not in what and escape(runs[key].ips_result_label) in what
    assert runs["schedule"].username.lower() == job.submit_user_email.lower()
    assert runs["other"].username == ROBOT
    assert 'class="run-status run-status-bad">finished: 1 error<' in row_html(body, runs["failed"].pk)


def test_history_says_it_in_italian(client, login, runs):
    login("IpsUser")
    body = client.get(URL, **ITALIAN).content.decode()
    assert "<th>Avviata da</th>" in body
    assert "Pianificazione IPS" in row_html(body, runs["schedule"].pk)
    assert "un altro client IPS" in row_html(body, runs["other"].pk)
    assert '<option value="schedule">Pianificazione IPS</option>' in body
    assert '<option value="here">premuto qui</option>' in body
    assert '<option value="" selected>Chiunque</option>' in body


@pytest.mark.parametrize("started_by, expected", [
    ("", ["other", "failed", "here", "schedule"]),
    ("here", ["here"]),
    ("schedule", ["failed", "schedule"]),
    ("other", ["other"]),
])
def test_the_started_by_filter(started_by, expected, client, login, runs):
    login("IpsUser")
    response = client.get(URL, {"started_by": started_by})
    assert shown(response) == [runs[k].pk for k in expected]
    if started_by:
        assert f'<option value="{started_by}" selected>' in response.content.decode()


@pytest.mark.parametrize("params, expected", [
    ({"started_by": "schedule", "ips_result": "errors"}, ["failed"]),
    ({"started_by": "schedule", "ips_result": "ok"}, ["schedule"]),
    ({"started_by": "schedule", "outcome": "accepted", "range": "24h"}, ["failed", "schedule"]),
    ({"started_by": "here", "who": "mine"}, ["here"]),
    ({"started_by": "schedule", "who": "mine"}, []),
    ({"started_by": "other", "user": ROBOT}, ["other"]),
    ({"started_by": "here", "user": ROBOT}, []),
    ({"started_by": "schedule", "job_name": "my test"}, ["failed", "schedule"]),
    ({"started_by": "schedule", "company": "47"}, ["failed", "schedule"]),
    ({"started_by": "schedule", "job": "my test job"}, ["failed", "schedule"]),
    ({"started_by": "schedule", "sort": "-ips_runtime"}, None),
])
def test_the_started_by_filter_combines_with_the_others(params, expected, client, login, runs, job):
    params = {**params}
    if params.get("company") == "47":
        params["company"] = str(job.company_id)
    if params.get("job") == "my test job":
        params["job"] = str(job.pk)
    # "Mine" is the IpsUser's own; the superuser pressed nothing.
    for actor in ("IpsUser",) if "who" in params else ("IpsUser", "admin"):
        login(actor)
        response = client.get(URL, params)
        assert response.status_code == 200
        if expected is None:  # by runtime: the schedule's runs, longest first
            rows = Execution.objects.filter(pk__in=shown(response))
            assert {r.started_by for r in rows} == {"schedule"} and len(rows) == 2
            runtimes = [Execution.objects.get(pk=pk).ips_runtime_ms for pk in shown(response)]
            assert runtimes == sorted(runtimes, reverse=True)
        else:
            assert shown(response) == [runs[k].pk for k in expected], (actor, params)


def test_the_filter_is_in_the_address_and_refuses_what_it_does_not_know(client, login, runs):
    login("IpsUser")
    response = client.get(URL, {"started_by": "schedule", "outcome": ""}, **HTMX)
    assert response["HX-Push-Url"] == URL + "?started_by=schedule"
    body = client.get(URL, {"started_by": "someone"}).content.decode()
    assert "Select a valid choice" in body and not shown(client.get(URL, {"started_by": "someone"}))


def test_the_started_by_filter_pages_by_keyset(client, login, runs, job, users, clock, ips_emulator, monkeypatch):
    for _ in range(3):
        _scheduled(job, clock, ips_emulator)
        make_execution(job, users["IpsUser"], "denied")
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    login("IpsUser")
    expected = list(Execution.objects.filter(started_by="schedule").order_by("-requested_at", "-id")
                    .values_list("pk", flat=True))
    assert len(expected) == 5
    pages, url = [], f"{URL}?started_by=schedule"
    while url:
        body = client.get(url).content.decode()
        pages.append([int(pk) for pk in re.findall(r'<tr id="execution-(\d+)"', body)])
        link = re.search(r'<a href="([^"]+)"[^>]*rel="next"', body)
        url = link and link[1].replace("&amp;", "&")
    assert [pk for p in pages for pk in p] == expected and [len(p) for p in pages] == [2, 2, 1]
    assert "5 executions" in client.get(URL, {"started_by": "schedule"}).content.decode()


# (actor, filters, the index SQLite reads the page from)
INDEXED = [
    ("admin", {"started_by": "schedule"}, "execution_started_by_recent"),
    ("admin", {"started_by": "here", "page": "last"}, "execution_started_by_recent"),
    ("IpsUser", {"started_by": "schedule"}, "execution_started_by_recent"),
    ("IpsUser", {"started_by": "other", "range": "7d"}, "execution_started_by_recent"),
    # Combined with another filter of its own index: either serves the page in order.
    ("IpsUser", {"started_by": "schedule", "outcome": "accepted"}, "execution_"),
    ("admin", {"started_by": "schedule", "ips_result": "errors"}, "execution_"),
    ("IpsUser", {"started_by": "here", "who": "mine"}, "execution_"),
]


@pytest.mark.parametrize("actor, params, index", INDEXED,
                         ids=lambda v: v if isinstance(v, str) else "&".join(f"{k}={x}" for k, x in v.items()))
def test_the_started_by_page_is_read_from_an_index_in_its_order(actor, params, index, client, login, runs):
    login(actor)
    for sql in _page_queries(client, params):
        text = "\n".join(plan := _plan(sql))
        if connection.vendor == "postgresql":
            assert "Sort" not in text and "Seq Scan on jobs_execution" not in text, text
        else:
            assert "TEMP B-TREE" not in text, text
            assert all("USING" in line for line in plan if "jobs_execution" in line), text
            assert f"INDEX {index}" in text, text


def test_the_export_says_who_started_each_run(client, login, runs, settings, tmp_path,
                                              django_capture_on_commit_callbacks):
    settings.TASKS = IMMEDIATE_TASKS
    settings.EXPORTS_DIR = tmp_path / "exports"

    def exported(url):
        # The export is a background task: run it as the worker would once the POST commits, then download.
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url)
        text = download_text(client, response)[1:]
        return list(csv.DictReader(io.StringIO(text)))

    login("IpsUser")
    rows = exported(f"{EXPORT}?started_by=schedule")
    assert [int(r["id"]) for r in rows] == [runs["failed"].pk, runs["schedule"].pk]
    assert {r["started by"] for r in rows} == {"schedule"}
    assert rows[0]["user"] == runs["failed"].username and rows[0]["IPS result"] == "errors"
    everything = exported(EXPORT)
    assert {r["id"]: r["started by"] for r in everything} == {str(r.pk): r.started_by for r in runs.values()}
    assert HistoryExport.objects.order_by("pk").first().filters == {"started_by": "schedule"}


# --- A job's page: figures over every run, and who started each ------------------------------------


def test_the_figures_count_runs_only_the_ips_schedule_started(client, login, job, clock, ips_emulator):
    ok = _scheduled(job, clock, ips_emulator)
    failed = _scheduled(job, clock, ips_emulator, outcome="errors")
    assert not Execution.objects.filter(job=job, started_by="here").exists()
    stats = history.job_stats(job)
    assert (stats.runs, stats.ended, stats.succeeded, stats.failed, stats.timed) == (2, 2, 1, 1, 2)
    assert stats.success_rate == 50 and stats.avg_runtime is not None and stats.p95_runtime is not None
    assert history.last_failure(job) == failed
    assert history.company_summaries([job.company_id])[job.company_id].runs == 2
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert "Never run from the dashboard." not in body
    assert "Its latest 2 runs" in body and "50 %" in body and "1 of 2 ended" in body
    assert reverse("jobs:run_detail", args=[failed.pk]) in body  # the last failure
    recent = body[body.index('id="recent-runs"'):]
    assert "<th>Started by</th>" in recent
    for run in (ok, failed):
        row = row_html(recent, run.pk)
        assert "IPS schedule" in row and escape(run.username) in row and ">accepted<" not in row
    # The jobs page's summary of the last 24 hours counts them too.
    listing = client.get(reverse("jobs:list")).content.decode()
    assert "Last 24 h: <strong>2</strong> runs" in listing


def test_the_job_page_shows_every_kind_of_run(client, login, runs, job):
    stats = history.job_stats(job)
    assert (stats.runs, stats.succeeded, stats.failed) == (4, 3, 1)
    assert history.last_failure(job) == runs["failed"]
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    recent = body[body.index('id="recent-runs"'):]
    assert re.findall(r'<tr id="execution-(\d+)"', recent) == [str(runs[k].pk) for k in ("other", "failed", "here", "schedule")]
    assert "ipsuser" in row_html(recent, runs["here"].pk) and "another IPS client" in row_html(recent, runs["other"].pk)
    italian = client.get(reverse("jobs:job_detail", args=[job.pk]), **ITALIAN).content.decode()
    assert "<th>Avviata da</th>" in italian and "chiunque le abbia avviate" in italian


# --- A run's page: any run, getJobLogDetails' table -----------------------------------------------------


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_run_details_of_a_scheduled_run_follow_get_job_log_details(actor, client, login, job, clock, ips_emulator):
    run = _scheduled(job, clock, ips_emulator)
    assert run.user is None and run.request_id == "" and run.ips_run_handle
    login(actor)
    response = client.get(reverse("jobs:run_detail", args=[run.pk]))
    body = response.content.decode()
    if actor == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    elif actor not in LOGS:
        assert response.status_code == 404 and "My Test Job" not in body
    elif actor in DETAILS:
        assert response.status_code == 200
        assert escape(run.ips_run_handle) in body and "BeginImageServingPublish" in body
        assert "IPS schedule" in body and escape(run.username) in body
        assert "<dt>Request id</dt>" not in body and " as no role" not in body
    else:  # TrialSiteAdmin: the row, not its log lines
        assert response.status_code == 200 and "IPS schedule" in body
        assert f"Your role {actor} in company 47 cannot see job log details (getJobLogDetails)." in body
        assert "BeginImageServingPublish" not in body


def test_a_scheduled_runs_page_in_italian(client, login, job, clock, ips_emulator):
    run = _scheduled(job, clock, ips_emulator)
    login("IpsUser")
    body = client.get(reverse("jobs:run_detail", args=[run.pk]), **ITALIAN).content.decode()
    assert "Avviata da" in body and "Pianificazione IPS" in body and "Trovata in IPS" in body
    english = client.get(reverse("jobs:run_detail", args=[run.pk])).content.decode()
    assert "Found in IPS" in english and "IPS started this run by itself; nobody pressed Run here." in english


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_stop_is_offered_on_a_found_run_only_while_it_is_open(actor, client, login, job, clock, ips_emulator):
    handle = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    run = Execution.objects.get(ips_run_handle=handle)
    assert run.is_open and run.ips_state == "Running"
    stop = reverse("jobs:stop", args=[job.pk])
    login(actor)
    response = client.get(reverse("jobs:run_detail", args=[run.pk]))
    if actor == ANONYMOUS:
        assert response.status_code == 302
        return
    if actor not in LOGS:
        assert response.status_code == 404
        return
    assert (stop in response.content.decode()) is (actor in STOP)
    clock.advance(RUN_SECONDS)
    look(job.company)
    run.refresh_from_db()
    assert not run.is_open
    assert stop not in client.get(reverse("jobs:run_detail", args=[run.pk])).content.decode()


def test_stop_is_never_offered_on_a_refusal_or_a_stop(client, login, job, users, clock, ips_emulator):
    handle = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    refused = press_run(job, users["IpsUser"], "while-running")
    assert refused.outcome == "already_running"
    login("IpsUser")
    stop = reverse("jobs:stop", args=[job.pk])
    assert stop not in client.get(reverse("jobs:run_detail", args=[refused.pk])).content.decode()
    assert client.post(stop, **HTMX).status_code == 200
    stopping = Execution.objects.get(operation="stopJob")
    assert stopping.ips_run_handle == handle
    assert stop not in client.get(reverse("jobs:run_detail", args=[stopping.pk])).content.decode()


# --- Active in IPS: who pressed a run here, how IPS started the others -------------------------------


def test_the_active_panel_says_who_pressed_a_run_here(client, login, job, users, clock, ips_emulator):
    other_job = Job.objects.filter(company=job.company).exclude(pk=job.pk).filter(
        handle__in=list(ips_emulator.state.jobs)).order_by("pk").first()
    pressed = press_run(job, users["IpsUser"], "active-1")
    ips_emulator.state.fire_schedule(other_job.handle)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    pressed.refresh_from_db()
    assert pressed.ips_run_handle and pressed.ips_state == "Running"
    login("IpsAdmin")
    body = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX).content.decode()
    panel = body[: body.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", panel, re.S)[1:]
    by = {re.findall(r"<td>(.*?)</td>", r, re.S)[0]: re.findall(r"<td>(.*?)</td>", r, re.S)[4] for r in rows}
    assert by[escape(pressed.ips_run_name)] == "ipsuser"
    [scheduled] = [k for k in by if k != escape(pressed.ips_run_name)]
    assert by[scheduled] == f"{escape(other_job.submit_user_email)} (IPS schedule)"


def test_a_started_by_pages_queries_do_not_grow_with_the_rows(client, login, runs, job, users, clock, ips_emulator,
                                                              django_assert_max_num_queries):
    login("IpsUser")
    with CaptureQueriesContext(connection) as few:
        client.get(URL, {"started_by": "schedule"})
    for _ in range(3):
        _scheduled(job, clock, ips_emulator)
    for i in range(history.PAGE_SIZE + 5):
        make_execution(job, users["IpsUser"], "denied")
    with django_assert_max_num_queries(len(few)):
        client.get(URL, {"started_by": "schedule"})
