"""/healthz and /readyz (issue 21; the contract is in jobs/metrics.py's docstring).

Readiness turns false, and says why, when the database cannot be reached (a gunicorn whose DATABASE_URL
points at a closed port), when a migration is not applied, and when no task worker or watcher was seen
recently (the dashboard's clock moved on, not waited for)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection as db_connection
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse

from jobs.models import Chore
from jobs.services import chores

from .conftest import free_port, look
from .test_concurrency import serving_gunicorn
from .test_notifications import run_tasks

BASE_DIR = Path(settings.BASE_DIR)


def _never_cached(response):
    cache = response.headers.get("Cache-Control", "")
    assert "no-cache" in cache and "no-store" in cache, cache


@pytest.fixture
def worked(synced, users):
    """A task worker ran the chores (db_worker's loop, in this process) and the watcher looked at both
    companies: everything a ready dashboard has seen."""
    for name in chores.NAMES:
        chores.start_chore(name)
    run_tasks()
    assert Chore.objects.filter(last_run_at__isnull=False).count() == len(chores.NAMES)
    for company in (synced, synced.connection.companies.exclude(pk=synced.pk).get()):
        look(company)
    return synced


def test_healthz_answers_without_the_database(client):
    response = client.get("/healthz")  # no db fixture: any query would raise here
    assert response.status_code == 200
    assert response.content == b"ok"
    _never_cached(response)
    assert "sessionid" not in response.cookies


@pytest.mark.django_db(transaction=True)
def test_it_is_ready_once_the_worker_and_the_watcher_were_seen(client, worked, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # a few queries, no IPS call
        response = client.get(reverse("jobs:ready"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "migrations", "worker", "watcher", "ips"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert body["checks"]["migrations"]["unapplied"] == []
    [contact] = body["checks"]["ips"]["connections"]
    assert contact["id"] == worked.connection.pk and contact["failing"] is False
    assert contact["last_contact"] and contact["last_ok"] == contact["last_contact"]
    _never_cached(response)
    _no_secret(response.content, worked.connection)


def _no_secret(content: bytes, connection):
    text = content.decode()
    assert connection.service_url not in text and "127.0.0.1" not in text
    assert connection.password_encrypted not in text and connection.get_password() not in text
    assert connection.username not in text


@pytest.mark.django_db(transaction=True)
def test_it_is_unready_when_no_task_worker_was_seen_recently(client, worked, dashboard_clock, settings):
    settings.READYZ_WATCHER_MAX_AGE = dt.timedelta(days=1)  # this test is the worker's
    dashboard_clock.advance(settings.READYZ_WORKER_MAX_AGE - dt.timedelta(seconds=5))
    assert client.get(reverse("jobs:ready")).status_code == 200
    dashboard_clock.advance(10)
    response = client.get(reverse("jobs:ready"))
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["worker"]["reason"].startswith("no task worker seen for 90")
    assert body["checks"]["watcher"]["ok"] is True and body["checks"]["database"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_it_is_unready_when_the_watcher_was_not_seen_recently(client, worked, dashboard_clock, settings):
    settings.READYZ_WORKER_MAX_AGE = dt.timedelta(days=1)
    dashboard_clock.advance(settings.READYZ_WATCHER_MAX_AGE + dt.timedelta(seconds=1))
    response = client.get(reverse("jobs:ready"))
    assert response.status_code == 503
    watcher = response.json()["checks"]["watcher"]
    assert watcher["ok"] is False and "the watcher has not looked at a company for" in watcher["reason"]
    assert response.json()["checks"]["worker"]["ok"] is True


def test_a_fresh_install_waits_for_its_first_worker(client, synced):
    response = client.get(reverse("jobs:ready"))
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["worker"] == {
        "ok": False, "last_seen": None, "max_age_seconds": settings.READYZ_WORKER_MAX_AGE.total_seconds(),
        "reason": "no task worker seen: no chore has run yet (manage.py start_chores, then a worker)",
    }
    assert checks["watcher"]["reason"] == "the watcher has not looked at any company yet (manage.py watch_ips)"
    assert checks["ips"]["connections"][0]["last_contact"] is None


@pytest.mark.django_db(transaction=True)
def test_it_is_unready_while_a_migration_is_not_applied(client, worked):
    # Django's own record of what is applied (django_migrations), as after a deploy that skipped migrate.
    recorder = MigrationRecorder(db_connection)
    latest = max(name for app, name in recorder.applied_migrations() if app == "jobs")
    assert client.get(reverse("jobs:ready")).status_code == 200
    recorder.record_unapplied("jobs", latest)
    try:
        response = client.get(reverse("jobs:ready"))
    finally:
        recorder.record_applied("jobs", latest)
    assert response.status_code == 503
    migrations = response.json()["checks"]["migrations"]
    assert migrations == {"ok": False, "unapplied": [f"jobs.{latest}"],
                          "reason": "1 migrations not applied (manage.py migrate)"}
    assert response.json()["checks"]["worker"]["ok"] is True


@pytest.fixture
def gunicorn_on_a_closed_port(tmp_path):
    """A gunicorn (one worker) whose database listens nowhere; stopped after the test."""
    db_port = free_port()
    env = {**__import__("os").environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "ipsadmin.settings",
           "DATABASE_URL": f"postgres://ipsadmin:db-password-xyzzy@127.0.0.1:{db_port}/ipsadmin"}
    with serving_gunicorn(env, tmp_path / "gunicorn.log", "--workers", "1") as (url, _):
        yield url


def test_it_is_unready_when_the_database_cannot_be_reached(gunicorn_on_a_closed_port):
    assert requests.get(gunicorn_on_a_closed_port + "/healthz", timeout=10).text == "ok"  # alive all the same
    response = requests.get(gunicorn_on_a_closed_port + "/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json() == {"ready": False, "checks": {"database": {
        "ok": False, "reason": "the database does not answer (OperationalError)"}}}
    assert "xyzzy" not in response.text and "ipsadmin:" not in response.text
    assert "no-store" in response.headers["Cache-Control"]
    assert json.loads(response.text)["ready"] is False


def test_readyz_answers_within_the_connect_timeout_when_the_database_never_answers():
    """A database host that takes the connection and then says nothing (R1 review, M1): /readyz answers 503
    with the reason within DATABASE_CONNECT_TIMEOUT, not when gunicorn kills the worker."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshake; nothing ever reads or answers
    port = silent.getsockname()[1]
    code = ("import django, json, time; django.setup(); from django.test import Client; t = time.monotonic(); "
            "r = Client(HTTP_HOST='localhost').get('/readyz'); "
            "print(json.dumps([r.status_code, r.json(), time.monotonic() - t]))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings", "DEBUG": "1",
           "DATABASE_URL": f"postgres://ipsadmin:pw@127.0.0.1:{port}/ipsadmin", "DATABASE_CONNECT_TIMEOUT": "1"}
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                              timeout=30)
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr[-2000:]
    status, body, seconds = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503
    assert body == {"ready": False, "checks": {"database": {
        "ok": False, "reason": "the database does not answer (OperationalError)"}}}
    # libpq waits at least 2 s; Django's connection health check may try twice.
    assert seconds < 10, seconds
    assert time.monotonic() - started < 30


def test_the_connect_timeout_is_in_the_postgresql_options():
    code = "from django.conf import settings as s; print(s.DATABASES['default']['OPTIONS']['connect_timeout'])"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings", "DATABASE_URL": "postgres://u:p@db/x"}
    env.pop("DATABASE_CONNECT_TIMEOUT", None)
    runs = [subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=more, capture_output=True, text=True,
                           timeout=60)
            for more in (env, {**env, "DATABASE_CONNECT_TIMEOUT": "3"},
                         {**env, "DATABASE_URL": "postgres://u:p@db/x?connect_timeout=7"},
                         {**env, "DATABASE_CONNECT_TIMEOUT": "0"})]
    assert [r.stdout.strip() for r in runs[:3]] == ["5", "3", "7"], [r.stderr[-500:] for r in runs]
    assert runs[3].returncode != 0 and "DATABASE_CONNECT_TIMEOUT must be at least 1" in runs[3].stderr


@pytest.mark.django_db(transaction=True)
def test_a_check_that_fails_outside_the_database_is_a_503_with_its_reason(client, worked, monkeypatch):
    """Loading the migrations can fail with no database error (a migration file that does not load): /readyz
    still answers its JSON, 503 (R1 review, Low 8)."""
    from django.db.migrations.exceptions import BadMigrationError

    from jobs.views import health

    def unloadable(connection):
        raise BadMigrationError("Migration 0099_broken in app jobs has no Migration class")

    monkeypatch.setattr(health, "MigrationExecutor", unloadable)
    response = client.get(reverse("jobs:ready"))
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["migrations"] == {"ok": False, "reason": "the check failed (BadMigrationError)"}
    assert checks["worker"]["ok"] is True and checks["database"]["ok"] is True
