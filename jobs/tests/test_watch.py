"""One watcher per company finds every run IPS makes and records it once: runs pressed here on
their press's row, IPS's own runs on rows of their own. Driven look by look against the emulator
over real HTTP, on the emulator's manual clock (its Date header is IPS's time)."""

import datetime as dt

import pytest
from django.utils import timezone

from jobs import events
from jobs.models import Execution, Job
from jobs.services import watch

from conftest import wait_for

from .conftest import RUN_SECONDS, look, press_run

R = Execution.IpsResult


def rows(job):
    return list(Execution.objects.filter(job=job, operation="executeJob").order_by("pk"))


@pytest.fixture
def ended(monkeypatch):
    said = []
    monkeypatch.setattr(events, "announce_run_ended", lambda pk, result: said.append((pk, result)))
    return said


def test_it_names_a_pressed_run_and_records_its_result_once(job, users, clock, ips_emulator, ended):
    execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted" and not execution.ips_run_handle
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle.startswith(f"{job.company.handle}||")
    assert execution.ips_state and not execution.ips_result
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result in (R.OK, R.WARNINGS, R.ERRORS, R.FATAL)
    assert execution.ips_ended_at is not None and execution.ips_runtime_ms is not None
    assert rows(job) == [execution]  # the same run, not a second row
    assert ended == [(execution.pk, execution.ips_result)]


def test_it_records_a_run_fired_by_the_ips_schedule(job, clock, ips_emulator, ended):
    handle = ips_emulator.state.fire_schedule(job.handle)
    look(job.company)
    [row] = rows(job)
    assert row.started_by == Execution.StartedBy.SCHEDULE
    assert row.ips_run_handle == handle
    assert row.username.lower() == job.submit_user_email.lower()
    assert row.user is None and row.outcome == "accepted" and not row.ips_result
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    row.refresh_from_db()
    assert row.ips_result and row.ips_total_count is not None
    assert ended == [(row.pk, row.ips_result)]
    look(job.company)
    assert rows(job) == [row]  # read again through the overlap: still one row


def test_a_run_by_another_ips_client_is_told_apart(job, clock, ips_emulator, connection):
    other = ips_emulator.state.add_user("robot@example.com", "pw", "IpsUser", {job.company.handle: "IpsUser"})
    from ipsemulator import operations

    with ips_emulator.state._lock:
        operations.start_run(ips_emulator.state, ips_emulator.state.jobs[job.handle], other.email,
                             ips_emulator.state.now())
    look(job.company)
    [row] = rows(job)
    assert row.started_by == Execution.StartedBy.OTHER and row.username == "robot@example.com"


def test_runs_made_while_nobody_watched_are_caught_up(job, clock, ips_emulator):
    look(job.company)  # the watcher has looked once: its place in the logs is set
    handles = []
    for _ in range(3):
        handles.append(ips_emulator.state.fire_schedule(job.handle))
        clock.advance(RUN_SECONDS + 5)
    look(job.company)
    found = rows(job)
    assert sorted(r.ips_run_handle for r in found) == sorted(handles)
    assert all(r.ips_result for r in found)


def test_a_press_of_unknown_fate_holds_the_next_press_until_the_watcher_knows(
    job, users, clock, ips_emulator, settings
):
    settings.IPS_READ_TIMEOUT = 0.5
    # IPS starts the run, but answers after the dashboard gave up.
    ips_emulator.state.inject("latency", operation="executeJob", seconds=1.5)
    first = press_run(job, users["IpsUser"], request_id="late-1")
    assert first.outcome == "timed_out" and first.sent_at is not None and first.is_uncertain
    second = press_run(job, users["IpsUser"], request_id="late-2")
    assert second.outcome == "already_running" and "checking IPS" in second.message
    assert len([c for c in ips_emulator.state.calls if c["operation"] == "executeJob"]) == 1
    # IPS gets to the late executeJob (the dashboard stopped waiting for it long ago).
    wait_for(lambda: ips_emulator.state.active_runs(job.handle), "IPS to start the late run")
    look(job.company)
    first.refresh_from_db()
    assert first.ips_run_handle  # the run IPS started is this press's
    assert len(rows(job)) == 2  # the timed-out press and the refusal; no row of its own for the run
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    first.refresh_from_db()
    assert first.ips_result
    third = press_run(job, users["IpsUser"], request_id="late-3")
    assert third.outcome == "accepted"


def test_a_press_ips_never_started_is_settled_not_started(job, users, clock, ips_emulator, settings):
    ips_emulator.state.inject("http_500_html", operation="executeJob")
    first = press_run(job, users["IpsUser"])
    assert first.is_uncertain
    look(job.company)
    first.refresh_from_db()
    assert not first.ips_result  # not yet: IPS may still show it within the grace
    clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
    look(job.company)
    first.refresh_from_db()
    assert first.ips_result == R.NOT_STARTED
    assert press_run(job, users["IpsUser"], request_id="again").outcome == "accepted"


@pytest.mark.parametrize("shift", [-3600, 3600])
def test_a_press_gets_its_own_run_whatever_ips_clock_says(job, users, clock, ips_emulator, shift):
    """IPS's clock an hour off the dashboard's: a run that ended just before the press, nobody having
    looked yet, is never taken for the press's; the press's own run is."""
    ips_emulator.state.shift(shift)
    earlier = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS + 1)
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_run_handle != earlier
    [scheduled] = [r for r in rows(job) if r.pk != execution.pk]
    assert scheduled.ips_run_handle == earlier and scheduled.started_by == Execution.StartedBy.SCHEDULE


def test_one_watcher_at_a_time_per_company(company):
    watch.ensure_watches()
    now = timezone.now()
    assert watch.claim(company.pk, "a", now) is not None
    assert watch.claim(company.pk, "b", now) is None
    # A watcher killed mid-look: its lease ends by itself, and another takes over.
    later = now + watch.lease_length() + dt.timedelta(seconds=1)
    assert watch.claim(company.pk, "b", later) is not None


def test_the_watcher_keeps_the_catalogue_fresh(job, clock, ips_emulator, dashboard_clock, client, login):
    """A job added in IPS shows up within one sync interval, nobody pressing Sync; a job removed is
    marked gone, its history kept; a failed sync shows on the jobs page."""
    company = job.company
    look(company)  # the first look syncs (a new watch is due at once)
    ips_emulator.state.add_job(company.handle, "Added In IPS", submit_user_email=job.submit_user_email)
    look(company)
    assert not Job.objects.filter(company=company, name="Added In IPS").exists()  # not due yet
    dashboard_clock.advance(company.connection.sync_interval)
    look(company)
    added = Job.objects.get(company=company, name="Added In IPS")
    company.refresh_from_db()
    assert company.last_synced_at is not None and not company.sync_error

    ips_emulator.state.fire_schedule(added.handle)
    look(company)
    ips_emulator.state.remove_job(added.handle)
    dashboard_clock.advance(company.connection.sync_interval)
    look(company)
    added.refresh_from_db()
    assert added.is_gone and added.gone_at is not None
    assert Execution.objects.filter(job=added).count() == 1  # its history stays

    ips_emulator.state.inject("soap_fault", operation="getScheduledJobs", code=30000, reason="Sync is down")
    dashboard_clock.advance(company.connection.sync_interval)
    look(company, ok=False)
    company.refresh_from_db()
    assert "Sync is down" in company.sync_error and company.sync_failed_at is not None
