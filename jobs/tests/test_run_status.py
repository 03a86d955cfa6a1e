"""One status per run (issue 20): what is true now, the same on every page, the press's outcome after it.

Runs are made the real way: pressed against the emulator over HTTP, moved on its clock, their
results recorded by the company's watcher (``look``). The rule is services.status.run_badge; each
page (the jobs page's row, the job's page, the run's page, History) must show its badge."""

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.models import Execution, Job

from .conftest import HTMX, RUN_SECONDS, look, make_execution, press_run

ITALIAN = {"HTTP_ACCEPT_LANGUAGE": "it-IT,it;q=0.9"}
#: A time with its date and zone, as every time on these pages is written.
DATED = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]{2,5}"


def _ended(job, user, clock, ips_emulator, outcome):
    ips_emulator.state.jobs[job.handle].outcome = outcome
    execution = press_run(job, user)
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    return execution


def _running(job, user, clock, ips_emulator):
    execution = press_run(job, user)
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    return execution


def _refused(job, user, clock, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="executeJob", fault="ipsApiFault", code=30001, reason="No")
    return press_run(job, user)


def _unreachable(job, user, clock, ips_emulator, url):
    connection = job.company.connection
    connection.service_url = url
    connection.save()
    return press_run(job, user)


def _uncertain(job, user, clock, ips_emulator, *, started):
    """A press of unknown fate: IPS starts its run but answers after the dashboard gave up (the watcher
    then matches the run to it), or IPS answers with an error page and never starts it."""
    from django.conf import settings
    from django.test import override_settings

    from .conftest import wait_for

    if started:
        ips_emulator.state.inject("latency", operation="executeJob", seconds=1.5)
        with override_settings(IPS_READ_TIMEOUT=0.5):
            execution = press_run(job, user)
        wait_for(lambda: ips_emulator.state.active_runs(job.handle), "IPS to start the late run")
        clock.advance(RUN_SECONDS / 2)
    else:
        ips_emulator.state.inject("http_500_html", operation="executeJob")
        execution = press_run(job, user)
        look(job.company)
        clock.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
    look(job.company)
    return execution


#: press outcome × IPS result → how the run is made, and the badge: tone, words (a regex), the press's outcome after it.
CASES = {
    "accepted+fatal": (lambda *a: _ended(*a, "fatal"), "bad", "fatal error", "accepted"),
    "accepted+errors": (lambda *a: _ended(*a, "errors"), "bad", r"finished: \d+ errors?", "accepted"),
    "accepted+warnings": (lambda *a: _ended(*a, "warnings"), "warn", r"finished: \d+ warnings?", "accepted"),
    "accepted+ok": (lambda *a: _ended(*a, "success"), "ok", "finished", "accepted"),
    "accepted+running": (_running, "running", r"IPS: Running, \d+%", "accepted"),
    "accepted+waiting": (lambda job, user, clock, emu: press_run(job, user), "waiting", "sent, waiting for IPS", "accepted"),
    "refused": (_refused, "bad", "refused by IPS", None),
    "unreachable": (None, "bad", "IPS unreachable", None),
    "denied": (lambda job, user, clock, emu: make_execution(job, user, "denied"), "bad", "denied", None),
    # Of unknown fate, then matched by the watcher to its run: followed like an accepted one (with its progress).
    "timed_out+running": (lambda *a: _uncertain(*a, started=True), "running", r"IPS: Running, \d+%", "timed out"),
    "ips_error+not_started": (lambda *a: _uncertain(*a, started=False), "warn", "not started by IPS", "IPS error page"),
    "sending": (lambda job, user, clock, emu: make_execution(job, user, "sending"), "waiting", "sending", None),
    "interrupted": (lambda job, user, clock, emu: make_execution(job, user, "interrupted"), "bad", "interrupted", None),
}


def _badge(tone, text, press):
    badge = rf'<span class="run-status run-status-{tone}">{text}</span>'
    return badge + (rf' <span class="press-outcome">request: {press}</span>' if press else "")


def _pages(client, execution, job) -> dict[str, str]:
    """The part of each page that shows the run."""
    jobs_page = client.get(reverse("jobs:list")).content.decode()
    job_page = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    run_page = client.get(reverse("jobs:run_detail", args=[execution.pk])).content.decode()
    history = client.get(reverse("jobs:history")).content.decode()
    return {
        "jobs page": re.search(rf'<tr id="job-{job.pk}".*?<td class="last">(.*?)</td>', jobs_page, re.S)[1],
        "job page": re.search(rf'<tr id="execution-{execution.pk}".*?</tr>', job_page[job_page.index('id="recent-runs"'):], re.S)[0],
        "run page": re.search(r'<section class="card facts run-live".*?</section>', run_page, re.S)[0],
        "History": re.search(rf'<tr id="execution-{execution.pk}".*?</tr>', history, re.S)[0],
        "whole pages": jobs_page + job_page + run_page + history,
    }


@pytest.mark.parametrize("case", CASES)
def test_each_page_shows_the_runs_one_status(case, client, login, job, users, clock, ips_emulator, unused_url):
    make, tone, text, press = CASES[case]
    user = users["IpsUser"]
    execution = _unreachable(job, user, clock, ips_emulator, unused_url) if make is None else make(job, user, clock, ips_emulator)
    execution.refresh_from_db()
    login("IpsUser")
    pages = _pages(client, execution, job)
    for name in ("job page", "run page", "History"):
        assert re.search(_badge(tone, text, press), pages[name]), (name, pages[name])
    last = pages["jobs page"]
    if execution.outcome in Execution.NOT_SENT:
        assert "run-status" not in last  # refused here: history, not the job's last run
    elif execution.is_following:
        # The row's poller says how IPS is doing; the row keeps the press's outcome, never a green badge.
        assert "run-status" not in last and "request: accepted" in last and 'class="ips-status"' in last
    else:
        assert re.search(_badge(tone, text, press), last), last
    # Green is for a clean end only: the first badge of a run is no longer the press's "accepted".
    if tone != "ok":
        assert "run-status-ok" not in pages["whole pages"]
    assert "outcome-accepted" not in pages["whole pages"] and "ips-result-ok" not in pages["whole pages"]


def test_a_fatal_run_is_never_green_in_italian_either(client, login, job, users, clock, ips_emulator):
    execution = _ended(job, users["IpsUser"], clock, ips_emulator, "fatal")
    login("IpsUser")
    for url in (reverse("jobs:list"), reverse("jobs:job_detail", args=[job.pk]),
                reverse("jobs:run_detail", args=[execution.pk]), reverse("jobs:history")):
        body = client.get(url, **ITALIAN).content.decode()
        assert '<span class="run-status run-status-bad">errore fatale</span>' in body, url
        assert "run-status-ok" not in body and "outcome-accepted" not in body, url


def test_the_jobs_page_poll_says_when_ips_ended_with_its_date(client, login, job, users, clock, ips_emulator):
    execution = press_run(job, users["IpsUser"])
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    login("IpsUser")
    client.cookies["tz"] = "Europe/Rome"
    poll = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    assert poll.status_code == 286
    execution.refresh_from_db()
    ended = timezone.localtime(execution.ips_ended_at, dt.timezone(dt.timedelta(hours=1)))
    assert f"ended {ended:%Y-%m-%d %H:%M:%S} CET" in poll.content.decode()


# --- The run's page: says what is true now, and asks again only while the run is open ---------------


def _live(client, execution) -> str:
    response = client.get(reverse("jobs:run_detail", args=[execution.pk]) + "?part=live", **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and body.strip().startswith('<section class="card facts run-live" id="run-live"')
    return body


def test_the_run_page_polls_while_the_run_is_open_and_stops_when_it_ended(client, login, job, users, clock):
    execution = press_run(job, users["IpsUser"])
    login("IpsUser")
    poll = 'hx-trigger="every 5s"'
    # Accepted, not yet seen in IPS.
    live = _live(client, execution)
    assert poll in live and "sent, waiting for IPS" in live and "<progress" not in live
    # Running in IPS, half done: its progress bar, named.
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    live = _live(client, execution)
    assert poll in live and "IPS is running it now." in live
    assert re.search(r'<progress id="run-progress-\d+" max="100" value="\d+" aria-label="Progress of My Test Job in IPS">', live)
    # Ended on the emulator's clock, its result recorded: the answer has no trigger, so htmx asks no more.
    clock.advance(RUN_SECONDS)
    look(job.company)
    live = _live(client, execution)
    assert "hx-trigger" not in live and "hx-get" not in live
    assert "running it now" not in live and "<progress" not in live
    assert '<span class="run-status run-status-ok">finished</span>' in live
    assert re.search(rf"<dt>IPS ended</dt><dd><time [^>]*>{DATED}</time>", live)
    # The whole page no longer repeats the press's words "…and is running it now."
    page = client.get(reverse("jobs:run_detail", args=[execution.pk])).content.decode()
    assert "running it now" not in page and 'hx-trigger="every 5s"' not in page


def test_a_refused_run_page_does_not_poll(client, login, job, users, clock, ips_emulator):
    execution = _refused(job, users["IpsUser"], clock, ips_emulator)
    login("IpsUser")
    live = _live(client, execution)
    assert "hx-trigger" not in live
    page = client.get(reverse("jobs:run_detail", args=[execution.pk])).content.decode()
    assert execution.outcome == "refused" and escape(execution.message) in page  # what the user was told


def test_the_live_part_keeps_the_runs_access_rules(client, login, job, users, clock):
    execution = press_run(job, users["IpsUser"])
    login("WebServiceUser")  # no getJobLogs: the run's page is not theirs
    response = client.get(reverse("jobs:run_detail", args=[execution.pk]) + "?part=live", **HTMX)
    assert response.status_code == 404 and "My Test Job" not in response.content.decode()


# --- History's times: the request's and IPS's, each with its date and zone ------------------------------


def test_history_times_say_request_or_ips_with_dates(client, login, job, users, clock, ips_emulator):
    execution = _ended(job, users["IpsUser"], clock, ips_emulator, "success")
    login("IpsUser")
    client.cookies["tz"] = "Europe/Rome"
    body = client.get(reverse("jobs:history")).content.decode()
    assert "<th>Request and IPS times</th>" in body and ">Requested" in body
    row = re.search(rf'<tr id="execution-{execution.pk}".*?</tr>', body, re.S)[0]
    for label in ("Sent", "Request ended", "IPS started", "IPS ended"):
        assert re.search(rf"<dt>{label}</dt><dd><time [^>]*>{DATED}</time></dd>", row), label
    assert re.search(rf'<td class="when requested"[^>]*><a [^>]*><time [^>]*>{DATED}</time>', row)
    assert " CET</time>" in row and "Finished" not in body


# --- The zone: said when the browser's is not known yet -------------------------------------------------


def test_a_page_opened_before_the_zone_is_known_says_its_times_are_utc(client, login, job, users):
    execution = make_execution(job, users["IpsUser"], "denied")
    login("IpsUser")
    for url in (reverse("jobs:history"), reverse("jobs:run_detail", args=[execution.pk]),
                reverse("jobs:job_detail", args=[job.pk])):
        body = client.get(url).content.decode()
        assert "Times are in UTC: this browser's time zone is not known yet." in body, url
        assert " UTC</time>" in body, url
    client.cookies["tz"] = "Europe/Rome"
    for url in (reverse("jobs:history"), reverse("jobs:run_detail", args=[execution.pk])):
        body = client.get(url).content.decode()
        assert "not known yet" not in body and " CET</time>" in body, url


# --- The job's page: a next fire time that passed long ago is marked stale -------------------------------


@pytest.mark.parametrize("offset,stale", [(dt.timedelta(days=-3), True), (dt.timedelta(hours=2), False),
                                          (dt.timedelta(minutes=-5), False)])
def test_a_next_fire_time_in_the_past_is_marked_stale(offset, stale, client, login, job):
    Job.objects.filter(pk=job.pk).update(next_fire_time=timezone.now() + offset)
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    facts = body[body.index("<dt>Next fire time</dt>"):][:600]
    assert ("stale: in the past" in facts) is stale
