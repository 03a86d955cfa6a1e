"""Edges of the watcher found by review: each one lost or doubled a run, or let a second executeJob
out. Against the emulator over real HTTP, on its manual clock."""

import datetime as dt

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from conftest import wait_for
from jobs.models import CompanyWatch, Execution, Job
from jobs.models.executions import ExecutionQuerySet
from jobs.services import press as pressing
from jobs.services import watch

from .conftest import RUN_SECONDS, look, make_execution, press_run
from .pg_roles import app_role  # noqa: F401  (fixture)


def test_one_run_whose_log_ips_cannot_serve_holds_back_no_other_run(job, users, clock, ips_emulator, connection):
    connection.api_version = ""  # before 4.0: the end of a run comes from getJobLogDetails
    connection.save()
    other = Job.objects.filter(company=job.company).exclude(pk=job.pk).first()
    look(job.company)
    stuck = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS + 1)
    ips_emulator.state.inject("soap_fault", operation="getJobLogDetails", job_handle=stuck, code=30000,
                              reason="log too large", times=None)
    later = []
    for _ in range(3):
        clock.advance(120)
        later.append(ips_emulator.state.fire_schedule(other.handle))
        clock.advance(RUN_SECONDS + 1)
        result = look(job.company, ok=False)
        assert not result.error  # the look went on
    state = CompanyWatch.objects.get(pk=job.company.pk)
    assert "log too large" in state.last_error  # and says what failed
    recorded = Execution.objects.filter(ips_run_handle__in=later)
    assert recorded.count() == 3 and all(r.ips_result for r in recorded)
    assert Execution.objects.get(ips_run_handle=stuck).ips_result == ""  # asked again at the next look


def test_a_run_left_for_a_press_in_flight_is_recorded_once_the_press_ends(job, users, clock, ips_emulator):
    other = Job.objects.filter(company=job.company).exclude(pk=job.pk).first()
    look(job.company)
    scheduled = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS + 1)
    clock.advance(600)
    ips_emulator.state.fire_schedule(other.handle)  # moves the newest start read past the scheduled run
    clock.advance(RUN_SECONDS + 1)
    sending = make_execution(job, users["IpsUser"], outcome="sending")  # a press at its look before executeJob
    look(job.company)
    pressing.finish(sending, "already_running", "IPS reports it running")  # it ends, nothing sent
    look(job.company)
    [row] = Execution.objects.filter(ips_run_handle=scheduled)
    assert row.started_by == Execution.StartedBy.SCHEDULE and row.ips_result


def test_more_logs_than_one_look_reads_are_read_by_the_next_looks(job, clock, ips_emulator, monkeypatch):
    monkeypatch.setattr(watch, "LOG_PAGE_ROWS", 3)
    monkeypatch.setattr(watch, "LOG_PAGES", 2)
    jobs = list(Job.objects.filter(company=job.company))
    look(job.company)
    fired = []
    for i in range(8):  # 8 runs within two minutes: more than a look's 2 pages of 3
        fired.append(ips_emulator.state.fire_schedule(jobs[i % len(jobs)].handle))
        clock.advance(15)
    clock.advance(RUN_SECONDS)
    look(job.company)
    clock.advance(60)
    fired.append(ips_emulator.state.fire_schedule(jobs[0].handle))
    clock.advance(RUN_SECONDS + 1)
    for _ in range(5):
        look(job.company)
    assert Execution.objects.filter(ips_run_handle__in=fired).count() == len(fired)


def test_a_late_execute_job_ips_acted_on_long_after_the_press_gave_up_is_that_press_run(
    job, users, clock, ips_emulator, hold_calls, settings, dashboard_clock
):
    state = ips_emulator.state
    before = len(state.runs)
    settings.IPS_READ_TIMEOUT = 0.5
    hold = hold_calls(ips_emulator, "executeJob")
    late = press_run(job, users["IpsUser"], "press-late")
    assert late.outcome == "timed_out" and late.is_uncertain
    clock.advance(20)  # IPS, slow (why the press timed out), gets to it 20 s later
    hold.release()
    wait_for(lambda: len(state.runs) > before, "IPS to start the late run")
    clock.advance(40)
    dashboard_clock.advance(dt.timedelta(seconds=60))
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    late.refresh_from_db()
    assert late.ips_run_handle and late.ips_result  # its own run, not "not started" and a second row
    assert Execution.objects.filter(job=job, operation="executeJob").count() == 1


def test_a_press_ending_of_unknown_fate_just_after_the_check_still_holds_the_next_one(
    job, users, clock, ips_emulator, monkeypatch
):
    user = users["IpsUser"]
    first = make_execution(job, user, outcome="sending")  # another worker's press, its executeJob on the wire
    first.sent_at = timezone.now()
    first.save(update_fields=["sent_at"])
    real = ExecutionQuerySet.uncertain
    checks = []

    class Checked:
        """The first look finds nothing; right after it, the other press times out."""

        def __init__(self, qs):
            self.qs = qs

        def filter(self, **kw):
            self.qs = self.qs.filter(**kw)
            return self

        def order_by(self, *a):
            self.qs = self.qs.order_by(*a)
            return self

        def first(self):
            found = self.qs.first()
            checks.append(found)
            if len(checks) == 1:
                pressing.finish(Execution.objects.get(pk=first.pk), "timed_out", "IPS did not answer")
            return found

    monkeypatch.setattr(ExecutionQuerySet, "uncertain", lambda self, now=None: Checked(real(self, now)))
    second = press_run(job, user, "press-2")
    assert second.outcome == "already_running"
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "executeJob"]


def test_who_started_a_row_and_a_sent_nothing_press_stay_as_born(job, users):
    """The rules: a press is born 'pressed here'; a failed press that sent nothing takes no IPS result."""
    with pytest.raises(PermissionError):
        make_execution(job, users["IpsUser"], outcome="sending", started_by="schedule")
    nothing_sent = make_execution(job, users["IpsUser"], outcome="timed_out")
    assert nothing_sent.sent_at is None
    nothing_sent.ips_run_handle, nothing_sent.ips_result = "47||y_1", "ok"
    with pytest.raises(PermissionError):
        nothing_sent.save()


def _forge(db_role, job, values):
    """An INSERT of an execution row by hand, as ``db_role`` (test_audit_trail's, with a ``role`` column)."""
    row = dict(operation="executeJob", job_id=job.pk, company_id=job.company_id, company_handle="47",
               job_handle=job.handle, job_name=job.name, user_id=None, username="forger", role="",
               role_from_ips=False, outcome="sending", message="", fault_family="", fault_reason="",
               requested_at=timezone.now(), user_agent="", request_id="", ips_run_handle="",
               ips_run_name="", ips_state="", ips_log_type="", ips_result="", started_by="here")
    row.update(values)
    marks = ", ".join(["%s"] * len(row))
    db_role.run(f"INSERT INTO jobs_execution ({', '.join(row)}) VALUES ({marks}) RETURNING id", list(row.values()))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: the database's own guards")
@pytest.mark.postgres
@pytest.mark.parametrize("column, value", [
    ("user_id", "user"), ("role", "IpsAdmin"), ("message", "IPS accepted it."), ("client_ip", "192.0.2.9"),
    ("user_agent", "forger"), ("request_id", "req-1"), ("sent_at", "now"),
])
def test_the_app_role_cannot_forge_a_found_run_with_a_person_or_a_request(app_role, job, users, column, value):
    value = {"user": users["IpsUser"].pk, "now": timezone.now()}.get(value, value)
    found = dict(outcome="accepted", started_by="other", username="robot@example.com", role="", request_id="",
                 ips_run_handle="47||x_1")
    with pytest.raises(DatabaseError, match=f"has no {column} yet"):
        _forge(app_role, job, {**found, column: value})
    _forge(app_role, job, found)  # as the watcher writes it
    with pytest.raises(DatabaseError, match="starts as"):
        _forge(app_role, job, {"outcome": "sending", "started_by": "schedule"})
