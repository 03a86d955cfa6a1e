"""Following a run by its own identity, against an emulator that answers in
the real shapes of each API version, on the emulator's clock (no sleeps).

A run's log exists while the run goes on (Begin…, partial counts, no
endDate), earlier runs of the same job have logs too, a busy company has more
logs than one page, and before 4.0 getJobLogs has no endDate at all.
"""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from ipsemulator.clock import ManualClock
from ipsemulator.records import Membership
from jobs import ips, ipsversions
from jobs.services import connections, follow, sync
from jobs.services import status as run_state
from jobs.models import Company, Connection, Execution, Job

from .conftest import make_execution, press_run

HTMX = {"HTTP_HX_REQUEST": "true"}
#: Every bundled version: each speaks only the parameters it declares, to an emulator that refuses the rest.
VERSIONS = [v.key for v in ipsversions.VERSIONS]
VERSION_IDS = [k or "unversioned" for k in VERSIONS]
RUN_SECONDS = 10.0


@pytest.fixture
def clock(ips_emulator):
    manual = ManualClock(5000.0)
    ips_emulator.state.clock = manual
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


@pytest.fixture(params=VERSIONS, ids=VERSION_IDS)
def version(request, connection):
    connection.api_version = request.param
    connection.save()
    return request.param


def _status(client, job):
    response = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    return response.status_code, response.content.decode()


def _earlier_logs(ips_emulator, job):
    return [log.handle for log in ips_emulator.state.job_logs(job.handle)]


def test_a_run_is_followed_to_its_own_final_log(version, clock, client, login, users, job, ips_emulator):
    earlier = set(_earlier_logs(ips_emulator, job))
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    # Named from getActiveJobs right after executeJob.
    assert execution.ips_run_handle.startswith("47||My Test Job_")
    assert execution.ips_run_name == execution.ips_run_handle.split("||", 1)[1]
    assert execution.ips_run_handle not in earlier

    clock.advance(RUN_SECONDS / 2)
    status = run_state.run_status(execution)
    assert status.active is not None and status.active.state == "Running"
    assert status.log is not None and status.log.job_handle == execution.ips_run_handle
    assert not status.log.is_final and not status.finished
    assert status.log.log_type.startswith("Begin")
    code, body = _status(client, job)
    assert code == 200 and "Running" in body and "so far" in body

    clock.advance(RUN_SECONDS / 2 + 0.01)  # over, but still listed as Done for a while
    status = run_state.run_status(execution)
    assert status.active is not None and status.active.state == "Done"
    assert status.finished
    assert status.log.job_handle == execution.ips_run_handle
    assert status.log.end_date is not None
    code, body = _status(client, job)
    assert code == 286
    assert f"{status.log.file_success_count} ok" in body and "ended" in body

    clock.advance(RUN_SECONDS)  # gone from getActiveJobs: still this run's log
    status = run_state.run_status(execution)
    assert status.active is None and status.finished
    assert status.log.job_handle == execution.ips_run_handle


def test_a_run_is_never_called_finished_while_ips_lists_it_active(version, clock, users, job, ips_emulator):
    execution = press_run(job, users["IpsUser"])
    seen = []
    for _ in range(12):
        status = run_state.run_status(execution)
        active = status.active is not None and status.active.state != "Done"
        seen.append((active, status.finished))
        assert not (active and status.finished)
        clock.advance(RUN_SECONDS / 10)
    assert (True, False) in seen and (False, True) in seen


def test_the_log_of_a_run_is_found_among_more_than_fifty_newer_ones(clock, users, ips_emulator, connection):
    """Company 60 is busy: after our run, 60 more runs of its other jobs."""
    service = ips_emulator.state.users["service@example.com"]
    service.memberships["60"] = Membership("60", "IpsUser")
    busy = Company.objects.create(connection=connection, handle="60", name="Busy Bee Studio")
    assert not sync.sync_company(busy).error
    ours = Job.objects.get(company=busy, handle="60|Quarterly Archive|")
    others = list(Job.objects.filter(company=busy).exclude(pk=ours.pk))
    users["IpsUser"].memberships.create(company=busy, role="IpsUser")
    execution = press_run(ours, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    clock.advance(RUN_SECONDS * 2)
    client = ips.client_for(connection)
    for i in range(60):
        other = others[i % len(others)]
        client.execute_job("60", other.handle)
        clock.advance(RUN_SECONDS * 2)
    newest = client.get_job_logs("60", sort_by="StartDate", sort_direction="Descending", num_rows=50)
    assert execution.ips_run_handle not in {log.job_handle for log in newest}
    status = run_state.run_status(execution)
    assert status.finished
    assert status.log.job_handle == execution.ips_run_handle


def test_logs_are_paged_by_start_date(clock, users, job, ips_emulator, monkeypatch):
    """More runs started in the window than one page holds: the next page starts where the last ended."""
    monkeypatch.setattr(run_state, "LOG_PAGE_ROWS", 2)
    client = ips.client_for(job.company.connection)
    execution = make_execution(job, users["IpsUser"], "accepted", sent_at=timezone.now())
    # Three runs of other jobs start first, then ours.
    for handle in ("47|Nightly | Publish|", "47|<b>Bold</b> Upload|", "47|Übersicht Publish|"):
        client.execute_job("47", handle)
        clock.advance(1)
    client.execute_job("47", job.handle)
    ours = next(a for a in client.get_active_jobs("47") if a.original_name == job.name)
    execution = Execution.objects.get(pk=execution.pk)
    status = run_state.run_status(execution)  # not named: matched by name and start
    assert status.log is not None and status.log.job_handle == ours.job_handle


def test_an_unnamed_run_is_matched_by_its_name_and_start_never_an_earlier_run(version, clock, users, job):
    """Without a run handle (IPS could not name it at press time), earlier runs' logs never stand in."""
    execution = make_execution(job, users["IpsUser"], "accepted", sent_at=timezone.now())
    status = run_state.run_status(execution)
    assert status.log is None and not status.finished  # only earlier runs have logs
    ips.client_for(job.company.connection).execute_job("47", job.handle)
    clock.advance(RUN_SECONDS * 3)
    status = run_state.run_status(execution)
    assert status.finished
    assert status.log.start_date >= execution.sent_at - run_state.LOG_WINDOW_SKEW


@pytest.mark.parametrize("operation", ["getActiveJobs", "getJobLogDetails"])
@pytest.mark.parametrize("kind", ["soap_fault", "malformed_xml", "drop_connection"])
def test_a_poll_that_fails_says_so_and_polls_again(kind, operation, clock, client, login, users, job, ips_emulator):
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    clock.advance(RUN_SECONDS * 3)
    params = {"code": 30000, "reason": "Busy"} if kind == "soap_fault" else {}
    ips_emulator.state.inject(kind, operation=operation, **params)
    code, body = _status(client, job)
    assert code == 200  # never 286: a failed poll is not the end
    assert "asking again" in body
    code, body = _status(client, job)
    assert code == 286 and "IPS log:" in body


def test_before_4_0_the_end_of_a_run_comes_from_get_job_log_details(clock, users, job, ips_emulator, connection):
    connection.api_version = ""
    connection.save()
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 3)
    client = ips.client_for(connection)
    [summary] = [log for log in client.get_job_logs("47") if log.job_handle == execution.ips_run_handle]
    assert summary.end_date is None  # pre-4.0 getJobLogs never says
    status = run_state.run_status(execution)
    assert status.finished and status.log.end_date is not None
    ops = [c["operation"] for c in ips_emulator.state.calls]
    assert ops[-1] == "getJobLogDetails"


def test_a_job_name_of_1500_characters_syncs_and_runs(version, clock, client, login, users, company, ips_emulator):
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
    status = run_state.run_status(execution)
    assert status.finished and status.log.job_handle == execution.ips_run_handle


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
def test_the_demo_loads_syncs_runs_and_follows_in_each_version(api_version, db, settings, clock, client, ips_emulator):
    settings.DEBUG = True  # load_demo refuses to run without it
    call_command("load_demo", service_url=ips_emulator.service_url, api_version=api_version, stdout=io.StringIO())
    connection = Connection.objects.get(name="Local IPS emulator")
    assert connection.api_version == api_version
    ok, text = connections.check_connection(connection)
    assert ok, text
    job = Job.objects.get(company__handle="47", handle="47|Nightly | Publish|")
    client.force_login(get_user_model().objects.get(username="ipsuser"))
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    clock.advance(RUN_SECONDS * 3)
    code, body = _status(client, job)
    assert code == 286
    [final] = [log for log in ips_emulator.state.job_logs(job.handle) if log.handle == execution.ips_run_handle]
    counts = final.counts
    assert f"{counts['success']} ok, {counts['error']} error" in body
    assert f"{counts['warning']} warning" in body


def test_a_recorded_result_stops_the_browsers_poll_without_asking_ips(clock, client, login, users, job, ips_emulator):
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    execution = Execution.objects.get()
    clock.advance(RUN_SECONDS * 3)
    follow.record_status(execution, run_state.run_status(execution))  # a worker recorded it
    calls = len(ips_emulator.state.calls)
    code, body = _status(client, job)
    assert code == 286 and "IPS log:" in body and "ended" in body
    assert len(ips_emulator.state.calls) == calls
