"""One deadline for a whole sign-in with IPS, and for a whole admin action, across
connections: inside gunicorn's worker timeout, however slow IPS is.

IPS is slow for real here: the emulator holds the calls (hold_calls), and the
dashboard's small timeouts cut them off. Each IPS call then lasts at least
the read timeout, so what remains of the deadline is known without a sleep or
a margin: 1.0 s less at least 0.5 s, which no further call of up to 0.55 s fits.
"""

from pathlib import Path

import pytest
from django.contrib import messages
from django.test import Client
from django.urls import reverse

from jobs.models import Company, Connection
from jobs.services import base, connections, people, sync

from .conftest import soap_calls

CONNECT, READ = 0.05, 0.5  # a call lasts at most 0.55 s, and a held one at least 0.5 s
BUDGET = 1.0  # the deadline of a request: room for one slow call, not for a second


@pytest.fixture
def slow_ips(settings):
    settings.IPS_CONNECT_TIMEOUT, settings.IPS_READ_TIMEOUT = CONNECT, READ
    settings.GUNICORN_TIMEOUT = BUDGET / 0.9  # a tenth of it is left for the rest of the request
    assert connections.request_budget() == pytest.approx(BUDGET)


@pytest.fixture
def second(connection, ips_emulator):
    """Another connection to the same IPS, signing in too; company 48 is its."""
    made = Connection(name="Second", service_url=ips_emulator.service_url, username="service@example.com")
    made.set_password("demo")
    made.save()
    Connection.objects.update(ips_sign_in=True)
    Company.objects.create(connection=connection, handle="47", name="Demo Company")
    Company.objects.create(connection=made, handle="48", name="Other Company")
    return made


def _login(email="ipsuser@example.com", password="demo"):
    return Client().post(reverse("login"), {"username": email, "password": password})


def test_a_slow_ips_stops_the_sign_in_before_the_next_connection(slow_ips, second, ips_emulator, hold_calls):
    held = hold_calls(ips_emulator, "checkLogin")
    response = _login()
    assert response.status_code == 200
    # The first connection's checkLogin took its whole time; the second was not asked.
    assert held.received == 1
    assert "IPS answered too slowly for sign-in to finish within one request" in response.content.decode()


def test_a_slow_ips_after_check_login_stops_the_sign_in(slow_ips, second, ips_emulator, hold_calls):
    held = hold_calls(ips_emulator, "checkLogin")
    held.release()  # checkLogin answers at once ...
    slow = hold_calls(ips_emulator, "getUserInfo")  # ... getUserInfo never
    response = _login()
    assert slow.received == 1
    # Asked at the same time as getUserInfo (people.sign_in_with_ips), on the first connection only.
    assert len(soap_calls(ips_emulator, "getCompanyMembership")) == 1
    assert len(soap_calls(ips_emulator, "checkLogin")) == 1  # nor the second connection
    assert "IPS answered too slowly" in response.content.decode()


def test_a_quick_ips_is_asked_on_every_connection(slow_ips, second, ips_emulator, connection):
    # The first connection does not know the person's company (48): the second signs them in.
    Company.objects.filter(handle="47").delete()
    ips_emulator.state.change_user("ipsuser@example.com", memberships={"48": "IpsUser"})
    Connection.objects.filter(pk=connection.pk).update(ips_sign_in=False)
    assert _login().status_code == 302
    Connection.objects.filter(pk=connection.pk).update(ips_sign_in=True)
    response = _login("ipsuser@example.com", "wrong")  # refused by both, both asked
    assert response.status_code == 200
    assert len(soap_calls(ips_emulator, "checkLogin")) == 3


@pytest.fixture
def admin_browser(db, django_user_model):
    browser = Client()
    browser.force_login(django_user_model.objects.create_superuser("root", password="x"))
    return browser


def _action(browser, model, action, pks):
    response = browser.post(reverse(f"admin:jobs_{model}_changelist"),
                            {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)
    return [(m.level, str(m)) for m in response.context["messages"]]


def test_the_admins_sync_over_two_connections_stops_in_time(slow_ips, connection, second, ips_emulator,
                                                            admin_browser, hold_calls):
    held = hold_calls(ips_emulator, "getScheduledJobs")
    said = _action(admin_browser, "connection", "sync_connection_jobs", [connection.pk, second.pk])
    assert held.received == 1
    assert len(said) == 2 and all(level == messages.ERROR for level, _ in said)
    assert any("not synced: IPS answered too slowly for every company to be synced within one request (1 s)"
               in text for _, text in said), said


def test_the_admins_test_connection_over_two_connections_stops_in_time(slow_ips, connection, second, ips_emulator,
                                                                       admin_browser, hold_calls):
    held = hold_calls(ips_emulator, "checkLogin")
    said = _action(admin_browser, "connection", "test_connections", [connection.pk, second.pk])
    assert held.received == 1
    assert (messages.WARNING, "Second: not asked: IPS answered too slowly for every connection to be asked "
            "within one request (1 s). Select it again.") in said


def test_without_gunicorns_timeout_the_budget_is_a_runs(settings):
    del settings.GUNICORN_TIMEOUT
    settings.IPS_CONNECT_TIMEOUT, settings.IPS_READ_TIMEOUT = 3.0, 10.0
    assert connections.request_budget() == 26.0  # what gunicorn's start check makes fit
    settings.GUNICORN_TIMEOUT = 45
    assert connections.request_budget() == 40.5


# --- One deadline check, and fit where every service finds it ----------------------------------


def test_the_deadline_says_out_of_time_in_one_place():
    connections.Deadline(3600).check(2)  # plenty of time: nothing raised
    with pytest.raises(connections.OutOfTime):
        connections.Deadline(0).check()
    # The copies are gone: every caller asks Deadline.check and says its own words.
    for module in (connections, people, sync):
        assert not hasattr(module, "in_time") and not hasattr(module, "_in_time"), module


def test_fit_lives_in_services_base():
    assert base.fit(Company, "name", "x" * 300) == "x" * 254 + "…"  # the column keeps 255
    source = Path(sync.__file__).read_text()
    assert "def fit(" not in source and "TYPE_CHECKING" not in source
