"""What a press of Run costs the database: its statements and transactions, pinned.

Each figure is the count, not a ceiling: a statement or a transaction added to a
press fails here, and whoever adds one says why by changing the figure (and
docs/benchmarks.md's, from bench/run_burst.py, which counts with the same
jobs/tests/sql_tally.py). On a real database connection (transactional_db):
inside a test's transaction every atomic block would be a savepoint.
"""

import datetime as dt

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from jobs.models import CompanyWatch, Execution, Job
from jobs.services import press, watch

from .conftest import HTMX, executes, make_execution, press_run
from .sql_tally import tally

# An accepted press through the view, as htmx sends it:
#   the session, its user with the user's time zone (middleware; the backends' get_user);
#   the job with its company, connection and the user's role in the company (one query);
#   the audit row, born 'sending', and the look for a press of unknown fate (one transaction, whose
#   commit is not waited on to reach the disk: sent_at's flushes it; PostgreSQL: SET LOCAL
#   synchronous_commit first, SQLite: synchronous NORMAL around it, FULL again after);
#   sent_at, just before executeJob (one UPDATE … WHERE outcome = 'sending');
#   the outcome (one UPDATE … WHERE outcome = 'sending'), and in its commit
#   the company's watcher woken (in a savepoint, so that a failed wake never costs the outcome): one UPDATE when it sleeps until its next look, as after a look;
#   when it is due already (woken by a press since its last look), that UPDATE finds nothing to
#   change and the watch is read (get_or_create): one statement more;
#   the row rendered back from what the press holds: nothing read again.
# PostgreSQL reads its clock once per audit row too (AppendOnly.clock_offset).
PRESS_STATEMENTS = {"sqlite": 10, "postgresql": 10}
# The audit row's insert, sent_at, the outcome with the watcher's wake.
PRESS_TRANSACTIONS = 3


def _asleep():
    """Every company's watcher asleep until its next look, an hour away (as just after a look)."""
    watch.ensure_watches()
    CompanyWatch.objects.update(next_look_at=timezone.now() + dt.timedelta(hours=1))


@pytest.fixture
def second_job(synced):
    return Job.objects.filter(company=synced).exclude(handle="47|My Test Job|").order_by("name").first()


@pytest.mark.django_db(transaction=True)
def test_an_accepted_press_makes_its_pinned_statements_and_transactions(
    client, users, job, second_job, ips_emulator, clock
):
    client.force_login(users["IpsUser"])
    # The first press of the process builds the IPS client, the session's first save, …: not counted.
    assert client.post(reverse("jobs:run", args=[second_job.pk]), **HTMX).status_code == 200
    _asleep()
    with tally() as counted:
        response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200
    assert Execution.objects.get(job=job).outcome == "accepted"
    assert counted.count == PRESS_STATEMENTS[connection.vendor], str(counted)
    assert counted.transactions == PRESS_TRANSACTIONS, str(counted)


@pytest.mark.django_db(transaction=True)
def test_a_press_while_the_watcher_is_due_reads_its_watch_once(client, users, job, second_job, ips_emulator, clock):
    client.force_login(users["IpsUser"])
    _asleep()
    client.post(reverse("jobs:run", args=[second_job.pk]), **HTMX)  # wakes it: due now
    with tally() as counted:
        assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    assert counted.count == PRESS_STATEMENTS[connection.vendor] + 1, str(counted)
    assert counted.transactions == PRESS_TRANSACTIONS, str(counted)


@pytest.mark.django_db(transaction=True)
def test_a_press_reads_no_row_twice(client, users, job, second_job, ips_emulator, clock):
    """The job, the role and the new audit row are read once each, whatever the page renders."""
    client.force_login(users["IpsUser"])
    client.post(reverse("jobs:run", args=[second_job.pk]), **HTMX)
    with tally() as counted:
        client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    job_reads = [s for s in counted.statements if s.lstrip().startswith('SELECT "jobs_job"')]
    execution_reads = [s for s in counted.statements if s.lstrip().startswith('SELECT "jobs_execution"')]
    assert len(job_reads) == 1, str(counted)
    # The one look for a press of unknown fate; the row itself is never read back.
    assert len(execution_reads) == 1, str(counted)


@pytest.mark.django_db(transaction=True)
def test_a_press_refused_for_a_press_of_unknown_fate_costs_one_transaction_more_at_most(
    users, job, ips_emulator, clock
):
    """The rare path: the row is born 'sending' (its commit unflushed), then finished 'already running'
    in a flushed commit of its own (which flushes the insert's too)."""
    doubt = make_execution(job, users["TrialSiteUser"], outcome="sending")
    press.mark_sent(doubt)
    press.finish(doubt, "timed_out", "")  # sent, of unknown fate: IPS may be running its run
    with tally() as counted:
        row = press_run(job, users["IpsUser"], request_id="after-doubt")
    assert row.outcome == "already_running"
    assert executes(ips_emulator) == []
    # Two transactions: the insert and the look, then the finish; no watcher woken, nothing sent.
    assert counted.transactions == 2, str(counted)


# --- The IPS client reads the environment once, not at every call -----------------------


@pytest.fixture
def recording_proxy():
    """An HTTP proxy that records what it is asked and answers 502: the request lines it got."""
    import http.server
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            asked.append(self.requestline)
            body = b"<html>bad gateway</html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_the_ips_client_still_goes_through_the_environments_proxy(ips_emulator, recording_proxy, monkeypatch):
    """The environment's proxy settings are read once per address (not at every call), and still obeyed:
    HTTP_PROXY is used, NO_PROXY bypasses it."""
    from jobs import ips

    proxy, asked = recording_proxy
    endpoint = ips.Endpoint(service_url=ips_emulator.service_url, user="service@example.com", password="demo")
    for name in ("HTTP_PROXY", "http_proxy"):  # urllib prefers the lower case one
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ips.IpsHttpError):
        ips.IpsClient(endpoint).get_active_jobs("47")
    assert asked == [f"POST {ips_emulator.service_url} HTTP/1.1"]

    monkeypatch.setenv("no_proxy", "127.0.0.1")
    ips.IpsClient(endpoint).get_active_jobs("47")  # straight to the emulator
    assert len(asked) == 1


def _durability() -> str:
    """What a commit of this connection waits for, as the database says."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
            return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outcome", ["accepted", "in flight", "uncertain"])
def test_only_the_insert_commit_is_left_to_the_next_one_to_flush(
    client, users, job, ips_emulator, clock, outcome
):
    """The insert's commit alone is unflushed: sent_at's (before executeJob) and the outcome's are
    flushed, and the connection commits as its settings say once the press is over, whichever way
    it ended (a press refused because another is in flight, one refused for a press of unknown fate)."""
    client.force_login(users["IpsUser"])
    full = _durability()
    assert full in ("FULL", "on")
    if outcome == "in flight":
        make_execution(job, users["IpsUser"], outcome="sending")
    elif outcome == "uncertain":
        make_execution(job, users["IpsUser"], outcome="timed_out", sent_at=timezone.now())
    seen = []

    def spy(execute, sql, params, many, context):
        if sql.startswith(("INSERT", "UPDATE")):
            seen.append((sql.split()[0], _durability_in(context["connection"])))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code in (200, 409)
    assert _durability() == full
    writes = [w for w in seen if w[0] in ("INSERT", "UPDATE")]
    if outcome == "accepted":
        # insert (unflushed), sent_at, outcome, wake: flushed.
        assert [d for _, d in writes][:3] == [_unflushed(), full, full], writes
    elif outcome == "uncertain":
        assert [d for _, d in writes][:2] == [_unflushed(), full], writes


def _unflushed() -> str:
    return "NORMAL" if connection.vendor == "sqlite" else "off"


def _durability_in(conn) -> str:
    # Read on a raw cursor: no wrapper sees it, so the spy does not recurse.
    cursor = conn.connection.cursor()
    try:
        if conn.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
            return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]
    finally:
        cursor.close()
