"""Every accepted run is followed to its IPS result in the background, and the
result lands on the audit row: the follow steps driven one by one here, on
the emulator's clock, with a scheduler that only records what it is asked.
(Real workers, both backends: test_workers.py.)"""

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from django_tasks_db.models import DBTaskResult

from ipsemulator.clock import ManualClock
from jobs import events, ips
from jobs.services import actions, base
from jobs.services import status as run_state
from jobs.services import follow as following
from jobs.models import Execution, RunFollow

from .conftest import press_run

HTMX = {"HTTP_HX_REQUEST": "true"}
RUN_SECONDS = 10.0


class Scheduler:
    """Records the follow steps scheduled through jobs/events.py, as a task backend would get them."""

    def __init__(self):
        self.calls = []

    def __call__(self, execution_id, token, *, when):
        self.calls.append((execution_id, token, when))

    @property
    def token(self):
        return self.calls[-1][1]


@pytest.fixture
def clock(ips_emulator):
    manual = ManualClock(9000.0)
    ips_emulator.state.clock = manual
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


@pytest.fixture
def schedule(monkeypatch):
    recorder = Scheduler()
    monkeypatch.setitem(events.SCHEDULERS, events.FOLLOW, recorder)
    return recorder


def _accepted(job, users, schedule, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        execution = actions.run_job(
            job, job.company.access(users["IpsUser"], "executeJob"), users["IpsUser"],
            base.RequestInfo("bg-follow-1"),
        ).execution
    assert execution.outcome == "accepted", execution.message
    return execution


def _step(execution, schedule, django_capture_on_commit_callbacks, now=None):
    with django_capture_on_commit_callbacks(execute=True):
        return following.follow_step(execution.pk, schedule.token, now=now)


def test_an_accepted_run_is_scheduled_for_following(job, users, schedule, django_capture_on_commit_callbacks):
    before = timezone.now()
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    follow = RunFollow.objects.get(execution=execution)
    [(execution_id, token, when)] = schedule.calls
    assert (execution_id, token, when) == (execution.pk, follow.token, follow.next_poll_at)
    assert when >= before + dt.timedelta(seconds=2)
    assert follow.deadline >= before + dt.timedelta(hours=24)


@pytest.mark.parametrize("actor", ["IpsCompanyAdmin", "WebServiceUser"])
def test_a_refused_press_is_not_followed(actor, job, users, schedule):
    result = actions.run_job(job, job.company.access(users[actor], "executeJob"), users[actor],
                              base.RequestInfo("refused-1"))
    assert result.outcome == "denied"
    assert not RunFollow.objects.exists() and schedule.calls == []


def test_the_run_is_followed_to_its_result_without_a_browser(
    clock, job, users, schedule, ips_emulator, django_capture_on_commit_callbacks
):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    clock.advance(RUN_SECONDS / 2)
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "polled"
    execution.refresh_from_db()
    assert execution.ips_state == "Running" and 0 < execution.ips_progress < 100
    assert execution.ips_result == "" and execution.ips_log_type.startswith("Begin")
    clock.advance(RUN_SECONDS)
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "finished"
    execution.refresh_from_db()
    [final] = [log for log in ips_emulator.state.job_logs(job.handle) if log.handle == execution.ips_run_handle]
    assert execution.ips_result == "ok"
    assert execution.ips_result_label == "finished"
    assert execution.ips_success_count == final.counts["success"] > 0
    assert execution.ips_error_count == 0 and execution.ips_fatal is False
    assert execution.ips_runtime_ms == pytest.approx(RUN_SECONDS * 1000, abs=1)
    assert execution.ips_ended_at - execution.ips_started_at == dt.timedelta(seconds=RUN_SECONDS)
    assert RunFollow.objects.get(pk=execution.pk).done_at is not None
    # The step scheduled before the poll finds the follow done.
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "done"


def test_each_poll_waits_longer_up_to_the_maximum(settings):
    settings.IPS_FOLLOW_FIRST_POLL, settings.IPS_FOLLOW_MAX_INTERVAL = 2.0, 60.0
    waits = [following.follow_interval(n).total_seconds() for n in range(1, 14)]
    assert waits[:4] == [2.0, 3.0, 4.5, 6.75]
    assert waits == sorted(waits) and waits[-1] == 60.0


@pytest.mark.parametrize(
    "outcome, result, label",
    [
        ("warnings", "warnings", "finished: 1 warning"),
        ("errors", "errors", "finished: 1 error"),
        ("fatal", "fatal", "fatal error"),
    ],
)
def test_a_run_that_did_not_go_well_says_so(
    outcome, result, label, clock, job, users, schedule, ips_emulator, django_capture_on_commit_callbacks
):
    ips_emulator.state.jobs[job.handle].outcome = outcome
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    clock.advance(RUN_SECONDS * 2)
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "finished"
    execution.refresh_from_db()
    assert execution.outcome == "accepted"
    assert (execution.ips_result, execution.ips_result_label) == (result, label)


def test_a_stale_duplicate_step_does_nothing(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    first = schedule.token
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "polled"
    with django_capture_on_commit_callbacks(execute=True):
        assert following.follow_step(execution.pk, first) == "stale"
    assert RunFollow.objects.get(pk=execution.pk).polls == 1


def test_a_run_is_never_polled_by_two_workers_at_once(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    follow = RunFollow.objects.get(pk=execution.pk)
    lease = timezone.now() + dt.timedelta(seconds=30)
    follow.lease_until = lease  # another worker is polling right now
    follow.save()
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "leased"
    assert schedule.calls[-1][2] <= lease  # comes back, at the latest when that poll's lease ends
    assert RunFollow.objects.get(pk=execution.pk).polls == 0


def test_a_worker_that_died_mid_poll_loses_nothing(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    # A worker took the run and died: its lease is over, its pre-scheduled successor runs.
    follow = RunFollow.objects.get(pk=execution.pk)
    follow.lease_until = timezone.now() - dt.timedelta(seconds=1)
    follow.polls = 3
    follow.save()
    clock.advance(RUN_SECONDS * 2)
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "finished"
    execution.refresh_from_db()
    assert execution.ips_result == "ok"


def test_a_failed_poll_is_tried_again(clock, job, users, schedule, ips_emulator, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    clock.advance(RUN_SECONDS * 2)
    ips_emulator.state.inject("http_500_html", operation="getActiveJobs")
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "failed poll"
    follow = RunFollow.objects.get(pk=execution.pk)
    assert "HTTP 500" in follow.last_error and follow.done_at is None
    execution.refresh_from_db()
    assert execution.ips_result == ""
    assert _step(execution, schedule, django_capture_on_commit_callbacks) == "finished"


def test_past_the_deadline_the_run_has_no_result_from_ips(
    clock, job, users, schedule, ips_emulator, django_capture_on_commit_callbacks
):
    ips_emulator.state.job_duration = 10 * 24 * 3600  # IPS never finishes it
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    later = timezone.now() + dt.timedelta(hours=24, seconds=1)
    assert _step(execution, schedule, django_capture_on_commit_callbacks, now=later) == "finished"
    execution.refresh_from_db()
    assert execution.ips_result == "no_result"
    assert execution.ips_result_label == "no result from IPS after 24 h"


def test_the_result_is_final_once_recorded(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    clock.advance(RUN_SECONDS * 2)
    _step(execution, schedule, django_capture_on_commit_callbacks)
    row = Execution.objects.get(pk=execution.pk)
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
def test_postgresql_keeps_the_recorded_result_final(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    with connection.cursor() as cursor:  # the follow's own write, through SQL: allowed
        cursor.execute("UPDATE jobs_execution SET ips_state = 'Running' WHERE id = %s", [execution.pk])
    clock.advance(RUN_SECONDS * 2)
    _step(execution, schedule, django_capture_on_commit_callbacks)
    for sql in (
        "UPDATE jobs_execution SET ips_result = 'fatal' WHERE id = %s",
        "UPDATE jobs_execution SET ips_success_count = 0 WHERE id = %s",
        "UPDATE jobs_execution SET message = 'x' WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="audit trail"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [execution.pk])


@pytest.mark.postgres
def test_postgresql_refuses_an_ips_result_on_a_refused_row(job, users):
    refused = press_run(job, users["IpsCompanyAdmin"])
    with pytest.raises(DatabaseError, match="audit trail"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE jobs_execution SET ips_result = 'ok' WHERE id = %s", [refused.pk])


def test_the_follow_is_started_by_a_press_of_run(client, login, job, django_capture_on_commit_callbacks):
    login("IpsUser")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    follow = RunFollow.objects.get()
    [queued] = DBTaskResult.objects.all()
    assert queued.args_kwargs["args"] == [follow.pk, follow.token]
    assert queued.run_after == follow.next_poll_at


def test_resume_follows_starts_lost_chains_again(clock, job, users, schedule, django_capture_on_commit_callbacks):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    lost, calls = schedule.token, len(schedule.calls)
    with django_capture_on_commit_callbacks(execute=True):
        assert following.resume_follows() == 1
    assert schedule.calls[calls][0] == execution.pk and schedule.token != lost
    with django_capture_on_commit_callbacks(execute=True):
        assert following.follow_step(execution.pk, lost) == "stale"


def test_polls_come_ever_later_from_the_first(clock, job, users, schedule, django_capture_on_commit_callbacks,
                                               settings):
    settings.IPS_FOLLOW_FIRST_POLL = 2.0
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    now = timezone.now()
    waits = []
    for _ in range(3):
        _step(execution, schedule, django_capture_on_commit_callbacks, now=now)
        waits.append((schedule.calls[-1][2] - now).total_seconds())
    assert waits == [3.0, 4.5, 6.75]  # after the first poll (at 2 s): 3 s, then 4.5 s, ...


def test_a_run_polled_elsewhere_is_asked_again_soon_not_at_the_end_of_the_lease(
    clock, job, users, schedule, django_capture_on_commit_callbacks
):
    execution = _accepted(job, users, schedule, django_capture_on_commit_callbacks)
    follow = RunFollow.objects.get(pk=execution.pk)
    follow.lease_until = timezone.now() + dt.timedelta(minutes=2)
    follow.save()
    now = timezone.now()
    assert _step(execution, schedule, django_capture_on_commit_callbacks, now=now) == "leased"
    assert schedule.calls[-1][2] == now + following.follow_interval(1)


def test_a_named_runs_log_is_found_by_its_handle_whatever_started_with_it(clock, job, users, ips_emulator):
    """More runs started in the same second than a page of getJobLogs holds: a named run still finds its log."""
    for n in range(12):
        ips_emulator.state.add_job("47", f"Burst {n}")
        ips.client_for(job.company.connection).execute_job("47", f"47|Burst {n}|")
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    status = run_state.run_status(execution)
    assert status.finished and status.log.job_handle == execution.ips_run_handle
    ops = [c["operation"] for c in ips_emulator.state.calls]
    assert ops[-1] == "getJobLogDetails" and "getJobLogs" not in ops[-2:]
