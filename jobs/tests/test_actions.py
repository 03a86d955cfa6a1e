"""Job actions are one table, and a run's end is announced once: the seams the next features grow from.

A fake action (pauseJob) added as one row and a send function gets its button,
its role check for every user type, its confirm, its audit row and its
message, with no other change. A run's ``run_ended`` event fires once, after
the commit, whoever recorded the result, and never for a rolled-back one.
"""

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils.html import escape

from ipsemulator.clock import ManualClock
from jobs import events, ips
from jobs.models import Execution, RunFollow
from jobs.services import actions, follow, press
from jobs.services import status as run_state

from .conftest import ALL_ACTORS, HTMX, press_run, soap_calls

RUN_SECONDS = 10.0

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
    actor, pause, client, login, job, ips_emulator
):
    user = login(actor)
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
        # Not Run: no follow for an action without on_accepted.
        assert not RunFollow.objects.exists()
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
    assert '<button type="submit" class="pause">Pause' in page
    assert f'action="{reverse("jobs:run", args=[job.pk])}"' not in page
    assert 'class="run" disabled title="Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)."' in page


def test_an_unknown_action_is_not_found(client, login, job):
    login("IpsAdmin")
    assert client.post(reverse("jobs:press", args=[job.pk, "launch"]), **HTMX).status_code == 404
    assert not Execution.objects.exists()


def test_a_press_of_run_always_schedules_its_follow(job, users, monkeypatch, django_capture_on_commit_callbacks):
    """Whoever presses (a view, a test, a bench script), an accepted run is followed: no argument to forget."""
    scheduled = []
    monkeypatch.setitem(events.SCHEDULERS, events.FOLLOW, lambda *args, when: scheduled.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted"
    follow_ = RunFollow.objects.get(execution=execution)
    assert scheduled == [(execution.pk, follow_.token)]


def test_an_unregistered_kind_of_work_fails_loudly(monkeypatch):
    monkeypatch.delitem(events.SCHEDULERS, events.FOLLOW)
    with pytest.raises(Exception, match="no task backend registered"):
        events.schedule(events.FOLLOW, 1, "token", when=None)


# --- A run's end, announced once ---------------------------------------------------


@pytest.fixture
def clock(ips_emulator):
    manual = ManualClock(5000.0)
    ips_emulator.state.clock = manual
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


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
def accepted(clock, job, users, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(events.SCHEDULERS, events.FOLLOW, lambda *args, when: None)
    with django_capture_on_commit_callbacks(execute=True):
        execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    return execution


def test_a_run_ended_event_fires_once_after_the_worker_records_the_result(
    accepted, clock, ended, django_capture_on_commit_callbacks
):
    token = RunFollow.objects.get(pk=accepted.pk).token
    clock.advance(RUN_SECONDS * 2)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        assert follow.follow_step(accepted.pk, token) == "finished"
    # Recorded, but not announced before the commit.
    assert ended == []
    for callback in pending:
        callback()
    assert ended == [(accepted.pk, "ok")]
    # A later step, or a browser's poll, finds the result recorded: no second event.
    token = RunFollow.objects.get(pk=accepted.pk).token
    with django_capture_on_commit_callbacks(execute=True):
        assert follow.follow_step(accepted.pk, token) == "done"
        follow.observe_run(Execution.objects.get(pk=accepted.pk))
    assert ended == [(accepted.pk, "ok")]


def test_a_run_ended_event_fires_once_after_a_browser_poll_records_the_result(
    accepted, clock, ended, client, login, job, django_capture_on_commit_callbacks
):
    login("IpsUser")
    clock.advance(RUN_SECONDS * 2)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.get(reverse("jobs:status", args=[job.pk]), **HTMX).status_code == 286
    assert ended == [(accepted.pk, "ok")]
    # The worker's next step finds it over too.
    token = RunFollow.objects.get(pk=accepted.pk).token
    with django_capture_on_commit_callbacks(execute=True):
        assert follow.follow_step(accepted.pk, token) == "finished"
    assert ended == [(accepted.pk, "ok")]


def test_no_run_ended_event_for_a_rolled_back_transaction(accepted, clock, ended, django_capture_on_commit_callbacks):
    clock.advance(RUN_SECONDS * 2)
    status = run_state.run_status(accepted)
    assert status.finished
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            assert follow.record_status(accepted, status)
            raise RuntimeError("the transaction that recorded the end rolls back")
    assert ended == []
    assert Execution.objects.get(pk=accepted.pk).ips_result == ""
    with django_capture_on_commit_callbacks(execute=True):
        assert follow.record_status(accepted, status)
    assert ended == [(accepted.pk, "ok")]


def test_a_run_with_no_result_by_its_deadline_is_announced_once(accepted, ended, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert follow.record_no_result(accepted)
        assert not follow.record_no_result(accepted)
    assert ended == [(accepted.pk, "no_result")]
