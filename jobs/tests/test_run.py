"""Run: who may press it, and what every outcome looks like, against the emulator over HTTP."""

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.services import press
from jobs.models import Execution, Job

from .conftest import ALL_ACTORS, HTMX, executes, look, make_execution, press_run

# actor -> (HTTP status, outcome of the one audit row, or None for no row).
# Written out from shared/ips-api.md's executeJob row, not derived from roles.py.
RUN_TABLE = {
    "IpsAdmin": (200, "accepted"),
    "IpsCompanyAdmin": (403, "denied"),
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


def test_the_run_table_covers_every_actor():
    assert sorted(RUN_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_run_role_table(actor, client, login, job, ips_emulator):
    user = login(actor)
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)

    status, outcome = RUN_TABLE[actor]
    assert response.status_code == status
    rows = list(Execution.objects.all())
    if outcome is None:
        assert rows == []
        assert response["HX-Redirect"].startswith(reverse("login"))
        assert executes(ips_emulator) == []
        return
    assert len(rows) == 1
    row = rows[0]
    assert row.outcome == outcome
    assert row.user == user
    assert row.username == user.username
    assert row.job == job and row.job_handle == "47|My Test Job|" and row.company_handle == "47"
    expected_role = {"nomember": "", "othercompany": "", "admin": "IpsAdmin"}.get(actor, actor)
    assert row.role == expected_role
    assert len(executes(ips_emulator)) == (1 if outcome == "accepted" else 0)
    if outcome == "accepted":
        assert "IPS accepted" in response.content.decode()
    if status == 403:
        assert f"Your role {actor} in company 47 cannot run jobs (executeJob)." in response.content.decode()
    if status == 404:
        assert "My Test Job" not in response.content.decode()


def test_anonymous_without_htmx_is_sent_to_login(client, job):
    response = client.post(reverse("jobs:run", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Execution.objects.exists()


def test_it_refuses_get(client, login, job, ips_emulator):
    login("IpsUser")
    response = client.get(reverse("jobs:run", args=[job.pk]))
    assert response.status_code == 405
    assert not Execution.objects.exists()
    assert executes(ips_emulator) == []


def test_it_requires_csrf(users, job, ips_emulator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["IpsUser"])
    response = browser.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 403
    assert not Execution.objects.exists()
    assert executes(ips_emulator) == []

    page = browser.get(reverse("jobs:list"))
    token = page.cookies["csrftoken"].value
    assert '"X-CSRFToken": "' in page.content.decode()  # hx-headers on <body>
    response = browser.post(reverse("jobs:run", args=[job.pk]), HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    assert Execution.objects.get().outcome == "accepted"


def test_it_answers_404_for_unknown_job(client, login, job):
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[987654]), **HTMX)
    assert response.status_code == 404
    assert not Execution.objects.exists()


def test_accepted_run_records_everything(client, login, job, ips_emulator):
    user = login("IpsUser")
    response = client.post(
        reverse("jobs:run", args=[job.pk]), HTTP_USER_AGENT="pytest-browser/1.0", **HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="job-{job.pk}"' in body  # the row to swap
    assert 'hx-swap-oob="true"' in body and "IPS accepted “My Test Job”" in body
    row = Execution.objects.get()
    assert row.outcome == "accepted" and row.operation == "executeJob"
    assert row.user == user and row.role == "IpsUser"
    assert row.requested_at <= row.sent_at <= row.finished_at
    assert row.duration_ms is not None
    assert row.client_ip == "127.0.0.1"
    assert row.user_agent == "pytest-browser/1.0"
    assert row.request_id and row.request_id == response["X-Request-ID"]
    assert row.fault_code is None and row.fault_reason == ""
    [call] = executes(ips_emulator)
    assert call["company_handle"] == "47" and call["job_handle"] == "47|My Test Job|"
    assert call["user"] == "service@example.com"


def test_without_htmx_it_redirects_with_a_message(client, login, job):
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), follow=True)
    assert response.redirect_chain == [(reverse("jobs:list"), 302)]
    assert "IPS accepted “My Test Job” and is running it now." in response.content.decode()
    assert Execution.objects.get().outcome == "accepted"


FAULTS = [
    ("authenticationFault", 10001, 502, "service account"),
    ("authorizationFault", 20003, 502, "not your own role"),
    ("ipsApiFault", 30001, 502, "IPS refused to run the job"),
]


@pytest.mark.parametrize("family,code,status,words", FAULTS)
def test_ips_fault_is_refused_by_ips(family, code, status, words, client, login, job, ips_emulator):
    login("IpsUser")
    ips_emulator.state.inject(
        "soap_fault", operation="executeJob", fault=family, code=code, reason="Injected <reason> & more"
    )
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == status
    row = Execution.objects.get()
    assert row.outcome == "refused"
    assert (row.fault_family, row.fault_code, row.fault_reason) == (family, code, "Injected <reason> & more")
    body = response.content.decode()
    assert str(code) in body and words in body
    assert "Injected &lt;reason&gt; &amp; more" in body


def test_unreachable_ips(client, login, job, unused_url):
    login("IpsUser")
    connection = job.company.connection
    connection.service_url = unused_url
    connection.save()
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    row = Execution.objects.get()
    assert row.outcome == "unreachable"
    assert "could not be reached" in row.message and "Nothing was sent" in row.message
    assert row.message in response.content.decode()


def test_timed_out(client, login, job, ips_emulator, hold_calls, settings):
    settings.IPS_READ_TIMEOUT = 0.4
    login("IpsUser")
    hold = hold_calls(ips_emulator, "executeJob")  # no reply until the test is over
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert hold.received == 1
    assert response.status_code == 504
    row = Execution.objects.get()
    assert row.outcome == "timed_out"
    assert "did not answer within 0.4 s" in row.message and "may or may not have started" in row.message
    assert escape(row.message) in response.content.decode()
    assert row.duration_ms < 2000


@pytest.mark.parametrize(
    "kind,outcome,words",
    [
        ("http_500_html", "ips_error", "HTTP 500 error page"),
        ("malformed_xml", "bad_reply", "could not be read"),
        # An empty Body is executeJob's success ("Response: None"): test_ips_envelopes.py.
        ("drop_connection", "unreachable", "closed the connection"),
    ],
)
def test_broken_replies(kind, outcome, words, client, login, job, ips_emulator):
    login("IpsUser")
    ips_emulator.state.inject(kind, operation="executeJob")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    row = Execution.objects.get()
    assert row.outcome == outcome
    assert words in row.message
    assert "may or may not have started" in row.message
    assert escape(row.message) in response.content.decode()


def test_a_job_ips_reports_active_is_not_run_again(client, login, job, ips_emulator, ips_clock):
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    second = Execution.objects.order_by("-id").first()
    assert second.outcome == "already_running"
    assert "already running" in second.message
    assert len(executes(ips_emulator)) == 1


def _in_flight(job, user, requested_at):
    """A run another worker has started (or died in)."""
    return make_execution(job, user, "sending", role="TrialSiteUser", requested_at=requested_at)


def test_an_in_flight_run_blocks_another(client, login, users, job, ips_emulator):
    login("IpsUser")
    _in_flight(job, users["TrialSiteUser"], timezone.now())
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    latest = Execution.objects.order_by("-id").first()
    assert latest.outcome == "already_running"
    assert "already being started by trialsiteuser" in latest.message
    assert executes(ips_emulator) == []


def test_a_stale_in_flight_run_is_interrupted_and_the_job_runs(client, login, users, job, ips_emulator):
    login("IpsUser")
    stale = _in_flight(job, users["TrialSiteUser"], timezone.now() - dt.timedelta(minutes=10))
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200
    stale.refresh_from_db()
    assert stale.outcome == "interrupted"
    assert len(executes(ips_emulator)) == 1


def test_a_job_gone_from_ips_is_not_run(client, login, job, ips_emulator):
    login("IpsUser")
    Job.objects.filter(pk=job.pk).update(is_gone=True, gone_at=timezone.now())
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    assert Execution.objects.get().outcome == "job_gone"
    assert executes(ips_emulator) == []


def test_a_downgraded_role_loses_the_right_at_the_next_request(client, login, users, job, ips_emulator):
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    users["IpsUser"].memberships.update(role="IpsCompanyAdmin")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 403
    users["IpsUser"].memberships.all().delete()
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 404
    assert list(Execution.objects.order_by("id").values_list("outcome", "role")) == [
        ("accepted", "IpsUser"),
        ("denied", "IpsCompanyAdmin"),
        ("denied", ""),
    ]
    assert len(executes(ips_emulator)) == 1


# --- Following a run in IPS -----------------------------------------------------


def test_an_accepted_run_is_followed_until_ips_logs_it(client, login, job, ips_emulator, ips_clock):
    ips_emulator.state.job_duration = 10
    login("IpsUser")
    body = client.post(reverse("jobs:run", args=[job.pk]), **HTMX).content.decode()
    status_url = reverse("jobs:status", args=[job.pk])
    assert f'hx-get="{status_url}"' in body

    # The poll shows what the company's watcher last saw; it never asks IPS itself.
    look(job.company)
    response = client.get(status_url, **HTMX)
    assert response.status_code == 200  # still active: keep polling
    assert "%" in response.content.decode()
    ips_clock.advance(5)
    look(job.company)
    response = client.get(status_url, **HTMX)
    assert response.status_code == 200  # halfway: keep polling
    assert "Running" in response.content.decode() and "50%" in response.content.decode()
    ips_clock.advance(5)
    calls = len(ips_emulator.state.calls)
    response = client.get(status_url, **HTMX)
    assert response.status_code == 200  # ended in IPS, but not seen yet: the poll goes on
    assert len(ips_emulator.state.calls) == calls
    look(job.company)
    response = client.get(status_url, **HTMX)
    assert response.status_code == 286  # htmx stops polling
    assert "IPS log: 4 ok, 0 errors, 0 warnings" in response.content.decode()


def test_a_recent_accepted_run_is_followed_after_a_reload(client, login, users, job, ips_emulator):
    login("IpsUser")
    status_url = reverse("jobs:status", args=[job.pk])
    assert f'hx-get="{status_url}"' not in client.get(reverse("jobs:list")).content.decode()
    assert press_run(job, users["IpsUser"], "x").outcome == "accepted"
    assert f'hx-get="{status_url}"' in client.get(reverse("jobs:list")).content.decode()
    # An old run whose end IPS reported is history: nothing to follow.
    other = Job.objects.get(handle="47|Nightly | Publish|")
    old = make_execution(other, users["IpsUser"], "accepted", requested_at=timezone.now() - dt.timedelta(hours=1))
    other_url = reverse("jobs:status", args=[other.pk])
    assert f'hx-get="{other_url}"' in client.get(reverse("jobs:list")).content.decode()  # no result yet
    old.ips_result = "ok"
    old.save()
    assert f'hx-get="{other_url}"' not in client.get(reverse("jobs:list")).content.decode()


@pytest.mark.parametrize(
    "actor,status",
    [("IpsUser", 200), ("IpsCompanyAdmin", 200), ("ImagePortalUser", 286), ("WebServiceUser", 286),
     ("nomember", 286), ("othercompany", 286), ("admin", 200)],
)
def test_status_needs_get_active_jobs(actor, status, client, login, users, job, ips_emulator, ips_clock):
    login(actor)  # the run stays New: the clock stands still
    assert press_run(job, users["IpsUser"], "x").outcome == "accepted"
    response = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    assert response.status_code == status
    if status == 286:
        assert response.content == b""


def test_a_run_finishing_after_it_was_taken_for_dead_keeps_the_final_row(job, users, ips_emulator, caplog):
    """reconcile_stale() may give up on a slow live run; its late answer must not rewrite history."""
    execution = make_execution(
        job, users["IpsUser"], "sending", requested_at=timezone.now() - dt.timedelta(minutes=10), request_id="late-1"
    )
    assert press.reconcile_stale(job) == 1
    # IPS answers after all (this in-memory row still thinks it is sending).
    assert press.finish(execution, "accepted", "IPS accepted it.") is False
    execution.refresh_from_db()
    assert execution.outcome == "interrupted"
    assert "late-1" in caplog.text and "was marked interrupted" in caplog.text


# --- What the reviewer found --------------------------------------------------


def test_a_run_ips_lists_as_done_does_not_block_the_next(client, login, job, ips_emulator, ips_clock):
    ips_emulator.state.job_duration = 10
    login("IpsUser")
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    ips_clock.advance(10.5)  # finished, but still listed by getActiveJobs as Done
    assert [r["state"] for r in ips_emulator.state.active_runs("47|My Test Job|")] == ["Done"]
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    assert len(executes(ips_emulator)) == 2


def test_a_row_finished_by_another_process_is_not_overwritten(users, job):
    mine = make_execution(job, users["IpsUser"], "sending", requested_at=timezone.now() - dt.timedelta(minutes=10))
    theirs = Execution.objects.get(pk=mine.pk)
    assert press.finish(theirs, "accepted", "IPS accepted it.") is True
    # reconcile_stale() read the row while it was still 'sending'.
    assert press.finish(mine, "interrupted", "taken for dead") is False
    mine.refresh_from_db()
    assert mine.outcome == "accepted"


def test_reconcile_leaves_a_row_alone_that_its_run_just_finished(users, job, monkeypatch):
    stale = make_execution(job, users["IpsUser"], "sending", requested_at=timezone.now() - dt.timedelta(minutes=10))
    real_finish = press.finish

    def finish_first(execution, *args, **kwargs):
        # The live run writes its outcome between reconcile's read and its write.
        other = Execution.objects.get(pk=stale.pk)
        other.outcome = "accepted"
        other.save()
        return real_finish(execution, *args, **kwargs)

    monkeypatch.setattr(press, "finish", finish_first)
    assert press.reconcile_stale(job) == 0
    stale.refresh_from_db()
    assert stale.outcome == "accepted"


def test_a_stale_in_flight_run_offers_run_again(client, login, users, job):
    login("IpsUser")
    make_execution(job, users["TrialSiteUser"], "sending")
    body = client.get(reverse("jobs:list")).content.decode()
    assert "Starting…" in body and reverse("jobs:run", args=[job.pk]) not in body
    stale_job = Job.objects.get(handle="47|Nightly | Publish|")
    make_execution(stale_job, users["TrialSiteUser"], "sending", requested_at=timezone.now() - dt.timedelta(hours=1))
    body = client.get(reverse("jobs:list")).content.decode()
    assert reverse("jobs:run", args=[stale_job.pk]) in body


def test_a_wsdl_url_that_is_no_wsdl_is_a_dashboard_error(client, login, job, ips_emulator):
    connection = job.company.connection
    connection.wsdl_url = ips_emulator.base_url + "/_emulator/calls"  # JSON, not a WSDL
    connection.save()
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    row = Execution.objects.get()
    assert row.outcome == "error"
    assert "is not a usable IPS WSDL" in row.message and "Nothing was sent" in row.message
    assert executes(ips_emulator) == []


def test_a_password_stored_under_another_key_is_a_dashboard_error(client, login, job, ips_emulator):
    connection = job.company.connection
    connection.password_encrypted = "gAAAAAB-not-under-this-key"
    connection.save()
    login("IpsUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 502
    row = Execution.objects.get()
    assert row.outcome == "error"
    assert "cannot be decrypted" in row.message
    assert executes(ips_emulator) == []


def test_a_refused_run_without_htmx_answers_its_status_with_the_page(client, login, job):
    login("IpsCompanyAdmin")
    response = client.post(reverse("jobs:run", args=[job.pk]))
    assert response.status_code == 403
    body = response.content.decode()
    assert "Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)." in body
    assert "<h1>Jobs</h1>" in body
    assert Execution.objects.get().outcome == "denied"


def test_htmx_refusals_without_a_row_go_to_the_messages(client, login, job):
    login("nomember")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 404
    assert response["HX-Retarget"] == "#messages" and response["HX-Reswap"] == "innerHTML"
    assert "No such job or company" in response.content.decode()


def test_a_stale_csrf_token_says_so_to_htmx(users, job):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["IpsUser"])
    response = browser.post(reverse("jobs:run", args=[job.pk]), HTTP_X_CSRFTOKEN="stale" * 8, **HTMX)
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#messages"
    assert "reload the page" in response.content.decode()
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "proxies,remote,forwarded,expected",
    [
        (0, "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # no proxy: X-Forwarded-For is the client's word
        (1, "10.0.0.2", "198.51.100.1", "198.51.100.1"),
        (1, "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the forged left part is ignored
        (2, "10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"),
        (1, "10.0.0.2", "", "10.0.0.2"),
        (1, "10.0.0.2", "not-an-ip", None),
    ],
)
def test_client_ip_trusts_only_the_configured_proxies(proxies, remote, forwarded, expected, rf, settings):
    from jobs.middleware import client_ip

    settings.TRUSTED_PROXIES = proxies
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.parametrize("proxies,kept", [(0, False), (1, True)])
def test_an_incoming_request_id_is_kept_only_from_a_trusted_proxy(proxies, kept, client, login, job, settings):
    settings.TRUSTED_PROXIES = proxies
    login("IpsCompanyAdmin")
    response = client.post(reverse("jobs:run", args=[job.pk]), HTTP_X_REQUEST_ID="proxy-id-12345", **HTMX)
    assert (Execution.objects.get().request_id == "proxy-id-12345") is kept
    assert response["X-Request-ID"] == Execution.objects.get().request_id


# --- What the second review found --------------------------------------------------


def test_a_press_taken_for_dead_before_it_acts_sends_nothing(
    transactional_db, users, job, ips_emulator, hold_calls, dashboard_clock
):
    """Its look at getActiveJobs hangs; meanwhile another process takes it for dead."""
    import threading

    hold = hold_calls(ips_emulator, "getActiveJobs")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("row", press_run(job, users["IpsUser"], "slow-1")))
    thread.start()
    hold.wait()
    dashboard_clock.advance(Execution.stale_after() + dt.timedelta(seconds=1))
    assert press.reconcile_stale(job) == 1  # "interrupted"
    hold.release()
    thread.join(timeout=30)
    row = Execution.objects.get(request_id="slow-1")
    assert row.outcome == "interrupted" and row.sent_at is None
    assert executes(ips_emulator) == []  # the job was not started behind the row's back


def test_a_finish_that_fails_leaves_no_row_sending(users, job, ips_emulator, monkeypatch):
    from django.db import DatabaseError

    real = press._finish_sent

    def fail(execution, outcome, message, error):
        execution.outcome = outcome  # as finish() does before it writes
        raise DatabaseError("database is locked")

    monkeypatch.setattr(press, "_finish_sent", fail)
    with pytest.raises(DatabaseError):
        press_run(job, users["IpsUser"], "locked-1")
    monkeypatch.setattr(press, "_finish_sent", real)
    assert Execution.objects.get(request_id="locked-1").outcome == "interrupted"
