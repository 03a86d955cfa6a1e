"""Job actions are one table, and a run's end is announced once: the seams the next features grow from.

A fake action (pauseJob) added as one row and a send function gets its button,
its role check for every user type, its confirm, its audit row and its
message, with no other change. A press of Run that reached IPS wakes its
company's watcher (services.watch); the watcher records the run's end once and
``run_ended`` fires once, after the commit, never for a rolled-back one:
for a result from IPS's log, for "no result from IPS" past the deadline and
for "not started by IPS" alike.
"""

import datetime as dt

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs import events, ips
from jobs.models import CompanyWatch, Execution
from jobs.services import actions, press, watch

from .conftest import ALL_ACTORS, HTMX, RUN_SECONDS, executes, look, press_run, soap_calls
from .test_watch_results import forget_runs, run_handles


# actor -> (HTTP status, outcome of the one audit row, or None for no row).
# Written out from shared/ips-api.md's pauseJob row, not derived from roles.py.
PAUSE_TABLE = {
    "IpsAdmin": (200, "accepted"),
    "IpsCompanyAdmin": (200, "accepted"),
    "IpsUser": (200, "accepted"),
    "WebServiceUser": (403, "denied"),
    "TrialSiteAdmin": (200, "accepted"),
    "TrialSiteUser": (200, "accepted"),
    "ImagePortalAdmin": (200, "accepted"),
    "ImagePortalUser": (403, "denied"),
    "ImagePortalContrib": (200, "accepted"),
    "ImagePortalContribUser": (200, "accepted"),
    "nomember": (404, "denied"),
    "othercompany": (404, "denied"),
    "admin": (200, "accepted"),
    "anonymous": (200, None),  # htmx: HX-Redirect to the login page
}


def send_pause(execution, job):
    """The fake action's send function, as a real one would be written: pauseJob on the job."""
    try:
        press.mark_sent(execution)
        ips.client_for(job.company.connection).pause_job(job.company.handle, job.handle)
    except ips.IpsError as exc:
        return *actions.describe_error(exc, job, actions.ACTIONS["pause"]), exc
    return Execution.Outcome.ACCEPTED, f"IPS paused “{job.name}”.", None


@pytest.fixture
def pause(monkeypatch):
    """The table with one more row: nothing else of the dashboard changes."""
    row = actions.Action(
        "pause",
        "pauseJob",
        send_pause,
        label="Pause",
        confirm="Pause “%(job)s” in company %(handle)s (%(company)s)?",
        verb="pause the job",
        done="Nothing was paused",
        uncertain="The job may or may not be paused.",
        button_class="pause",
    )
    monkeypatch.setitem(actions.ACTIONS, "pause", row)
    return row


def test_the_pause_table_covers_every_actor():
    assert sorted(PAUSE_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_a_new_action_row_gets_a_role_check_an_audit_row_and_its_message(
    actor, pause, client, login, job, ips_emulator, django_capture_on_commit_callbacks
):
    user = login(actor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("jobs:press", args=[job.pk, "pause"]), **HTMX)

    status, outcome = PAUSE_TABLE[actor]
    assert response.status_code == status
    rows = list(Execution.objects.all())
    pauses = soap_calls(ips_emulator, "pauseJob")
    if outcome is None:
        assert rows == [] and pauses == []
        assert response["HX-Redirect"].startswith(reverse("login"))
        return
    [row] = rows
    assert (row.operation, row.outcome, row.user, row.job) == ("pauseJob", outcome, user, job)
    assert len(pauses) == (1 if outcome == "accepted" else 0)
    body = response.content.decode()
    if outcome == "accepted":
        assert row.message == "IPS paused “My Test Job”."
        assert escape(row.message) in body
        assert ips_emulator.state.jobs["47|My Test Job|"].trigger_state == "Paused"
        # Not Run: no run in IPS to watch, and no company watcher woken for it.
        assert not row.is_open and not Execution.objects.open_runs().exists()
        assert not CompanyWatch.objects.exists()
    if status == 403:
        assert f"Your role {actor} in company 47 cannot pause jobs (pauseJob)." in body
        assert row.message == f"Your role {actor} in company 47 cannot pause jobs (pauseJob)."
    if status == 404:
        assert "My Test Job" not in body


def test_a_new_action_row_gets_its_button_and_confirm_by_its_own_role_check(pause, client, login, job):
    """IpsCompanyAdmin may pause jobs (pauseJob) though not run them (executeJob): each button asks its own operation."""
    login("IpsCompanyAdmin")
    page = client.get(reverse("jobs:list")).content.decode()
    assert f'action="{reverse("jobs:press", args=[job.pk, "pause"])}"' in page
    assert 'hx-confirm="Pause “My Test Job” in company 47 (Demo Company)?"' in page
    assert ('<button type="submit" class="pause" data-action="pause"><span aria-hidden="true">Pause</span>'
            '<span class="sr-only">Pause My Test Job</span>') in page
    assert f'action="{reverse("jobs:run", args=[job.pk])}"' not in page
    assert 'class="run" aria-disabled="true" title="Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)."' in page


def test_an_unknown_action_is_not_found(client, login, job):
    login("IpsAdmin")
    assert client.post(reverse("jobs:press", args=[job.pk, "launch"]), **HTMX).status_code == 404
    assert not Execution.objects.exists()


def test_an_unregistered_kind_of_work_fails_loudly(monkeypatch):
    monkeypatch.delitem(events.SCHEDULERS, events.CHORE)
    with pytest.raises(Exception, match="no task backend registered"):
        events.schedule(events.CHORE, "a-chore", "token", when=None)


# --- A press of Run wakes its company's watcher -------------------------------------


@pytest.fixture
def asleep(job, other_company):
    """Both companies' watchers asleep: their next looks an hour away."""
    watch.ensure_watches()
    later = timezone.now() + dt.timedelta(hours=1)
    CompanyWatch.objects.update(next_look_at=later)
    return later


def _next_look(company):
    return CompanyWatch.objects.get(pk=company.pk).next_look_at


@pytest.mark.parametrize("fate", ["accepted", "uncertain"])
def test_an_accepted_or_uncertain_press_wakes_its_companys_watcher(
    fate, job, users, other_company, ips_emulator, asleep
):
    """Whoever presses (a view, a test, a bench script), a press that reached IPS is looked for at
    once: no argument to forget. In the outcome's own commit (a rolled-back outcome wakes nobody)."""
    if fate == "uncertain":
        # executeJob is sent; IPS answers with an error page: it may or may not have started the run.
        ips_emulator.state.inject("http_500_html", operation="executeJob")
    before = timezone.now()
    execution = press_run(job, users["IpsUser"])
    if fate == "accepted":
        assert execution.outcome == "accepted", execution.message
    else:
        assert execution.outcome == "ips_error" and execution.is_uncertain, execution.message
    assert before <= _next_look(job.company) <= timezone.now()
    assert _next_look(other_company) == asleep  # its own company's watcher only
    # A watcher process's next round looks at that company now, and only at it.
    [result] = watch.watch_round("test-watcher")
    assert result.company == job.company and not result.error, result
    if fate == "accepted":
        assert Execution.objects.get(pk=execution.pk).ips_run_handle  # its run, found at that look


# --- A run's end, announced once ---------------------------------------------------


@pytest.fixture
def ended():
    """The run_ended events received, as (execution id, result)."""
    received = []

    def receiver(sender, execution_id, result, **kwargs):
        received.append((execution_id, result))

    events.run_ended.connect(receiver)
    yield received
    events.run_ended.disconnect(receiver)


@pytest.fixture
def deciding(clock, job, users, ips_emulator, dashboard_clock, settings, django_capture_on_commit_callbacks):
    """make(kind) -> a press, and the world just before the look that decides its end, for each way a
    run's end is recorded: "ok" (IPS's final log), "no_result" (IPS accepted the press but shows no run
    of it, past the deadline), "not_started" (a press of unknown fate IPS shows no run of past the grace)."""

    def make(kind):
        if kind == "not_started":
            ips_emulator.state.inject("http_500_html", operation="executeJob")
        if kind != "no_result":
            with django_capture_on_commit_callbacks(execute=True):
                execution = press_run(job, users["IpsUser"])
        if kind == "ok":
            assert execution.outcome == "accepted", execution.message
            clock.advance(RUN_SECONDS * 2)
        elif kind == "no_result":
            # IPS accepted executeJob, but no run of it ever shows (lost before any look saw it).
            before = run_handles(ips_emulator)
            with django_capture_on_commit_callbacks(execute=True):
                execution = press_run(job, users["IpsUser"])
            assert execution.outcome == "accepted", execution.message
            forget_runs(ips_emulator, run_handles(ips_emulator) - before)
            clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
            with django_capture_on_commit_callbacks(execute=True):
                look(job.company)  # past the grace, not past the deadline: still open
            assert Execution.objects.get(pk=execution.pk).is_open
            dashboard_clock.advance(settings.IPS_FOLLOW_DEADLINE + dt.timedelta(seconds=1))
        else:
            assert execution.is_uncertain, execution.message
            with django_capture_on_commit_callbacks(execute=True):
                look(job.company)  # within the grace: IPS may still show it
            assert Execution.objects.get(pk=execution.pk).is_open
            clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
        return execution

    return make


@pytest.mark.parametrize("kind", ["ok", "no_result", "not_started"])
def test_the_watcher_records_a_runs_end_once_and_announces_it_once_after_the_commit(
    kind, deciding, ended, job, django_capture_on_commit_callbacks
):
    execution = deciding(kind)
    # The look that records the end, in a transaction that rolls back: nothing recorded, nothing said.
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            assert look(job.company).ended == 1
            assert Execution.objects.get(pk=execution.pk).ips_result == kind
            raise RuntimeError("the transaction that recorded the end rolls back")
    assert ended == []
    assert Execution.objects.get(pk=execution.pk).ips_result == ""
    # The next look records it; announced after its commit, not before.
    with django_capture_on_commit_callbacks(execute=False) as pending:
        assert look(job.company).ended == 1
    assert Execution.objects.get(pk=execution.pk).ips_result == kind
    assert ended == []
    for callback in pending:
        callback()
    assert ended == [(execution.pk, kind)]
    # Later looks find it recorded: no second event.
    with django_capture_on_commit_callbacks(execute=True):
        assert look(job.company).ended == 0
        assert look(job.company).ended == 0
    assert ended == [(execution.pk, kind)]


def test_a_browsers_poll_records_and_announces_nothing(
    deciding, ended, client, login, job, ips_emulator, django_capture_on_commit_callbacks
):
    """Polls read the row; only the watcher asks IPS and records the end (once)."""
    execution = deciding("ok")
    login("IpsUser")
    calls = len(ips_emulator.state.calls)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.get(reverse("jobs:status", args=[job.pk]), **HTMX).status_code == 200
    assert len(ips_emulator.state.calls) == calls
    assert ended == [] and Execution.objects.get(pk=execution.pk).ips_result == ""
    with django_capture_on_commit_callbacks(execute=True):
        look(job.company)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.get(reverse("jobs:status", args=[job.pk]), **HTMX).status_code == 286
    assert ended == [(execution.pk, "ok")]


@pytest.mark.parametrize("fate", ["denied", "already_running", "refused"])
def test_a_press_that_sent_nothing_is_no_run_to_watch(
    fate, job, users, ips_emulator, asleep, ended, clock, dashboard_clock, settings,
    django_capture_on_commit_callbacks,
):
    """Refused here, or answered at the look before executeJob (IPS runs the job already; IPS refused
    to say): executeJob never went out. No run to look for: the watcher is not woken for it, and
    never writes an IPS result on its row nor announces an end for it."""
    if fate == "already_running":
        ips_emulator.state.fire_schedule(job.handle)  # IPS's schedule is running it
    if fate == "refused":
        ips_emulator.state.inject("soap_fault", operation="getActiveJobs", code=30000, reason="Busy")
    user = users["IpsCompanyAdmin" if fate == "denied" else "IpsUser"]
    with django_capture_on_commit_callbacks(execute=True):
        execution = press_run(job, user)
    assert execution.outcome == fate and execution.sent_at is None, execution.message
    assert not execution.is_open and not execution.is_uncertain
    assert executes(ips_emulator) == []
    assert _next_look(job.company) == asleep
    # Long past the grace, in both clocks: a press of unknown fate would be settled by now.
    clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
    dashboard_clock.advance(settings.IPS_WATCH_GRACE + dt.timedelta(seconds=60))
    with django_capture_on_commit_callbacks(execute=True):
        look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == "" and not execution.ips_run_handle
    assert [e for e in ended if e[0] == execution.pk] == []


@pytest.mark.django_db(transaction=True)
def test_the_wake_commits_with_the_outcome_and_never_costs_it(job, users, other_company, ips_emulator, asleep,
                                                              monkeypatch):
    """The outcome and the wake are one commit; a wake that fails leaves the outcome recorded
    (IPS accepted the run: the row must say so) and the watcher asleep until its own next look."""
    from django.db import DatabaseError

    def broken(self, company_id, now=None):
        raise DatabaseError("the watch table is locked")

    monkeypatch.setattr(CompanyWatch.objects._queryset_class, "wake_now", broken)
    execution = press_run(job, users["IpsUser"])
    assert Execution.objects.get(pk=execution.pk).outcome == "accepted", execution.message
    assert _next_look(job.company) == asleep


@pytest.mark.django_db(transaction=True)
def test_an_outcome_whose_commit_fails_leaves_no_row_sending(job, users, other_company, ips_emulator, asleep,
                                                            monkeypatch):
    """gunicorn's timeout (SystemExit) between the outcome's UPDATE and its commit rolls the outcome
    back: the row, still 'sending' in the database, is marked interrupted, not left holding the job."""

    def killed(self, company_id, now=None):
        raise SystemExit(1)

    monkeypatch.setattr(CompanyWatch.objects._queryset_class, "wake_now", killed)
    with pytest.raises(SystemExit):
        press_run(job, users["IpsUser"])
    row = Execution.objects.get(job=job)
    assert row.outcome == "interrupted" and row.is_uncertain, (row.outcome, row.message)
