"""/metrics (issue 21; the contract is in jobs/metrics.py's docstring).

In this process: who may scrape (a parametrized table), each metric from the real work that makes it
(presses over HTTP, the emulator over HTTP, the watcher's look on the emulator's clock, a task worker's
notifications). Then the issue's Done-when: gunicorn under production settings with two workers on one
database, presses of Run served by both, the watcher in a process of its own, all counted once in one
scrape (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.urls import reverse
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from jobs import ips, metrics, tasks
from jobs.models import Company, Execution, Job

from .conftest import HTMX, RUN_SECONDS, database_url_for_subprocess, executes, free_port, look, wait_for
from .test_concurrency import serving_gunicorn
from .test_notifications import Receiver, run_tasks, subscribe, with_email
from .test_smoke import static_root  # noqa: F401  (fixture: static files collected once for the module)

BASE_DIR = Path(settings.BASE_DIR)
TOKEN = "metrics-token-" + "x" * 24


def scrape_text(text: str) -> dict:
    """{(sample name, frozenset of label pairs): value} of a /metrics answer."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_open(settings):
    """/metrics for this machine (the test client's 127.0.0.1), as under `make run`."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_NETWORKS = _networks("127.0.0.1/32")


def _networks(*texts):
    import ipaddress

    return [ipaddress.ip_network(t) for t in texts]


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return scrape_text(response.content.decode())


# --- who may scrape ---------------------------------------------------------------------------

#: (METRICS_TOKEN set, METRICS_ALLOW, TRUSTED_PROXIES, REMOTE_ADDR, X-Forwarded-For, Authorization) -> status
ACCESS = [
    ("off: neither token nor addresses", False, [], 0, "127.0.0.1", None, None, 404),
    ("token, none given", True, [], 0, "203.0.113.5", None, None, 403),
    ("token, wrong one", True, [], 0, "203.0.113.5", None, "Bearer " + "y" * 38, 403),
    ("token, as Basic", True, [], 0, "203.0.113.5", None, "Basic " + TOKEN, 403),
    ("token, right one", True, [], 0, "203.0.113.5", None, "Bearer " + TOKEN, 200),
    ("allowed network", False, ["10.0.0.0/8"], 0, "10.1.2.3", None, None, 200),
    ("address outside it", False, ["10.0.0.0/8"], 0, "203.0.113.5", None, None, 403),
    ("localhost not allowed in production", True, [], 0, "127.0.0.1", None, None, 403),
    ("behind a proxy: the client, not the proxy", False, ["127.0.0.1/32"], 1, "127.0.0.1", "203.0.113.5", None, 403),
    ("behind a proxy: an allowed client", False, ["10.0.0.0/8"], 1, "127.0.0.1", "10.9.9.9", None, 200),
    ("behind a proxy: a forged entry on the left", False, ["10.0.0.0/8"], 1, "127.0.0.1", "10.9.9.9, 203.0.113.5",
     None, 403),
    ("a forwarded address without proxies is ignored", False, ["10.0.0.0/8"], 0, "203.0.113.5", "10.9.9.9", None,
     403),
    ("IPv6 loopback", False, ["::1/128"], 0, "::1", None, None, 200),
]


@pytest.mark.parametrize("case,token,allow,proxies,remote,forwarded,auth,status", ACCESS, ids=[a[0] for a in ACCESS])
def test_it_serves_metrics_only_to_a_token_or_an_allowed_address(
    db, client, settings, case, token, allow, proxies, remote, forwarded, auth, status
):
    settings.METRICS_TOKEN = TOKEN if token else ""
    settings.METRICS_ALLOW_NETWORKS = _networks(*allow)
    settings.TRUSTED_PROXIES = proxies
    headers = {"REMOTE_ADDR": remote}
    if forwarded:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    response = client.get("/metrics", **headers)
    assert response.status_code == status, response.content[:200]
    assert "no-store" in response["Cache-Control"]
    if status == 200:
        assert b"ipsadmin_runs_followed" in response.content
    else:
        assert b"ipsadmin_" not in response.content
    assert TOKEN.encode() not in response.content


def test_the_token_is_compared_in_constant_time(db, client, settings, monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = TOKEN, []
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="203.0.113.5").status_code == 403
    assert compared == [(b"nope", TOKEN.encode())]


# --- what is counted ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_press_is_counted_once_with_its_two_ips_calls(client, users, job, clock, metrics_open):
    client.force_login(users["IpsUser"])
    before = scrape(client)
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200, response.content[:300]
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ipsadmin_presses_total", operation="executeJob", outcome="accepted") == 1
    for operation in ("getActiveJobs", "executeJob"):
        assert delta("ipsadmin_ips_calls_total", operation=operation, result="ok") == 1, operation
        assert delta("ipsadmin_ips_call_seconds_count", operation=operation) == 1, operation
        assert delta("ipsadmin_ips_call_seconds_bucket", operation=operation, le="+Inf") == 1
        assert 0 < delta("ipsadmin_ips_call_seconds_sum", operation=operation) < 5
    assert sum(v for k, v in after.items() if k[0] == "ipsadmin_presses_total") - sum(
        v for k, v in before.items() if k[0] == "ipsadmin_presses_total") == 1

    # Its run is on: the next press is refused after IPS's look (getActiveJobs), and counted so.
    before = after
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 409
    after = scrape(client)
    assert delta("ipsadmin_presses_total", operation="executeJob", outcome="already_running") == 1
    assert delta("ipsadmin_ips_calls_total", operation="getActiveJobs", result="ok") == 1
    assert delta("ipsadmin_ips_calls_total", operation="executeJob", result="ok") == 0
    # No label carries a job, a user or a handle of a run.
    text = client.get("/metrics").content.decode()
    assert job.name not in text and "ipsuser" not in text.lower()
    assert value(after, "ipsadmin_runs_followed") == 1


@pytest.mark.parametrize("inject,result", [
    ({"kind": "soap_fault", "code": 30000, "reason": "Busy"}, "api_fault"),
    ({"kind": "soap_fault", "code": 20001, "reason": "No", "fault": "authorizationFault"}, "authorization_fault"),
    ({"kind": "soap_fault", "code": 10001, "reason": "Who", "fault": "authenticationFault"}, "authentication_fault"),
    ({"kind": "http_500_html"}, "bad_reply"),
    ({"kind": "malformed_xml"}, "bad_reply"),
    ({"kind": "drop_connection"}, "unreachable"),
    ({"kind": "latency", "seconds": 5}, "timed_out"),
])
def test_each_ips_call_is_counted_by_its_result(db, ips_emulator, connection, settings, inject, result):
    settings.IPS_READ_TIMEOUT = 0.3  # the injected latency outlasts it: a real read timeout
    ips_emulator.state.inject(inject.pop("kind"), operation="getActiveJobs", **inject)
    client = ips.client_for(connection)
    before = _calls()
    with pytest.raises(ips.IpsError):
        client.get_active_jobs("47")
    after = _calls()
    assert {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)} == {
        ("getActiveJobs", result): 1}


def _calls() -> dict:
    """This process's IPS calls so far: {(operation, result): count}."""
    return {(s.labels["operation"], s.labels["result"]): s.value for family in REGISTRY.collect()
            if family.name == "ipsadmin_ips_calls" for s in family.samples if s.name.endswith("_total")}


def test_an_unreachable_ips_and_a_request_never_sent(db, unused_url):
    client = ips.get_client(ips.Endpoint(service_url=unused_url, user="service@example.com", password="pw"))
    before = _calls()
    with pytest.raises(ips.IpsUnavailable):
        client.get_active_jobs("47")
    after = _calls()
    assert after[("getActiveJobs", "unreachable")] == before.get(("getActiveJobs", "unreachable"), 0) + 1
    # A parameter the WSDL does not declare is refused before anything is sent: no call to count.
    with pytest.raises(ips.IpsError, match="nothing was sent"):
        client.call("getActiveJobs", companyHandle="47", noSuchParam="x")
    assert _calls() == after


@pytest.mark.django_db(transaction=True)
def test_the_follow_lag_is_observed_once_the_result_is_stored(client, users, job, clock, metrics_open):
    client.force_login(users["IpsUser"])
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    before = scrape(client)
    # The run ends RUN_SECONDS after it began (IPS's clock); the watcher looks 25 s after that.
    clock.advance(RUN_SECONDS + 25)
    assert look(job.company).ended == 1
    after = scrape(client)
    execution = Execution.objects.get(job=job, operation="executeJob")
    assert execution.ips_result == "ok"
    assert value(after, "ipsadmin_follow_lag_seconds_count") - value(before, "ipsadmin_follow_lag_seconds_count") == 1
    lag = value(after, "ipsadmin_follow_lag_seconds_sum") - value(before, "ipsadmin_follow_lag_seconds_sum")
    # IPS's Date header counts whole seconds: the lag read is up to one second short, never long.
    assert 24 <= lag < 25.5, lag
    bucket = {le: value(after, "ipsadmin_follow_lag_seconds_bucket", le=le)
              - value(before, "ipsadmin_follow_lag_seconds_bucket", le=le) for le in ("15.0", "30.0")}
    assert bucket == {"15.0": 0, "30.0": 1}
    assert value(before, "ipsadmin_runs_followed") == 1 and value(after, "ipsadmin_runs_followed") == 0
    # Looked at again: nothing ends twice, nothing is observed twice.
    look(job.company)
    assert value(scrape(client), "ipsadmin_follow_lag_seconds_count") == value(after, "ipsadmin_follow_lag_seconds_count")


def _lag() -> tuple[float, float]:
    """This process's follow lag so far: (count, sum)."""
    samples = {s.name: s.value for f in REGISTRY.collect() if f.name == "ipsadmin_follow_lag_seconds"
               for s in f.samples}
    return samples.get("ipsadmin_follow_lag_seconds_count", 0.0), samples.get("ipsadmin_follow_lag_seconds_sum", 0.0)


@pytest.mark.django_db(transaction=True)
def test_the_first_look_of_a_company_does_not_count_its_backfill_as_follow_lag(job, clock, ips_emulator):
    # IPS's schedule ran the job 6 hours before the dashboard first looked at this company (a company just
    # added, or the first deploy): IPS_WATCH_BACKFILL_HOURS reads it in. (R1 review, M4.)
    ips_emulator.state.fire_schedule(job.handle)
    clock.advance(6 * 3600)
    count, total = _lag()
    look(job.company)
    assert Execution.objects.filter(company=job.company).exclude(ips_result="").count() == 1
    new_count, new_total = _lag()
    assert new_count == count, f"a backfilled run was counted as follow lag: {new_total - total:.0f} s"


@pytest.mark.django_db(transaction=True)
def test_a_run_of_the_schedule_that_ended_between_two_looks_counts_its_lag(job, clock, ips_emulator):
    look(job.company)  # the company is watched
    ips_emulator.state.fire_schedule(job.handle)
    # IPS's own run, started and ended between two looks: found by the next one, 25 s after its end.
    clock.advance(RUN_SECONDS + 25)
    count, total = _lag()
    assert look(job.company).found == 1
    new_count, new_total = _lag()
    assert new_count == count + 1
    assert 24 <= new_total - total < 25.5, new_total - total


@pytest.mark.django_db(transaction=True)
def test_the_queue_and_the_chores_are_read_from_the_database(client, synced, dashboard_clock, metrics_open):
    samples = scrape(client)
    # An empty queue is a series at 0, not a missing one.
    assert samples[("ipsadmin_task_queue_depth", frozenset({("queue", "default")}))] == 0
    assert samples[("ipsadmin_task_queue_oldest_age_seconds", frozenset({("queue", "default")}))] == 0
    tasks.clean_history_exports.enqueue("a stale token")
    tasks.clean_history_exports.enqueue("another")
    dashboard_clock.advance(30)
    samples = scrape(client)
    assert value(samples, "ipsadmin_task_queue_depth", queue="default") == 2
    assert 30 <= value(samples, "ipsadmin_task_queue_oldest_age_seconds", queue="default") < 40
    for company in Company.objects.all():
        assert value(samples, "ipsadmin_chore_last_success_timestamp_seconds", chore="sync",
                     connection=str(company.connection_id), company=company.handle) == pytest.approx(
            company.last_synced_at.timestamp())
    look(synced)
    run_tasks()  # the worker takes both (stale chains: they stop at once)
    samples = scrape(client)
    assert value(samples, "ipsadmin_task_queue_depth", queue="default") == 0
    watched = synced.watch
    watched.refresh_from_db()
    assert value(samples, "ipsadmin_chore_last_success_timestamp_seconds", chore="watch",
                 connection=str(synced.connection_id), company=synced.handle) == pytest.approx(
        watched.last_ok_at.timestamp())


@pytest.mark.django_db(transaction=True)
def test_notifications_sent_and_failed_are_counted(client, users, job, clock, settings, metrics_open):
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://ipsadmin.example.com"
    receiver = Receiver()
    try:
        receiver.fail_first = 1
        subscriber = with_email(users["IpsUser"])
        subscribe(subscriber, company=job.company, on_finish=True)
        subscribe(subscriber, receiver, company=job.company, channel="webhook", on_finish=True)
        before = scrape(client)
        client.force_login(subscriber)
        assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
        clock.advance(RUN_SECONDS + 1)
        look(job.company)
        run_tasks()
        after = scrape(client)
    finally:
        receiver.close()
    assert value(after, "ipsadmin_notification_tries_total", result="sent") - value(
        before, "ipsadmin_notification_tries_total", result="sent") == 1  # the email
    assert value(after, "ipsadmin_notification_tries_total", result="failed") - value(
        before, "ipsadmin_notification_tries_total", result="failed") == 1  # the webhook's first try
    assert len(receiver.posts) == 1


# --- counting never fails the work counted (R1 review, H1) --------------------------------------


def _broken(*args, **kwargs):
    # What a multiprocess write can raise: the directory gone or unwritable, /run full, a bad mmap.
    raise OSError(28, "No space left on device")


def test_a_metrics_failure_does_not_turn_a_successful_ips_call_into_an_error(db, connection, monkeypatch, caplog):
    monkeypatch.setattr(metrics, "record_ips_call", _broken)
    monkeypatch.setattr(metrics, "_last_failure_logged", None)
    client = ips.client_for(connection)
    client.get_active_jobs("47")  # IPS answered: the caller gets its answer
    client.get_active_jobs("47")
    # Logged once, not once a call.
    failures = [r for r in caplog.records if r.name == "jobs.metrics"]
    assert len(failures) == 1 and "could not be counted" in failures[0].getMessage()
    assert "No space left on device" in failures[0].exc_text


@pytest.mark.django_db(transaction=True)
def test_a_metrics_failure_does_not_record_an_accepted_press_as_interrupted(client, users, job, clock, ips_emulator,
                                                                          monkeypatch):
    real = metrics.record_ips_call
    # The failure hits the count of executeJob's answer: IPS has started the run by then.
    monkeypatch.setattr(metrics, "record_ips_call",
                        lambda op, *a: _broken() if op == "executeJob" else real(op, *a))
    monkeypatch.setattr(metrics, "record_press", _broken)  # and the press's count, after its commit
    client.force_login(users["IpsUser"])
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200, response.content[:300]
    assert len(executes(ips_emulator)) == 1  # IPS got executeJob and started the run
    row = Execution.objects.get(job=job, operation="executeJob")
    assert row.outcome == "accepted", (row.outcome, row.message)


@pytest.mark.django_db(transaction=True)
def test_a_metrics_failure_fails_neither_the_look_nor_a_notification(client, users, job, clock, settings,
                                                                    monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://ipsadmin.example.com"
    from django.core import mail

    from .test_notifications import run_tasks, subscribe, with_email

    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=job.company, on_finish=True)
    client.force_login(subscriber)
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    for name in ("observe_follow_lag", "record_notification_try", "record_ips_call"):
        monkeypatch.setattr(metrics, name, _broken)
    clock.advance(RUN_SECONDS + 1)
    assert look(job.company).ended == 1  # ok=True: the look did not fail
    run_tasks()
    assert Execution.objects.get(job=job, operation="executeJob").ips_result == "ok"
    assert len(mail.outbox) == 1


# --- the database down: the process counts are served all the same (R1 review, M5) ---------------


@pytest.mark.django_db(transaction=True)
def test_the_database_is_up_in_the_metrics(client, metrics_open):
    assert value(scrape(client), "ipsadmin_database_up") == 1


def test_metrics_with_the_database_down_serve_the_process_counts(tmp_path):
    """A gunicorn whose database listens nowhere (DEBUG on: METRICS_ALLOW is this machine), with the counts a
    watcher of this host wrote to the multiprocess directory."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DJANGO_SETTINGS_MODULE": "ipsadmin.settings",
           "DEBUG": "1", "DATABASE_URL": f"postgres://ipsadmin:pw@127.0.0.1:{free_port()}/ipsadmin"}
    env.pop("METRICS_TOKEN", None)
    env.pop("METRICS_ALLOW", None)
    watcher = ("from jobs import metrics; metrics.record_ips_call('getActiveJobs', 'ok', 0.2); "
               "metrics.record_ips_call('getActiveJobs', 'unreachable', 3.0)")
    done = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + watcher], cwd=BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with serving_gunicorn(env, tmp_path / "gunicorn.log", "--workers", "1") as (url, _):
        response = requests.get(url + "/metrics", timeout=30)
    assert response.status_code == 200, response.text[:500]
    samples = scrape_text(response.text)
    assert value(samples, "ipsadmin_database_up") == 0
    assert value(samples, "ipsadmin_ips_calls_total", operation="getActiveJobs", result="ok") == 1
    assert value(samples, "ipsadmin_ips_calls_total", operation="getActiveJobs", result="unreachable") == 1
    assert "ipsadmin_runs_followed" not in response.text  # read from the database: left out, not made up


# --- the multiprocess directory (R1 review, M3) ----------------------------------------------------


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_unusable_metrics_directory_never_stops_a_process(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings",
           "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics")}  # under a file: never a directory
    counted = b'ipsadmin_presses_total{operation="executeJob",outcome="accepted"} 1.0'
    done = _python("import django, os; django.setup(); from jobs import metrics; "
                   "metrics.record_press('executeJob', 'accepted'); "
                   f"print(repr(os.environ.get('PROMETHEUS_MULTIPROC_DIR')), {counted!r} in metrics.render())", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "True"]  # counted in the process itself
    assert "PROMETHEUS_MULTIPROC_DIR=" in done.stderr and "cannot be used" in done.stderr
    checked = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr


def test_a_short_process_that_counts_nothing_leaves_no_metrics_file(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # One that counts leaves the files of what it counted.
    done = _python("import django; django.setup(); from jobs import metrics; metrics.observe_follow_lag(3)", env)
    assert done.returncode == 0, done.stderr
    assert [p.name.split("_")[0] for p in tmp_path.iterdir()] == ["histogram"]


def test_a_restart_of_gunicorn_leaves_the_counts_of_the_host_whole(tmp_path):
    """gunicorn's start deletes no metrics file: a dead web worker's counts stay in the sums beside the live
    watcher's, so no total goes down (Prometheus would read a reset). (R1 review, M2.)"""
    from prometheus_client import CollectorRegistry
    from prometheus_client import multiprocess as mp

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = _python("from jobs import metrics; metrics.record_ips_call('getActiveJobs', 'ok', 0.1)", env)  # gone
    assert done.returncode == 0, done.stderr

    def total():
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=str(tmp_path))
        return sum(s.value for f in registry.collect() for s in f.samples if s.name == "ipsadmin_ips_calls_total")

    assert total() == 1
    # gunicorn's start as ipsadmin-web.service runs it (the start checks in a child), then stopped at once.
    start = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('conf', "
             "'ipsadmin/gunicorn.conf.py'); conf = importlib.util.module_from_spec(spec); "
             "spec.loader.exec_module(conf); conf.on_starting(None)")
    done = _python(start, {**env, "DEBUG": "1"})
    assert done.returncode == 0, done.stderr
    assert total() == 1


# --- the Done-when: gunicorn, two workers, production settings ---------------------------------


def _production_env(port: int, metrics_dir: Path, **more) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "METRICS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ipsadmin.settings",
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,  # the test's sessions are signed with it (set below)
        # The key the test's connection password was encrypted with.
        IPSADMIN_ENCRYPTION_KEY=settings.IPSADMIN_ENCRYPTION_KEY or settings.IPSADMIN_DEV_KEY_FILE.read_text().strip(),
        ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}",
        DATABASE_URL=database_url_for_subprocess(),
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_TOKEN=TOKEN,
        **more,
    )
    return env


@pytest.fixture
def production_gunicorn(transactional_db, tmp_path, settings, static_root):
    """(url, env): gunicorn with the project's config, DEBUG off, two workers, on the test database, its
    static files collected (a clean checkout has none: the manifest storage answers 500 without them)."""
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    port = free_port()
    env = _production_env(port, tmp_path / "metrics", STATIC_ROOT=str(static_root))
    (tmp_path / "metrics").mkdir()
    with serving_gunicorn(env, tmp_path / "gunicorn.log", port=port, https=True) as (url, proc):
        yield url, env, proc


def _https_session(url: str, user) -> requests.Session:
    """Logged in (a session made here), as htmx sends a press through the TLS proxy."""
    browser = Client()
    browser.force_login(user)
    s = requests.Session()
    s.headers.update({"X-Forwarded-Proto": "https", "HX-Request": "true", "Origin": url.replace("http:", "https:")})
    s.cookies.set(settings.SESSION_COOKIE_NAME, browser.cookies[settings.SESSION_COOKIE_NAME].value)
    page = s.get(url + reverse("jobs:list"), timeout=15)
    assert page.status_code == 200, page.text[:300]
    csrf = page.cookies[settings.CSRF_COOKIE_NAME]
    s.cookies.set(settings.CSRF_COOKIE_NAME, csrf)
    s.headers["X-CSRFToken"] = csrf
    return s


def _scrape_over_http(url: str, **headers) -> requests.Response:
    return requests.get(url + "/metrics", headers={"X-Forwarded-Proto": "https", **headers}, timeout=15)


def _worker_pids(master: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_two_gunicorn_workers_count_each_press_and_ips_call_once(
    production_gunicorn, users, synced, ips_emulator, ips_clock, hold_calls, tmp_path
):
    url, env, master = production_gunicorn
    jobs = list(Job.objects.filter(company=synced).order_by("pk")[:3])
    assert len(jobs) == 3
    session = _https_session(url, users["IpsUser"])

    # Two presses at once, each held at executeJob until both are in: one sync worker each.
    hold = hold_calls(ips_emulator, "executeJob")
    answers = [None, None]

    def press(i):
        answers[i] = session.post(url + reverse("jobs:run", args=[jobs[i].pk]), timeout=60)

    threads = [threading.Thread(target=press, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: hold.held == 2, "both presses to reach executeJob (two workers busy)")
    hold.release()
    for t in threads:
        t.join(60)
    third = session.post(url + reverse("jobs:run", args=[jobs[2].pk]), timeout=60)
    assert [a.status_code for a in answers] + [third.status_code] == [200, 200, 200], [
        a.text[:200] for a in [*answers, third]]
    assert Execution.objects.filter(operation="executeJob", outcome="accepted").count() == 3
    # Both workers counted into the directory (files named by their pids).
    writers = {int(f.stem.rsplit("_", 1)[1]) for f in (tmp_path / "metrics").glob("counter_*.db")}
    assert len(writers & _worker_pids(master.pid)) == 2, (writers, _worker_pids(master.pid))

    # Refused without the token from an address not allowed (this machine is not, in production); no secret.
    refused = _scrape_over_http(url)
    assert refused.status_code == 403 and b"ipsadmin_" not in refused.content
    response = _scrape_over_http(url, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.text
    for secret in (TOKEN, env["SECRET_KEY"], env["IPSADMIN_ENCRYPTION_KEY"], synced.connection.get_password(),
                   synced.connection.service_url):
        assert secret not in text
    samples = scrape_text(text)
    assert value(samples, "ipsadmin_presses_total", operation="executeJob", outcome="accepted") == 3
    for operation in ("getActiveJobs", "executeJob"):
        assert value(samples, "ipsadmin_ips_calls_total", operation=operation, result="ok") == 3, operation
        assert value(samples, "ipsadmin_ips_call_seconds_count", operation=operation) == 3, operation
    calls = {k: v for k, v in samples.items() if k[0] == "ipsadmin_ips_calls_total" and v}
    assert sum(calls.values()) == 6, calls  # the presses' calls, and no other
    assert value(samples, "ipsadmin_runs_followed") == 3
    assert value(samples, "ipsadmin_follow_lag_seconds_count") == 0

    # The runs end (IPS's clock); one round of a watcher process of its own, counting into the same directory.
    ips_clock.advance(ips_emulator.state.job_duration + 20)
    watcher = subprocess.run([sys.executable, "manage.py", "watch_ips", "--once"], cwd=BASE_DIR, env=env,
                             capture_output=True, text=True, timeout=120)
    assert watcher.returncode == 0, watcher.stderr[-3000:]
    ended = Execution.objects.filter(operation="executeJob", ips_ended_at__isnull=False).exclude(ips_result="")
    assert ended.count() == 3, watcher.stderr[-3000:]
    samples = scrape_text(_scrape_over_http(url, Authorization=f"Bearer {TOKEN}").text)
    assert value(samples, "ipsadmin_follow_lag_seconds_count") == 3
    assert 3 * 19 <= value(samples, "ipsadmin_follow_lag_seconds_sum") < 3 * 20.5  # Date: whole seconds
    assert value(samples, "ipsadmin_follow_lag_seconds_bucket", le="15.0") == 0
    assert value(samples, "ipsadmin_follow_lag_seconds_bucket", le="30.0") == 3
    assert value(samples, "ipsadmin_runs_followed") == 0
    # The presses' counts are unchanged by the watcher's calls, which are counted under their own operations.
    assert value(samples, "ipsadmin_presses_total", operation="executeJob", outcome="accepted") == 3
    assert value(samples, "ipsadmin_ips_calls_total", operation="executeJob", result="ok") == 3
    assert value(samples, "ipsadmin_ips_calls_total", operation="getJobLogs", result="ok") >= 1


@pytest.mark.parametrize("debug,directory,token,workers,warned", [
    (False, "", TOKEN, None, True),         # production, metrics on, default workers: one worker's counts
    (False, "", TOKEN, "4", True),
    (False, "", TOKEN, "1", False),         # one worker: its counts are the server's
    (False, "/run/ipsadmin/metrics", TOKEN, None, False),
    (False, "", "", None, False),           # metrics off
    (True, "", TOKEN, None, False),         # development
])
def test_check_deploy_warns_when_several_workers_count_without_a_shared_directory(
        settings, monkeypatch, debug, directory, token, workers, warned):
    from jobs.checks import metrics_directory_check

    settings.DEBUG, settings.PROMETHEUS_MULTIPROC_DIR, settings.METRICS_TOKEN = debug, directory, token
    settings.METRICS_ALLOW_NETWORKS = []
    if workers is None:
        monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    else:
        monkeypatch.setenv("GUNICORN_WORKERS", workers)
    assert [w.id for w in metrics_directory_check()] == (["jobs.W002"] if warned else [])
