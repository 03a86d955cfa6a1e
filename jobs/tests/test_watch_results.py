"""Every run's result, recorded on its audit row by its company's watcher (services.watch), and what
the pages show of it without asking IPS: driven look by look (``look(company)``) or round by round
(``watch.watch_round``) against the emulator over real HTTP, in the real shapes of each API version,
on the emulator's manual clock (no sleeps).

A run's log exists while the run goes on (Begin…, partial counts, no endDate), earlier runs of the
same job have logs too, a busy company has more logs than one page, and before 4.0 getJobLogs has no
endDate at all (the final log comes by the run's handle from getJobLogDetails). The browser's status
poll and the Active in IPS panel read the database: they make no IPS call.
"""

import datetime as dt
import html
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection as db_connection, transaction
from django.urls import reverse
from django.utils import timezone

from ipsemulator import operations
from ipsemulator.records import Membership
from jobs import ips, ipsversions
from jobs.models import Company, CompanyWatch, Connection, Execution, Job
from jobs.services import actions, base, connections, sync, watch

from conftest import wait_for

from .conftest import HTMX, RUN_SECONDS, look, press_run

#: Every bundled version: each speaks only the parameters it declares, to an emulator that refuses the rest.
VERSIONS = [v.key for v in ipsversions.VERSIONS]
VERSION_IDS = [k or "unversioned" for k in VERSIONS]
R = Execution.IpsResult
NIGHTLY = "47|Nightly | Publish|"
BOLD = "47|<b>Bold</b> Upload|"
UBERSICHT = "47|Übersicht Publish|"


@pytest.fixture(params=VERSIONS, ids=VERSION_IDS)
def version(request, connection):
    connection.api_version = request.param
    connection.save()
    return request.param


def _status(client, job):
    """The browser's poll of the job's last run (jobs:status)."""
    response = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    return response.status_code, response.content.decode()


def _panel(client, company):
    """The browser's poll of the Active in IPS panel (jobs:active)."""
    response = client.get(reverse("jobs:active", args=[company.pk]), **HTMX)
    return response.status_code, response.content.decode()


def _panel_rows(body):
    """The panel's rows: {run name: by}."""
    rows = {}
    for row in re.findall(r"<tr>\s*(.*?)</tr>", body.split('<table class="active">', 1)[-1], re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        if len(cells) >= 5:
            rows[html.unescape(cells[0].strip())] = html.unescape(cells[4].strip())
    return rows


def _calls(ips_emulator, operation=None, company="47"):
    return ips_emulator.state.calls_matching(operation=operation, company_handle=company)


def _final_log(ips_emulator, job, handle):
    [final] = [log for log in ips_emulator.state.job_logs(job.handle) if log.handle == handle]
    return final


def _same_time(a, b):
    """The same instant, as IPS's wire carries it (milliseconds)."""
    return a is not None and b is not None and abs((a - b).total_seconds()) < 0.001


def _rows(job):
    return list(Execution.objects.filter(job=job, operation="executeJob").order_by("pk"))


def run_handles(emulator):
    with emulator.state._lock:
        return {r.handle for r in emulator.state.runs}


def forget_runs(emulator, handles):
    """IPS loses these runs and their logs (purged): it lists them nowhere any more, and a handle of
    theirs is an unknown handle to it (30001, as the emulator answers for any unknown handle)."""
    with emulator.state._lock:
        emulator.state.runs[:] = [r for r in emulator.state.runs if r.handle not in handles]


def _watch(company):
    return CompanyWatch.objects.get(pk=company.pk)


# --- A pressed run, to its own final log, in every version ---------------------------------------


def test_a_pressed_run_is_recorded_from_its_own_final_log(version, clock, client, login, users, job, ips_emulator):
    earlier = {log.handle for log in ips_emulator.state.job_logs(job.handle)}
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    assert execution.outcome == "accepted" and not execution.ips_run_handle  # the press names no run

    look(job.company)  # named from IPS's own lists
    execution.refresh_from_db()
    assert execution.ips_run_handle.startswith("47||My Test Job_")
    assert execution.ips_run_name == execution.ips_run_handle.split("||", 1)[1]
    assert execution.ips_run_handle not in earlier
    assert execution.started_by == Execution.StartedBy.HERE and execution.username == "ipsuser"

    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_state == "Running" and 0 < execution.ips_progress < 100
    assert execution.ips_log_type.startswith("Begin") and execution.ips_ended_at is None
    assert execution.ips_result == "" and execution.is_open
    code, body = _status(client, job)
    assert code == 200 and "Running" in body and "so far" in body

    clock.advance(RUN_SECONDS / 2 + 0.01)  # over, but still listed (as Done) for a while
    assert [r["state"] for r in ips_emulator.state.active_runs(job.handle)] == ["Done"]
    calls = len(ips_emulator.state.calls)
    code, body = _status(client, job)
    assert code == 200 and "Running" in body  # the poll shows what the watcher saw: it asks IPS nothing
    assert len(ips_emulator.state.calls) == calls
    assert look(job.company).ended == 1
    execution.refresh_from_db()
    final = _final_log(ips_emulator, job, execution.ips_run_handle)
    assert execution.ips_result == R.OK and execution.ips_state == "Done" and execution.ips_progress == 100
    assert _same_time(execution.ips_ended_at, final.end)
    assert execution.ips_success_count == final.counts["success"] > 0
    calls = len(ips_emulator.state.calls)
    code, body = _status(client, job)
    assert code == 286  # the poll stops: the result is recorded
    assert f"{execution.ips_success_count} ok" in body and "ended" in body
    assert len(ips_emulator.state.calls) == calls

    clock.advance(RUN_SECONDS)  # gone from getActiveJobs: still this run, still one row
    assert look(job.company).ended == 0
    assert _rows(job) == [execution]
    assert Execution.objects.get(pk=execution.pk).ips_result == R.OK


def test_a_run_is_never_recorded_finished_while_ips_lists_it_active(version, clock, users, job, ips_emulator):
    execution = press_run(job, users["IpsUser"])
    seen = []
    for _ in range(14):
        look(job.company)
        execution.refresh_from_db()
        running_in_ips = any(r["state"] != "Done" for r in ips_emulator.state.active_runs(job.handle))
        recorded_active = execution.ips_state not in ("", "Done")
        assert not (running_in_ips and execution.ips_result), (execution.ips_state, execution.ips_result)
        assert not (recorded_active and execution.ips_result)
        seen.append((recorded_active, bool(execution.ips_result)))
        clock.advance(RUN_SECONDS / 10)
    assert (True, False) in seen and (False, True) in seen
    assert execution.ips_result == R.OK


def test_a_press_gets_its_own_run_never_an_earlier_one(version, clock, users, job, ips_emulator):
    """Earlier runs of the job have logs too (the emulator's history, and one IPS's schedule fired a
    moment ago): never taken for the press's, in any version (before 4.0 no log names its job)."""
    earlier = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS * 2)  # it ended; nobody looked yet
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 3)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_run_handle != earlier
    assert execution.ips_result == R.OK
    assert execution.ips_started_at >= execution.ips_clock_at
    [scheduled] = [r for r in _rows(job) if r.pk != execution.pk]
    assert (scheduled.ips_run_handle, scheduled.started_by) == (earlier, Execution.StartedBy.SCHEDULE)
    assert scheduled.ips_result == R.OK


# --- The result, its counts and runtime -----------------------------------------------------------


def test_the_watcher_process_records_the_result_with_no_browser_open(
    clock, job, users, ips_emulator, dashboard_clock, settings, django_capture_on_commit_callbacks
):
    """The rounds of `manage.py watch_ips` alone: the press wakes its company, each round looks at what
    is due, the result lands on the row."""
    with django_capture_on_commit_callbacks(execute=True):
        execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    clock.advance(RUN_SECONDS / 2)
    looked = [r.company for r in watch.watch_round("watcher-1")]
    assert job.company in looked
    execution.refresh_from_db()
    assert execution.ips_state == "Running" and 0 < execution.ips_progress < 100
    assert execution.ips_result == "" and execution.ips_log_type.startswith("Begin")
    # Not due again before its interval (a run is open: the short one).
    assert watch.watch_round("watcher-1") == []
    clock.advance(RUN_SECONDS)
    dashboard_clock.advance(settings.IPS_WATCH_INTERVAL)
    [result] = [r for r in watch.watch_round("watcher-1") if r.company == job.company]
    assert result.ended == 1 and not result.error
    execution.refresh_from_db()
    final = _final_log(ips_emulator, job, execution.ips_run_handle)
    assert execution.ips_result == R.OK and execution.ips_result_label == "finished"
    assert execution.ips_success_count == final.counts["success"] > 0
    assert execution.ips_total_count == final.counts["total"]
    assert execution.ips_error_count == 0 and execution.ips_warning_count == 0 and execution.ips_fatal is False
    assert execution.ips_runtime_ms == pytest.approx(RUN_SECONDS * 1000, abs=1)
    assert execution.ips_ended_at - execution.ips_started_at == dt.timedelta(seconds=RUN_SECONDS)
    assert execution.ips_runtime == dt.timedelta(seconds=RUN_SECONDS)


@pytest.mark.parametrize(
    "outcome, result, label",
    [
        ("success", "ok", "finished"),
        ("warnings", "warnings", "finished: 1 warning"),
        ("errors", "errors", "finished: 1 error"),
        ("fatal", "fatal", "fatal error"),
    ],
)
def test_the_result_says_how_the_run_went(outcome, result, label, clock, job, users, ips_emulator):
    ips_emulator.state.jobs[job.handle].outcome = outcome
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    execution.refresh_from_db()
    assert execution.outcome == "accepted"
    assert (execution.ips_result, execution.ips_result_label) == (result, label)
    final = _final_log(ips_emulator, job, execution.ips_run_handle)
    assert (execution.ips_success_count, execution.ips_warning_count, execution.ips_error_count) == (
        final.counts["success"], final.counts["warning"], final.counts["error"])
    assert execution.ips_fatal is (outcome == "fatal")


@pytest.mark.parametrize("stop_fate, result, label",
                         [("accepted", "stopped", "stopped"), ("refused", "ok", "finished")])
def test_a_run_ends_stopped_when_a_stop_of_it_was_accepted(stop_fate, result, label, clock, job, users, ips_emulator):
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    clock.advance(RUN_SECONDS / 2)
    if stop_fate == "refused":
        ips_emulator.state.inject("soap_fault", operation="stopJob", code=30000, reason="Busy")
    user = users["IpsUser"]
    stop = actions.stop_job(job, job.company.access(user, "stopJob"), user, base.RequestInfo("stop-1")).execution
    assert stop.outcome == stop_fate, stop.message
    assert stop.ips_run_handle == Execution.objects.get(pk=execution.pk).ips_run_handle
    clock.advance(RUN_SECONDS)
    look(job.company)
    execution.refresh_from_db()
    assert (execution.ips_result, execution.ips_result_label) == (result, label)


def test_the_result_is_final_once_recorded(clock, job, users):
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    row = Execution.objects.get(pk=execution.pk)
    assert row.ips_result == R.OK
    row.ips_result = "fatal"
    with pytest.raises(PermissionError, match="final"):
        row.save()
    row = Execution.objects.get(pk=execution.pk)
    row.message = "rewritten"
    with pytest.raises(PermissionError, match="cannot change"):
        row.save()


def test_only_an_accepted_row_takes_an_ips_result(job, users):
    refused = press_run(job, users["IpsCompanyAdmin"])
    row = Execution.objects.get(pk=refused.pk)
    row.ips_result = "ok"
    with pytest.raises(PermissionError, match="final"):
        row.save()


@pytest.mark.postgres
def test_postgresql_keeps_the_recorded_result_final(clock, job, users):
    execution = press_run(job, users["IpsUser"])
    with db_connection.cursor() as cursor:  # the watcher's own kind of write, through SQL: allowed
        cursor.execute("UPDATE jobs_execution SET ips_state = 'Running' WHERE id = %s", [execution.pk])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    assert Execution.objects.get(pk=execution.pk).ips_result == R.OK
    for sql in (
        "UPDATE jobs_execution SET ips_result = 'fatal' WHERE id = %s",
        "UPDATE jobs_execution SET ips_success_count = 0 WHERE id = %s",
        "UPDATE jobs_execution SET message = 'x' WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="audit trail"), transaction.atomic():
            with db_connection.cursor() as cursor:
                cursor.execute(sql, [execution.pk])


@pytest.mark.postgres
def test_postgresql_refuses_an_ips_result_on_a_refused_row(job, users):
    refused = press_run(job, users["IpsCompanyAdmin"])
    with pytest.raises(DatabaseError, match="audit trail"), transaction.atomic():
        with db_connection.cursor() as cursor:
            cursor.execute("UPDATE jobs_execution SET ips_result = 'ok' WHERE id = %s", [refused.pk])


# --- The deadline: "no result from IPS", only after asking IPS once more ----------------------------


def test_past_the_deadline_a_run_ips_shows_nothing_of_has_no_result_after_one_more_look(
    clock, client, login, job, users, ips_emulator, dashboard_clock, settings
):
    before = run_handles(ips_emulator)
    execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    forget_runs(ips_emulator, run_handles(ips_emulator) - before)  # accepted, but no run of it ever shows
    clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)  # in IPS's clock
    look(job.company)
    assert Execution.objects.get(pk=execution.pk).is_open  # past the grace: accepted runs wait for the deadline
    dashboard_clock.advance(settings.IPS_FOLLOW_DEADLINE)
    # Past the deadline, nothing settles it but a look at IPS: not the browser's polls.
    login("IpsUser")
    calls = len(ips_emulator.state.calls)
    assert _status(client, job)[0] == 200
    assert _panel(client, job.company)[0] == 200
    assert len(ips_emulator.state.calls) == calls
    assert Execution.objects.get(pk=execution.pk).is_open
    assert look(job.company).ended == 1
    asked = [c["operation"] for c in ips_emulator.state.calls[calls:]]
    assert "getActiveJobs" in asked and "getJobLogs" in asked  # IPS was asked once more first
    execution.refresh_from_db()
    assert execution.ips_result == R.NO_RESULT
    assert execution.ips_result_label == "no result from IPS after 24 h"
    code, body = _status(client, job)
    assert code == 286 and "no result from IPS after 24 h" in body


@pytest.mark.parametrize("where", ["listed as done", "only by its handle"])
def test_a_run_ips_finished_just_before_the_deadline_gets_its_real_result(
    where, clock, job, users, ips_emulator, dashboard_clock, settings
):
    """The watcher did not see the end in time (down, or the run was long): past the deadline it asks
    IPS once more, and IPS's answer wins over "no result"."""
    deadline = settings.IPS_FOLLOW_DEADLINE.total_seconds()
    ips_emulator.state.job_duration = deadline - 60
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_state in ("New", "Running")
    if where == "listed as done":
        clock.advance(deadline - 30)  # ended 30 s ago; getActiveJobs still lists it as Done
    else:
        # Newer runs move the watcher's place in the logs past this run's start; the run ends, and
        # getActiveJobs forgets it: only getJobLogDetails, by its handle, still knows how it ended.
        clock.advance(600)
        ips_emulator.state.job_duration = RUN_SECONDS
        ips_emulator.state.fire_schedule(NIGHTLY)
        look(job.company)
        clock.advance(deadline * 1.5)
        assert not ips_emulator.state.active_runs(job.handle)
    calls = len(ips_emulator.state.calls)
    dashboard_clock.advance(settings.IPS_FOLLOW_DEADLINE + dt.timedelta(seconds=1))
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == R.OK, execution.ips_result_label
    assert execution.ips_success_count and execution.ips_ended_at is not None
    if where == "only by its handle":
        by_handle = [c["job_handle"] for c in ips_emulator.state.calls[calls:] if c["operation"] == "getJobLogDetails"]
        assert execution.ips_run_handle in by_handle


def test_a_run_ips_has_forgotten_does_not_stop_its_companys_watcher(
    clock, job, users, ips_emulator, dashboard_clock, settings
):
    """A named run IPS no longer has (its logs purged): IPS answers its handle as an unknown one (30001),
    as for any unknown handle. That is IPS saying nothing of the run, not a failed look: the company's
    other runs are still recorded, and past the deadline the run has no result."""
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle
    forget_runs(ips_emulator, {execution.ips_run_handle})
    other = press_run(Job.objects.get(company=job.company, handle=NIGHTLY), users["IpsUser"], "other-1")
    assert other.outcome == "accepted", other.message
    clock.advance(RUN_SECONDS * 2)
    result = look(job.company, ok=False)
    assert not result.error, result.error
    assert Execution.objects.get(pk=other.pk).ips_result == R.WARNINGS
    assert Execution.objects.get(pk=execution.pk).is_open  # before the deadline: still open
    dashboard_clock.advance(settings.IPS_FOLLOW_DEADLINE + dt.timedelta(seconds=1))
    result = look(job.company, ok=False)
    assert not result.error, result.error
    assert Execution.objects.get(pk=execution.pk).ips_result == R.NO_RESULT


# --- Before 4.0: no endDate in getJobLogs -----------------------------------------------------------


def test_before_4_0_the_end_of_a_run_comes_from_get_job_log_details(clock, users, job, ips_emulator, connection):
    connection.api_version = ""
    connection.save()
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle
    clock.advance(RUN_SECONDS * 3)  # over, and gone from getActiveJobs
    client = ips.client_for(connection)
    [summary] = [log for log in client.get_job_logs("47") if log.job_handle == execution.ips_run_handle]
    assert summary.end_date is None and not summary.is_final  # pre-4.0 getJobLogs never says
    calls = len(ips_emulator.state.calls)
    assert look(job.company).ended == 1
    execution.refresh_from_db()
    final = _final_log(ips_emulator, job, execution.ips_run_handle)
    assert execution.ips_result == R.OK and _same_time(execution.ips_ended_at, final.end)
    assert execution.ips_success_count == final.counts["success"]
    assert execution.ips_runtime_ms == pytest.approx(RUN_SECONDS * 1000, abs=1)
    details = [c for c in ips_emulator.state.calls[calls:] if c["operation"] == "getJobLogDetails"]
    assert [c["job_handle"] for c in details] == [execution.ips_run_handle]


# --- Busy companies: logs paged, one getActiveJobs per look ----------------------------------------


@pytest.fixture
def busy(users, ips_emulator, connection):
    """Company 60 (Busy Bee Studio), synced, with IpsUser in it."""
    service = ips_emulator.state.users["service@example.com"]
    service.memberships["60"] = Membership("60", "IpsUser")
    company = Company.objects.create(connection=connection, handle="60", name="Busy Bee Studio")
    assert not sync.sync_company(company).error
    users["IpsUser"].memberships.create(company=company, role="IpsUser")
    return company


def test_a_runs_result_is_found_among_more_than_fifty_newer_ones(clock, users, ips_emulator, connection, busy):
    """After our run, 60 more runs of the company's other jobs, all over before the watcher looks."""
    ours = Job.objects.get(company=busy, handle="60|Quarterly Archive|")
    others = list(Job.objects.filter(company=busy).exclude(pk=ours.pk))
    execution = press_run(ours, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    clock.advance(RUN_SECONDS * 2)
    client = ips.client_for(connection)
    for i in range(60):
        client.execute_job("60", others[i % len(others)].handle)
        clock.advance(RUN_SECONDS * 2)
    newest = client.get_job_logs("60", sort_by="StartDate", sort_direction="Descending", num_rows=50)
    calls = len(_calls(ips_emulator, "getActiveJobs", "60"))
    result = look(busy)
    assert len(_calls(ips_emulator, "getActiveJobs", "60")) == calls + 1
    execution.refresh_from_db()
    assert execution.ips_run_handle not in {log.job_handle for log in newest}
    assert execution.ips_result == R.OK and execution.ips_run_handle.startswith("60||Quarterly Archive_")
    assert result.matched == 1
    # The 60 newer runs (and the company's earlier ones) each got a row of their own, with its result.
    later = [log.handle for log in ips_emulator.state.job_logs()
             if log.company == "60" and log.start > execution.ips_started_at and log.handle != execution.ips_run_handle]
    assert len(later) == 60
    assert Execution.objects.filter(company=busy, ips_run_handle__in=later, started_by="other").count() == 60
    assert Execution.objects.filter(company=busy, started_by=Execution.StartedBy.HERE).count() == 1
    assert not Execution.objects.filter(company=busy, ips_result="").exists()


def test_logs_are_paged_by_start_date(clock, users, job, ips_emulator, monkeypatch):
    """More runs started since the last look than one page holds: the next page starts where the last ended."""
    monkeypatch.setattr(watch, "LOG_PAGE_ROWS", 2)
    look(job.company)  # the watcher's place in the logs is set
    client = ips.client_for(job.company.connection)
    for handle in (NIGHTLY, BOLD, UBERSICHT):  # three runs of other jobs start first, then ours
        client.execute_job("47", handle)
        clock.advance(1)
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 3)  # all over, and gone from getActiveJobs: only the logs tell
    assert not ips_emulator.state.active_runs()
    pages = len(_calls(ips_emulator, "getJobLogs"))
    look(job.company)
    assert len(_calls(ips_emulator, "getJobLogs")) - pages >= 2
    execution.refresh_from_db()
    [ours] = [log for log in ips_emulator.state.job_logs(job.handle) if log.start >= execution.ips_clock_at]
    assert execution.ips_run_handle == ours.handle and execution.ips_result == R.OK
    for handle in (NIGHTLY, BOLD, UBERSICHT):
        [row] = Execution.objects.filter(job__handle=handle)
        assert row.ips_result and row.started_by != Execution.StartedBy.HERE


def test_a_named_runs_log_is_found_by_its_handle_whatever_started_with_it(clock, job, users, ips_emulator,
                                                                          monkeypatch):
    """More runs started in the same instant than a page of getJobLogs holds: a named run still gets its
    result (its final log by its handle)."""
    monkeypatch.setattr(watch, "LOG_PAGE_ROWS", 2)
    client = ips.client_for(job.company.connection)
    for n in range(12):
        ips_emulator.state.add_job("47", f"Burst {n}")
        client.execute_job("47", f"47|Burst {n}|")
    execution = press_run(job, users["IpsUser"])
    look(job.company)  # getActiveJobs lists them all: every run is named or found
    execution.refresh_from_db()
    assert execution.ips_run_handle
    clock.advance(RUN_SECONDS * 3)  # over, gone from getActiveJobs
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == R.OK
    # Each of the 13 runs once: the page, the instant's bigger page, or its handle read what the page missed.
    assert Execution.objects.filter(company=job.company, operation="executeJob").count() == 13


def test_more_runs_started_in_one_instant_than_a_page_holds_are_all_found(clock, job, ips_emulator, monkeypatch):
    """IPS's schedule fires several jobs at one fire time (their runs start in the same instant), and they
    are over before the next look: getActiveJobs no longer lists them, only the logs do. More of them
    than a page of getJobLogs holds: each still gets its row and result."""
    look(job.company)  # the watcher's place in the logs is set
    monkeypatch.setattr(watch, "LOG_PAGE_ROWS", 2)
    fired = []
    for n in range(5):
        ips_emulator.state.add_job("47", f"Midnight {n}")
        fired.append(ips_emulator.state.fire_schedule(f"47|Midnight {n}|"))
    clock.advance(RUN_SECONDS * 3)
    assert not ips_emulator.state.active_runs()
    look(job.company)
    look(job.company)
    found = set(Execution.objects.filter(ips_run_handle__in=fired).values_list("ips_run_handle", flat=True))
    assert sorted(found) == sorted(fired)


def test_many_runs_in_a_company_cost_one_get_active_jobs_per_look(clock, client, login, job, users, ips_emulator):
    pressed = [press_run(Job.objects.get(company=job.company, handle=h), users["IpsUser"], f"many-{n}")
               for n, h in enumerate((job.handle, NIGHTLY, BOLD))]
    assert all(p.outcome == "accepted" for p in pressed)
    ips_emulator.state.fire_schedule(UBERSICHT)
    ips_emulator.state.fire_schedule("47|Video Sync|")
    login("IpsUser")
    for step in range(4):
        active, logs = len(_calls(ips_emulator, "getActiveJobs")), len(_calls(ips_emulator, "getJobLogs"))
        look(job.company)
        assert len(_calls(ips_emulator, "getActiveJobs")) - active == 1  # one per look, not one per run
        assert len(_calls(ips_emulator, "getJobLogs")) - logs <= watch.LOG_PAGES
        # Every job's status poll and the panel: no IPS call at all.
        calls = len(ips_emulator.state.calls)
        for pk in Job.objects.filter(company=job.company).values_list("pk", flat=True):
            client.get(reverse("jobs:status", args=[pk]), **HTMX)
        _panel(client, job.company)
        assert len(ips_emulator.state.calls) == calls
        clock.advance(RUN_SECONDS / 2)
    rows = Execution.objects.filter(company=job.company, operation="executeJob")
    assert rows.count() == 5 and not rows.filter(ips_result="").exists()


# --- What the pages show, from the database ------------------------------------------------------


def test_the_active_panel_says_who_started_each_run_and_asks_ips_nothing(
    clock, client, login, job, users, ips_emulator
):
    execution = press_run(job, users["IpsUser"])
    scheduled = ips_emulator.state.fire_schedule(NIGHTLY)
    robot = ips_emulator.state.add_user("robot@example.com", "pw", "IpsUser", {"47": "IpsUser"})
    with ips_emulator.state._lock:
        by_robot = operations.start_run(ips_emulator.state, ips_emulator.state.jobs[BOLD], robot.email,
                                        ips_emulator.state.now()).handle
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    execution.refresh_from_db()
    nightly = Job.objects.get(company=job.company, handle=NIGHTLY)
    login("IpsAdmin")  # someone else looks: the panel names who started each run
    calls = len(ips_emulator.state.calls)
    code, body = _panel(client, job.company)
    assert code == 200 and len(ips_emulator.state.calls) == calls
    rows = _panel_rows(body)
    assert rows[execution.ips_run_name] == "ipsuser"
    assert rows[scheduled.split("||", 1)[1]] == f"{nightly.submit_user_email} (IPS schedule)"
    assert rows[by_robot.split("||", 1)[1]] == "robot@example.com (another IPS client)"
    assert "<b>Bold</b>" not in body  # IPS's names, escaped
    assert body.count("Running") >= 3
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    calls = len(ips_emulator.state.calls)
    code, body = _panel(client, job.company)
    assert "IPS is running nothing in this company right now." in body
    assert len(ips_emulator.state.calls) == calls


def test_a_run_a_press_of_unknown_fate_started_shows_in_the_panel(clock, client, login, job, users, ips_emulator,
                                                                 settings):
    """executeJob timed out, and IPS started the run all the same: once the watcher finds it, it is what
    IPS is running, shown like any other (with its Stop), not "nothing"."""
    settings.IPS_READ_TIMEOUT = 0.5
    ips_emulator.state.inject("latency", operation="executeJob", seconds=1.5)
    execution = press_run(job, users["IpsUser"], request_id="late-1")
    assert execution.outcome == "timed_out" and execution.is_uncertain
    wait_for(lambda: ips_emulator.state.active_runs(job.handle), "IPS to start the late run")
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_state == "Running"
    login("IpsUser")
    code, body = _panel(client, job.company)
    assert code == 200
    assert "IPS is running nothing in this company right now." not in body
    assert _panel_rows(body).get(execution.ips_run_name) == "ipsuser"
    assert reverse("jobs:stop", args=[job.pk]) in body


@pytest.mark.parametrize(
    "operation, kind",
    [
        ("getActiveJobs", "soap_fault"),
        ("getActiveJobs", "malformed_xml"),
        ("getActiveJobs", "drop_connection"),
        ("getJobLogs", "soap_fault"),
        ("getJobLogs", "http_500_html"),
        ("getJobLogDetails", "soap_fault"),  # before 4.0, where the end comes from it
    ],
)
def test_a_failed_look_shows_its_error_and_is_never_taken_for_the_end(
    operation, kind, clock, client, login, job, ips_emulator, connection
):
    if operation == "getJobLogDetails":
        connection.api_version = ""
        connection.save()
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    clock.advance(RUN_SECONDS * 3)
    params = {"code": 30000, "reason": "Busy"} if kind == "soap_fault" else {}
    ips_emulator.state.inject(kind, operation=operation, **params)
    result = look(job.company, ok=False)
    assert result.ended == 0
    assert Execution.objects.get(pk=execution.pk).ips_result == ""
    state = _watch(job.company)
    if operation == "getJobLogDetails":
        # One run's final log failing is that run's: the look goes on (its place in the logs moves),
        # and says what failed.
        assert not result.error and result.notes
        assert "could not be read" in state.last_error and "Busy" in state.last_error
    else:
        assert result.error and state.last_error == result.error
    assert state.next_look_at - state.last_look_at == watch.interval(busy=True)  # asked again soon
    calls = len(ips_emulator.state.calls)
    code, body = _status(client, job)
    assert code == 200  # never 286: a failed look is not the end
    assert "IPS could not say how the run is doing this time" in body and "asking again" in body
    code, body = _panel(client, job.company)
    assert code == 200 and "The last look at IPS failed" in body
    assert len(ips_emulator.state.calls) == calls  # neither asked IPS
    look(job.company)
    assert _watch(job.company).last_error == ""
    code, body = _status(client, job)
    assert code == 286 and "IPS log:" in body
    code, body = _panel(client, job.company)
    assert "The last look at IPS failed" not in body


def test_the_watcher_looks_often_while_a_run_is_open_and_rarely_when_idle(clock, job, users):
    look(job.company)
    state = _watch(job.company)
    assert state.next_look_at - state.last_look_at == watch.interval(busy=False)
    press_run(job, users["IpsUser"])
    look(job.company)
    state = _watch(job.company)
    assert state.next_look_at - state.last_look_at == watch.interval(busy=True)
    clock.advance(RUN_SECONDS * 2)
    assert look(job.company).ended == 1
    state = _watch(job.company)
    assert state.next_look_at - state.last_look_at == watch.interval(busy=False)
    assert watch.interval(busy=True) < watch.interval(busy=False)


def test_a_watcher_that_died_mid_look_loses_nothing(clock, job, users, dashboard_clock):
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    watch.ensure_watches()
    # A watcher took the company and died: its lease runs on for a while.
    CompanyWatch.objects.filter(pk=job.company.pk).update(
        lease_owner="dead", lease_until=timezone.now() + watch.lease_length(),
        next_look_at=timezone.now() - dt.timedelta(seconds=1),
    )
    assert [r.company for r in watch.watch_round("alive")].count(job.company) == 0
    assert Execution.objects.get(pk=execution.pk).is_open
    dashboard_clock.advance(watch.lease_length() + dt.timedelta(seconds=1))
    [result] = [r for r in watch.watch_round("alive") if r.company == job.company]
    assert result.ended == 1 and not result.error
    assert Execution.objects.get(pk=execution.pk).ips_result == R.OK
    assert _watch(job.company).lease_owner == ""


# --- Whole flows ---------------------------------------------------------------------------------


def test_a_job_name_of_1500_characters_syncs_runs_and_is_recorded(version, clock, client, login, users, company,
                                                                   ips_emulator):
    name = "Ä" * 1200 + " | <b>long</b> " + "x" * 285
    assert len(name) == 1500
    ips_emulator.state.add_job("47", name, exec_schedule="0 " * 150, time_zone="Z" * 70)
    result = sync.sync_company(company)
    assert not result.error, result.error
    job = Job.objects.get(company=company, handle=f"47|{name}|")
    assert job.name == name  # whole: IPS is called with it
    assert len(job.exec_schedule) == 255 and job.exec_schedule.endswith("…")
    assert len(result.cut) == 2 and "shortened (the jobs still run)" in str(result)
    assert "exec_schedule" in str(result) and "time_zone" in str(result)
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200, response.content[:300]
    execution = Execution.objects.get()
    assert execution.job_handle == job.handle and execution.job_name == name
    assert [c["job_handle"] for c in ips_emulator.state.calls if c["operation"] == "executeJob"] == [job.handle]
    clock.advance(RUN_SECONDS * 3)
    look(company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_result == R.OK
    assert _rows(job) == [execution]


def test_a_trickling_reply_ends_at_the_deadline_with_a_clear_message(client, login, job, ips_emulator, settings):
    settings.IPS_CONNECT_TIMEOUT = 0.2
    settings.IPS_READ_TIMEOUT = 0.3  # each byte comes in 0.05 s: only the whole-reply deadline can end it
    ips_emulator.state.inject("trickle", operation="executeJob", interval=0.05)
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 504
    row = Execution.objects.get()
    assert row.outcome == "timed_out"
    assert "did not finish within 0.5 s, the deadline for a whole reply" in row.message
    assert "may or may not have started" in row.message
    # The reply would take over ten seconds at that pace: the deadline cut it.
    assert row.duration_ms < 5000


@pytest.mark.parametrize("api_version", VERSIONS, ids=VERSION_IDS)
def test_the_demo_loads_syncs_runs_and_records_in_each_version(api_version, db, settings, clock, client,
                                                                ips_emulator):
    settings.DEBUG = True  # load_demo refuses to run without it
    call_command("load_demo", service_url=ips_emulator.service_url, api_version=api_version, stdout=io.StringIO())
    connection = Connection.objects.get(name="Local IPS emulator")
    assert connection.api_version == api_version
    ok, text = connections.check_connection(connection)
    assert ok, text
    job = Job.objects.get(company__handle="47", handle=NIGHTLY)
    client.force_login(get_user_model().objects.get(username="ipsuser"))
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    clock.advance(RUN_SECONDS * 3)
    look(job.company)
    code, body = _status(client, job)
    assert code == 286
    execution.refresh_from_db()
    final = _final_log(ips_emulator, job, execution.ips_run_handle)
    counts = final.counts
    assert f"{counts['success']} ok, {counts['error']} error" in body
    assert f"{counts['warning']} warning" in body
    assert execution.ips_result == R.WARNINGS
