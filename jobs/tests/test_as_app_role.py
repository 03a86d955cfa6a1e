"""What the dashboard does on PostgreSQL, done as the app's role of docs/deploy.md.

The fixtures (connection, companies, users, jobs) are made as the test
database's superuser; then each test does ``SET ROLE`` to ``app_role`` (a role
with exactly the grants the recipe gives ``ipsadmin_app``, pg_roles.py) and runs
the service code of a press of Run (which wakes its company's watcher), a Stop,
the company watcher's looks to the run's result (its lease and place in the
logs on CompanyWatch, the run's IPS fields and result on the audit row, a run of
IPS's own schedule on a row of its own), reconcile_stale, a sign-in with IPS, a
sync and an export record: each must succeed as that role, under the
append-only tables' guard as it binds the app.

It also holds the app to the database's clock: with the app server's clock 10
minutes off the database's, the app's writes still succeed, with the
database's time (the guard refuses "now" values beyond CLOCK_SKEW).
"""

import datetime as dt

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from django.utils import timezone as django_timezone_module

from jobs.models import CompanyWatch, Execution, HistoryExport, Job, MembershipChange
from jobs.services import actions, base, exports, people, press, sync, watch

from .conftest import RUN_SECONDS, look, make_execution, press_run
from .pg_roles import app_role  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres



def _db_now():
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _whoami():
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def test_a_run_a_stop_and_the_watcher_recording_the_result_as_the_app_role(
    app_role, job, users, clock, ips_emulator, django_capture_on_commit_callbacks
):
    user = users["IpsUser"]
    nightly = Job.objects.get(company=job.company, handle="47|Nightly | Publish|")
    with app_role.acting():
        assert _whoami() == app_role.name
        with django_capture_on_commit_callbacks(execute=True):
            run = press_run(job, user, request_id="as-app-run")  # wakes the company's watcher: its row is made
        assert run.outcome == "accepted", run.message
        assert CompanyWatch.objects.filter(pk=job.company.pk, next_look_at__lte=timezone.now()).exists()
        scheduled = ips_emulator.state.fire_schedule(nightly.handle)  # a run of IPS's own: a row of its own
        clock.advance(RUN_SECONDS / 2)
        with django_capture_on_commit_callbacks(execute=True):
            look(job.company)  # names the press's run, records IPS's state, its place in the logs
        assert Execution.objects.get(pk=run.pk).ips_state == "Running"
        stop = actions.stop_job(job, job.company.access(user, "stopJob"), user,
                                base.RequestInfo(request_id="as-app-stop")).execution
        assert stop.outcome == "accepted", stop.message
        clock.advance(RUN_SECONDS * 2)
        # The watcher process's own path: a round claims the company by its lease, looks, lets it go.
        CompanyWatch.objects.filter(pk=job.company.pk).update(next_look_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            results = [r for r in watch.watch_round("as-app-watcher") if r.company == job.company]
        assert [(r.error, r.lost_lease) for r in results] == [("", False)]
    run = Execution.objects.get(pk=run.pk)
    assert run.ips_run_handle and run.ips_result == "stopped", "the watcher recorded the run's IPS result"
    assert Execution.objects.get(pk=stop.pk).outcome == "accepted"
    [own] = Execution.objects.filter(ips_run_handle=scheduled)
    assert own.started_by == Execution.StartedBy.SCHEDULE and own.ips_result == "warnings"
    state = CompanyWatch.objects.get(pk=job.company.pk)
    assert state.lease_owner == "" and state.last_error == "" and state.log_cursor is not None
    assert state.looks >= 2 and state.ips_offset_ms is not None


def test_reconcile_stale_as_the_app_role(app_role, job, users):
    stale = make_execution(job, users["IpsUser"], outcome="sending",
                           requested_at=timezone.now() - dt.timedelta(hours=1))
    with app_role.acting():
        assert press.reconcile_stale(job) == 1
    assert Execution.objects.get(pk=stale.pk).outcome == "interrupted"


def test_sign_in_with_ips_as_the_app_role(app_role, connection, company, other_company):
    connection.ips_sign_in = True
    connection.save()
    with app_role.acting():
        user = people.sign_in_with_ips(connection, "ipsuser@example.com", "demo")
    assert user is not None
    assert {(m.company.handle, m.role) for m in user.memberships.all()} == {("47", "IpsUser")}
    assert MembershipChange.objects.filter(user=user).exists()


def test_a_sync_as_the_app_role(app_role, company):
    with app_role.acting():
        result = sync.sync_company(company)
    assert not result.error, result.error
    assert Job.objects.filter(company=company).exists()


def test_an_export_record_as_the_app_role(app_role, users):
    user = users["IpsUser"]
    with app_role.acting():
        export = exports.start_export(user, {"q": "x"}, base.RequestInfo(request_id="as-app-export"))
        exports.finish_export(export, 3, True)
    stored = HistoryExport.objects.get(pk=export.pk)
    assert (stored.row_count, stored.completed) == (3, True)


# --- The app server's clock off the database's --------------------------------------------


@pytest.mark.parametrize("minutes", [10, -10])
def test_a_press_succeeds_with_the_app_servers_clock_off_the_databases(
    app_role, job, users, clock, monkeypatch, minutes, django_capture_on_commit_callbacks
):
    """The guard holds "now" to the database's clock: the app writes its times on that clock."""
    skew = dt.timedelta(minutes=minutes)

    class SkewedDatetime(dt.datetime):
        # The app server's clock, everywhere Django reads it (timezone.now, and the fields' defaults).
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) + skew

    monkeypatch.setattr(django_timezone_module, "datetime", SkewedDatetime)
    assert abs(timezone.now() - _db_now() - skew) < dt.timedelta(seconds=5)
    user = users["IpsUser"]
    with app_role.acting():
        with django_capture_on_commit_callbacks(execute=True):
            run = press_run(job, user, request_id="as-app-skewed")
        assert run.outcome == "accepted", run.message
        export = exports.start_export(user, {}, base.RequestInfo(request_id="as-app-skewed-export"))
        exports.finish_export(export, 0, True)
        clock.advance(RUN_SECONDS * 2)
        with django_capture_on_commit_callbacks(execute=True):
            look(job.company)  # the watcher writes the result, and its time, as the app
        db_now = _db_now()
    stored = Execution.objects.get(pk=run.pk)
    assert stored.ips_result == "ok"
    for value in (stored.requested_at, stored.sent_at, stored.finished_at, stored.ips_result_at):
        assert abs(value - db_now) < dt.timedelta(seconds=30)
    assert 0 <= stored.duration_ms < 30_000
    export = HistoryExport.objects.get(pk=export.pk)
    assert abs(export.at - db_now) < dt.timedelta(seconds=30)
    # A row another process finishes (loaded with the database's times): its duration is measured on one clock.
    stale = make_execution(job, user, outcome="sending", request_id="as-app-skewed-stale",
                           requested_at=db_now - Execution.stale_after() - dt.timedelta(minutes=15))
    with app_role.acting():
        assert press.reconcile_stale(job) == 1
    stale = Execution.objects.get(pk=stale.pk)
    assert stale.outcome == "interrupted"
    expected_ms = (Execution.stale_after() + dt.timedelta(minutes=15)).total_seconds() * 1000
    assert expected_ms <= stale.duration_ms < expected_ms + 30_000


def test_notifications_and_missed_runs_as_the_app_role(
    app_role, job, users, clock, ips_emulator, django_capture_on_commit_callbacks, settings
):
    """A subscription made on the Settings page, a missed run recorded by the watcher, its
    notification fanned out, claimed, sent and logged, and the sweep: all as the app's role."""
    from django.core import mail

    from jobs.models import Chore, MissedRun, Notification, Subscription
    from jobs.services import chores, notify

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user = users["IpsUser"]
    user.email = "ipsuser@example.com"
    user.save(update_fields=["email"])
    with app_role.acting():
        subscription, _ = notify.add_subscription(user, scope="company", company=job.company, channel="email", url="",
                                                  results={f: f == "on_missed" for f in Subscription.RESULTS})
        fire = timezone.now() - dt.timedelta(hours=1)
        with django_capture_on_commit_callbacks(execute=False):
            assert watch._record_missed(job, fire, timezone.now())
        missed = MissedRun.objects.get(job=job, fire_time=fire)
        [pk] = notify.fan_out("run_missed", missed.pk)
        assert "sent" in notify.deliver(pk).text
        assert Notification.objects.get(pk=pk).attempts_made.filter(ok=True).exists()
        chores.start_chore(chores.RESUME_NOTIFICATIONS)
        token = Chore.objects.get(name=chores.RESUME_NOTIFICATIONS).token
        assert "0 notifications left behind" in chores.resume_notifications_chore(token)
        subscription.delete()  # the log stays
        assert Notification.objects.filter(pk=pk, subscription=None).exists()
    assert len(mail.outbox) == 1
