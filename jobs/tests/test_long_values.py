"""Values from IPS longer than their column: cut to fit (and the work goes on), or refused
with a clear message, never a 500. PostgreSQL refuses an over-long varchar; SQLite
stores it, so the tests assert the stored length on both."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from ipsemulator import records
from ipsemulator import operations
from jobs.models import Company, Execution, IpsIdentity, Job

from .conftest import HTMX, look, press_run

LONG_STATE = "Running (waiting for the image server to answer)"  # 48 characters; the column has 20


def test_a_long_run_state_is_cut_and_the_run_still_gets_its_result(job, users, ips_emulator, ips_clock, monkeypatch,
                                                                    client, login):
    real_active_job = records.Run.active_job

    def active_job(run, *args, **kwargs):
        made = real_active_job(run, *args, **kwargs)
        if made["state"] != "Done":
            made["state"] = LONG_STATE
        return made

    monkeypatch.setattr(records.Run, "active_job", active_job)
    execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted"
    ips_clock.advance(0.5)  # half-way
    look(job.company)
    execution.refresh_from_db()
    limit = Execution._meta.get_field("ips_state").max_length
    assert execution.ips_state == LONG_STATE[: limit - 1] + "…"
    assert len(execution.ips_state) == limit
    login("IpsUser")
    poll = client.get(reverse("jobs:status", args=[job.pk]), **HTMX)
    assert poll.status_code == 200 and execution.ips_state in poll.content.decode()
    ips_clock.advance(1.0)  # over
    look(job.company)
    execution.refresh_from_db()
    assert (execution.ips_state, execution.ips_result) == ("Done", "ok")


def test_a_long_log_type_is_cut_too(job, users, ips_emulator, ips_clock, monkeypatch):
    long_type = "Begin" + "ImageServingPublish" * 5  # 100 characters; the column has 64
    real_log = records.Run.log

    def log(run, *args, **kwargs):
        made = real_log(run, *args, **kwargs)
        if made.log_type.startswith("Begin"):
            made.log_type = long_type
        return made

    monkeypatch.setattr(records.Run, "log", log)
    execution = press_run(job, users["IpsUser"])
    ips_clock.advance(0.5)
    look(job.company)
    execution.refresh_from_db()
    limit = Execution._meta.get_field("ips_log_type").max_length
    assert execution.ips_log_type == long_type[: limit - 1] + "…"


def test_a_long_submit_user_of_a_run_ips_started_is_cut(job, ips_emulator, ips_clock):
    """A run another IPS client started: its row's user name is IPS's submit user, cut to the column."""
    email = "r" * 200 + "@example.com"  # 212 characters; a user name has 150
    with ips_emulator.state._lock:
        handle = operations.start_run(ips_emulator.state, ips_emulator.state.jobs[job.handle], email,
                                      ips_emulator.state.now()).handle
    look(job.company)
    ips_clock.advance(2.0)  # over
    look(job.company)
    [row] = Execution.objects.filter(ips_run_handle=handle)
    limit = Execution._meta.get_field("username").max_length
    assert row.username == email[: limit - 1] + "…" and len(row.username) == limit
    assert row.started_by == Execution.StartedBy.OTHER and row.ips_result == "ok"
    assert row.job == Job.objects.get(pk=job.pk)


def test_a_long_company_name_is_cut_when_added(connection, ips_emulator, client, users):
    name = "Società " + "Nordlicht & Søn " * 20  # 328 characters; the column has 255
    ips_emulator.state.companies["52"].name = name
    client.force_login(users["admin"])
    response = client.post(reverse("admin:jobs_connection_changelist"),
                           {"action": "add_companies_from_ips", "_selected_action": [connection.pk]}, follow=True)
    assert response.status_code == 200
    added = Company.objects.get(handle="52")
    limit = Company._meta.get_field("name").max_length
    assert added.name == name[: limit - 1] + "…" and len(added.name) == limit
    assert "added" in response.content.decode()


LONG_EMAIL = "a" * 180 + "@example.com"  # 192 characters; a user name has 150


def test_a_long_ips_email_is_refused_with_a_clear_message(connection, company, ips_emulator):
    connection.ips_sign_in = True
    connection.save()
    ips_emulator.state.add_user(LONG_EMAIL, "demo", "IpsUser", {"47": "IpsUser"})
    response = Client().post(reverse("login"), {"username": LONG_EMAIL, "password": "demo"})
    assert response.status_code == 200
    assert "longer than 150 characters" in response.content.decode()
    assert not get_user_model().objects.filter(username__startswith="aaaa").exists()
    assert not IpsIdentity.objects.exists()
    # Refused before anything goes to IPS: no password for an account that cannot exist.
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]


def test_long_names_and_handles_from_ips_are_cut_at_sign_in(connection, company, ips_emulator):
    connection.ips_sign_in = True
    connection.save()
    user = ips_emulator.state.users["ipsuser@example.com"]
    user.first_name, user.last_name = "F" * 200, "L" * 200
    response = Client().post(reverse("login"), {"username": "ipsuser@example.com", "password": "demo"})
    assert response.status_code == 302
    person = get_user_model().objects.get(username="ipsuser@example.com")
    assert len(person.first_name) == len(person.last_name) == 150


@pytest.mark.parametrize("spaces", ["", "  "])
def test_an_email_of_150_characters_signs_in(spaces, connection, company, ips_emulator):
    email = "b" * 138 + "@example.com"
    assert len(email) == 150
    connection.ips_sign_in = True
    connection.save()
    ips_emulator.state.add_user(email, "demo", "IpsUser", {"47": "IpsUser"})
    response = Client().post(reverse("login"), {"username": spaces + email + spaces, "password": "demo"})
    assert response.status_code == 302
    assert get_user_model().objects.filter(username=email).exists()
