"""Stop, the run details page and the Active-in-IPS panel: each with its own
IPS operation's table of user types (stopJob, getJobLogDetails, getActiveJobs),
against the emulator over HTTP and on its clock. Runs are named, and their
results recorded, by their company's watcher (``look``); the panel shows what
the watcher last saw, the run's page asks IPS for its log lines."""

import json
import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from jobs.services import activity, press
from jobs.models import Execution

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, NO_MEMBERSHIP, OTHER_COMPANY_ONLY, RUN_SECONDS, look, press_run, soap_calls

# User types authorized for each operation (ips-api.md), plus the superuser.
STOP = {"IpsAdmin", "IpsCompanyAdmin", "IpsUser", "TrialSiteAdmin", "TrialSiteUser", "ImagePortalAdmin",
        "ImagePortalContrib", "ImagePortalContribUser", "admin"}
ACTIVE = STOP
LOGS = STOP | {"ImagePortalUser"}
DETAILS = LOGS - {"TrialSiteAdmin"}


@pytest.fixture
def running(clock, job, users):
    """A run of My Test Job, half done, as its company's watcher last saw it."""
    execution = press_run(job, users["IpsUser"], "running-0001")
    assert execution.outcome == "accepted", execution.message
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_state == "Running"
    return execution


# --- Stop ----------------------------------------------------------------------


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_stop_follows_the_stop_job_table(actor, client, login, job, running, ips_emulator):
    login(actor)
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    stops = soap_calls(ips_emulator, "stopJob")
    rows = Execution.objects.filter(operation="stopJob")
    if actor == ANONYMOUS:
        assert response.status_code == 200 and response["HX-Redirect"].startswith(reverse("login"))
        assert not rows.exists() and stops == []
    elif actor in STOP:
        assert response.status_code == 200, response.content[:300]
        [row] = rows
        assert (row.outcome, row.username, row.ips_run_handle) == ("accepted", actor.lower(), running.ips_run_handle)
        assert [c["job_handle"] for c in stops] == [job.handle]  # the reference's example: the job's handle
        assert "IPS is stopping “My Test Job”" in response.content.decode()
    elif actor in (NO_MEMBERSHIP, OTHER_COMPANY_ONLY):
        assert response.status_code == 404
        assert [r.outcome for r in rows] == ["denied"] and stops == []
        assert "My Test Job" not in response.content.decode()
    else:
        assert response.status_code == 403
        [row] = rows
        assert row.outcome == "denied" and stops == []
        assert f"Your role {actor} in company 47 cannot stop jobs (stopJob)." in response.content.decode()
        assert "My Test Job" not in response.content.decode()


def test_a_company_admin_may_stop_what_it_may_not_run(client, login, job, running, ips_emulator):
    login("IpsCompanyAdmin")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 403
    assert client.post(reverse("jobs:stop", args=[job.pk]), **HTMX).status_code == 200


def test_the_stopped_run_ends_stopped(clock, client, login, job, running, ips_emulator):
    login("IpsUser")
    assert client.post(reverse("jobs:stop", args=[job.pk]), **HTMX).status_code == 200
    look(job.company)
    running.refresh_from_db()
    assert running.ips_state == "Stopping" and not running.ips_result
    clock.advance(RUN_SECONDS)
    assert look(job.company).ended == 1
    running.refresh_from_db()
    assert running.ips_result == "stopped" and running.ips_result_label == "stopped"
    poll = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    assert poll.status_code == 286


def test_stop_with_nothing_running_says_so(clock, client, login, job, running):
    clock.advance(RUN_SECONDS * 3)
    login("IpsUser")
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    [row] = Execution.objects.filter(operation="stopJob")
    assert row.outcome == "not_running"
    assert "IPS reports no run of “My Test Job” to stop. Nothing was sent." in response.content.decode()


def test_a_second_stop_while_ips_is_stopping_sends_nothing(client, login, job, running, ips_emulator):
    login("IpsUser")
    assert client.post(reverse("jobs:stop", args=[job.pk]), **HTMX).status_code == 200
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert response.status_code == 409 and "already stopping" in response.content.decode()
    assert len(soap_calls(ips_emulator, "stopJob")) == 1


def test_a_run_started_by_the_ips_schedule_can_be_stopped(clock, client, login, job, ips_emulator):
    handle = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    login("IpsUser")
    assert client.post(reverse("jobs:stop", args=[job.pk]), **HTMX).status_code == 200
    assert [c["job_handle"] for c in soap_calls(ips_emulator, "stopJob")] == [job.handle]
    assert Execution.objects.get(operation="stopJob").ips_run_handle == handle
    assert [r["state"] for r in ips_emulator.state.active_runs(job.handle)] == ["Stopping"]
    # Its own row (the watcher's) ends stopped.
    clock.advance(RUN_SECONDS)
    look(job.company)
    [run] = Execution.objects.filter(operation="executeJob", ips_run_handle=handle)
    assert run.started_by == Execution.StartedBy.SCHEDULE and run.ips_result == "stopped"


def test_stop_sends_the_scheduled_jobs_handle_as_the_reference_shows(clock, client, login, job, running, ips_emulator):
    # r-stop-job.md sends <jobHandle>47|My Test Job|</jobHandle>; the emulator, like IPS may,
    # refuses a run's handle there (30001). The audit row keeps which run was stopped.
    login("IpsUser")
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert response.status_code == 200, response.content[:300]
    [stop] = soap_calls(ips_emulator, "stopJob")
    assert (stop["company_handle"], stop["job_handle"]) == ("47", "47|My Test Job|")
    assert [r["state"] for r in ips_emulator.state.active_runs(job.handle)] == ["Stopping"]
    row = Execution.objects.get(operation="stopJob")
    assert (row.outcome, row.ips_run_handle) == ("accepted", running.ips_run_handle)


@pytest.mark.parametrize("kind", ["soap_fault", "http_500_html", "drop_connection"])
def test_a_stop_that_fails_says_what_happened(kind, client, login, job, running, ips_emulator):
    params = {"code": 30000, "reason": "Stop failed"} if kind == "soap_fault" else {}
    ips_emulator.state.inject(kind, operation="stopJob", **params)
    login("IpsUser")
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    [row] = Execution.objects.filter(operation="stopJob")
    assert row.outcome in ("refused", "unreachable", "ips_error")
    assert escape(row.message) in response.content.decode()
    if kind == "soap_fault":
        assert row.message == "IPS refused to stop the run: 30000 EXCEPTION — Stop failed."
    else:
        assert "may or may not be stopping" in row.message


def test_a_failed_look_before_stopping_says_nothing_was_stopped(client, login, job, running, ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="getActiveJobs")
    login("IpsUser")
    response = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    [row] = Execution.objects.filter(operation="stopJob")
    assert "Nothing was stopped" in row.message and "may or may not" not in row.message
    assert soap_calls(ips_emulator, "stopJob") == []


def test_a_stop_is_never_a_jobs_last_run(client, login, job, running):
    login("IpsUser")
    client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert Execution.objects.last_run_of(job) == running


def test_stop_needs_post(client, login, job, running):
    login("IpsUser")
    assert client.get(reverse("jobs:stop", args=[job.pk])).status_code == 405
    assert not Execution.objects.filter(operation="stopJob").exists()


# --- Run details -------------------------------------------------------------------


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_run_details_follow_get_job_log_details(actor, clock, client, login, job, running):
    clock.advance(RUN_SECONDS)
    login(actor)
    response = client.get(reverse("jobs:run_detail", args=[running.pk]))
    body = response.content.decode()
    if actor == ANONYMOUS:
        assert response.status_code == 302
    elif actor not in LOGS:
        assert response.status_code == 404 and "My Test Job" not in body
    elif actor in DETAILS:
        assert response.status_code == 200
        assert running.ips_run_handle in body and '<table class="details">' in body
        assert '<tr class="log-beginimageservingpublish">' in body
    else:  # TrialSiteAdmin: the row (with what the watcher recorded), but not the details
        assert response.status_code == 200
        assert f"Your role {actor} in company 47 cannot see job log details (getJobLogDetails)." in body
        assert '<table class="details">' not in body and '<tr class="log-' not in body


def test_run_details_show_a_failed_runs_errors_file_by_file(clock, client, login, job, users, ips_emulator):
    ips_emulator.state.jobs[job.handle].outcome = "errors"
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    login("IpsUser")
    body = client.get(reverse("jobs:run_detail", args=[execution.pk]) + "?show=problems").content.decode()
    assert "finished: 1 error" in body
    assert "ImageServingPublishError" in body and "unsupported file format" in body
    assert "BeginImageServingPublish" not in body  # only warnings and errors
    everything = client.get(reverse("jobs:run_detail", args=[execution.pk])).content.decode()
    assert "BeginImageServingPublish" in everything


def test_run_details_page_through_the_log(clock, client, login, job, users, ips_emulator, monkeypatch):
    monkeypatch.setattr(activity, "DETAILS_PER_PAGE", 3)
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)  # names the run: its page asks IPS for its log by that name
    login("IpsUser")
    url = reverse("jobs:run_detail", args=[execution.pk])
    first = client.get(url).content.decode()
    second = client.get(url + "?page=2").content.decode()
    assert "Later →" in first and "← Earlier" in second
    assert "BeginImageServingPublish" in first and "BeginImageServingPublish" not in second
    assert client.get(url + "?page=x").status_code == 200


def test_run_details_offer_the_handles_to_copy(clock, client, login, running):
    login("IpsUser")
    body = client.get(reverse("jobs:run_detail", args=[running.pk])).content.decode()
    assert f'data-copy="{escape(running.job_handle)}"' in body
    assert f'data-copy="{escape(running.ips_run_handle)}"' in body


def test_run_details_of_an_unknown_row_are_not_found(client, login, users):
    login("IpsUser")
    assert client.get(reverse("jobs:run_detail", args=[999])).status_code == 404


def test_history_and_the_jobs_page_link_to_run_details(client, login, running):
    login("IpsUser")
    url = reverse("jobs:run_detail", args=[running.pk])
    assert url in client.get(reverse("jobs:history")).content.decode()
    assert url in client.get(reverse("jobs:list")).content.decode()


def test_history_shows_the_ips_result_and_runtime(clock, client, login, job, users, ips_emulator):
    ips_emulator.state.jobs[job.handle].outcome = "fatal"
    execution = press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    login("IpsUser")
    body = client.get(reverse("jobs:history")).content.decode()
    assert 'class="run-status run-status-bad">fatal error<' in body
    row = Execution.objects.get(pk=execution.pk)
    assert row.ips_runtime is not None
    listing = client.get(reverse("jobs:list")).content.decode()
    assert "fatal error" in listing


# --- Active in IPS -------------------------------------------------------------------


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_active_in_ips_follows_get_active_jobs(actor, client, login, job, running, ips_emulator):
    login(actor)
    calls = len(ips_emulator.state.calls)
    response = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX)
    assert len(ips_emulator.state.calls) == calls  # what the watcher saw: IPS is not asked
    if actor == ANONYMOUS:
        assert response.status_code == 200 and "HX-Redirect" in response
    elif actor in ACTIVE:
        assert response.status_code == 200
        assert running.ips_run_name in response.content.decode()
    else:
        assert response.status_code == 286 and response.content == b""


def test_active_in_ips_lists_runs_started_by_anyone_and_disables_run(clock, client, login, job, ips_emulator):
    handle = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    login("IpsUser")
    body = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX).content.decode()
    assert handle.split("||", 1)[1] in body and "Running" in body
    assert "(IPS schedule)" in body
    assert re.search(rf'<template>\s*<td class="action" id="action-{job.pk}" hx-swap-oob="true"', body)  # cells travel in <template>s
    assert "Running in IPS" in body and reverse("jobs:stop", args=[job.pk]) in body
    clock.advance(RUN_SECONDS * 2)
    look(job.company)
    # The page shows the job busy (its cell's input, which the poller includes): its cell comes back idle.
    body = client.get(reverse("jobs:active", args=[job.company.pk]), {"busy": job.pk}, **HTMX).content.decode()
    assert "IPS is running nothing in this company right now." in body
    assert reverse("jobs:run", args=[job.pk]) in body  # Run offered again


def test_active_in_ips_says_when_ips_cannot_be_asked(client, login, job, running, ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="getActiveJobs")
    assert "HTTP 500" in look(job.company, ok=False).error
    login("IpsUser")
    response = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX)
    assert response.status_code == 200  # polled again
    body = response.content.decode()
    assert "The last look at IPS failed" in body and "HTTP 500" in body and "The watcher asks again." in body
    assert running.ips_run_name in body  # as of the last look that worked


def test_run_and_stop_tell_the_active_panel_to_ask_again(client, login, job, running):
    login("IpsUser")
    stop = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    assert json.loads(stop["HX-Trigger"]) == {"ips-changed": {}}
    assert 'hx-trigger="load, every 5s, ips-changed from:body"' in client.get(reverse("jobs:list")).content.decode()


def test_a_refused_look_before_acting_says_so_not_that_ips_refused_the_action(client, login, job, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getActiveJobs", code=20003, reason="No permission",
                              fault="authorizationFault")
    login("IpsUser")
    client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)
    row = Execution.objects.get(operation="stopJob")
    assert row.outcome == "refused" and row.fault_code == 20003
    assert row.message.startswith("IPS refused to say whether “My Test Job” is running (getActiveJobs: 20003")
    assert "Nothing was stopped" in row.message


def test_an_interrupted_stop_says_the_run_may_or_may_not_be_stopping(job, users):
    import datetime as dt

    from django.utils import timezone

    from .conftest import make_execution

    make_execution(job, users["IpsUser"], "sending", operation="stopJob",
                   requested_at=timezone.now() - dt.timedelta(hours=1))
    assert press.reconcile_stale(job) == 1
    row = Execution.objects.get()
    assert "may or may not have stopped the run" in row.message


def test_stopping_a_later_run_does_not_make_an_earlier_one_stopped(clock, client, login, job, users, ips_emulator):
    first = press_run(job, users["IpsUser"], "first-1")
    clock.advance(RUN_SECONDS * 2)  # over, not yet recorded
    later = ips_emulator.state.fire_schedule(job.handle)  # IPS's own schedule starts another
    clock.advance(RUN_SECONDS / 2)
    login("IpsUser")
    assert client.post(reverse("jobs:stop", args=[job.pk]), **HTMX).status_code == 200
    look(job.company)
    first.refresh_from_db()
    assert first.ips_result == "ok" and first.ips_run_handle != later
    clock.advance(RUN_SECONDS)
    look(job.company)
    [stopped] = Execution.objects.filter(operation="executeJob", ips_run_handle=later)
    assert stopped.ips_result == "stopped"
