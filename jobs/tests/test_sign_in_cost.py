"""What a sign-in with IPS costs: its statements and transactions, pinned; and its two
reads as the person (getUserInfo, getCompanyMembership) asked at the same time.

The figures are counts, not ceilings: a statement or a transaction added to a
sign-in fails here, and whoever adds one says why by changing the figure
(bench/sign_in.py measures the time). On a real database connection
(transactional_db): inside a test's transaction every atomic block would be a
savepoint. Counted with jobs/tests/sql_tally.py, as a press is.
"""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.urls import reverse

from jobs import ips
from jobs.ips.concurrent import at_once
from jobs.models import Membership, MembershipChange
from jobs.services import connections, people

from .conftest import soap_calls
from .sql_tally import tally

EMAIL, PASSWORD = "ipsuser@example.com", "demo"

# A returning IPS person's POST of the login form, their role in IPS unchanged:
#   axes' check of the name and the address (2); a local account of that name? (1);
#   the connections signing in with IPS (1);
#   the attempt counted before the password goes to IPS: the address's count, the name's,
#     the attempt's row got or made, and +1 (5; PostgreSQL also takes the address's lock first)
#     — one transaction, committed before IPS is asked;
#   [checkLogin, then getUserInfo and getCompanyMembership at once]
#   the user with its identity, locked; the identity's read_at; the connection's companies; the
#     person's memberships there, locked; read_at of the unchanged ones (5) — one transaction;
#   the login (one transaction): axes' attempts of the name to reset (1), the session's new key
#     checked and its row (2), axes' access log (1), axes' look at the attempts again (1), the
#     attempt counted before IPS taken back (its -1, its row read and deleted with its expiration: 4;
#     PostgreSQL takes the address's lock first), last_login (1).
# Nothing after: the session is not written twice (jobs/sessions.py).
SIGN_IN_STATEMENTS = {"sqlite": 24, "postgresql": 26}
SIGN_IN_TRANSACTIONS = 3


def _login(client, email=EMAIL, password=PASSWORD):
    return client.post(reverse("login"), {"username": email, "password": password})


@pytest.fixture
def sign_in_connection(connection, company, other_company):
    connection.ips_sign_in = True
    connection.save()
    return connection


@pytest.mark.django_db(transaction=True)
def test_a_returning_ips_persons_sign_in_makes_its_pinned_statements_and_transactions(sign_in_connection):
    # The first sign-in of the process builds the IPS client and makes the account: not counted.
    assert _login(Client()).status_code == 302
    browser = Client()
    with tally() as counted:
        response = _login(browser)
    assert response.status_code == 302 and "sessionid" in browser.cookies
    assert counted.count == SIGN_IN_STATEMENTS[connection.vendor], str(counted)
    assert counted.transactions == SIGN_IN_TRANSACTIONS, str(counted)
    # What it had to write, it wrote: the role read now, the session the browser holds.
    user = get_user_model().objects.get(username=EMAIL)
    membership = Membership.objects.get(user=user)
    assert (membership.role, membership.from_ips) == ("IpsUser", True)
    assert membership.read_at == user.ips_identity.read_at
    assert browser.session.get("_auth_user_id") == str(user.pk)  # the stored session is the signed-in one


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_writes_no_row_it_does_not_change(sign_in_connection):
    assert _login(Client()).status_code == 302
    with tally() as counted:
        assert _login(Client()).status_code == 302
    written = [s.split()[0:3] for s in counted.statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    tables = [w[2 if w[0].upper() == "INSERT" else 1].strip('"') for w in written]
    # No user row (the names are IPS's still), no membership made or changed, no change recorded.
    assert "auth_user" in tables and tables.count("auth_user") == 1  # last_login only
    assert "jobs_membershipchange" not in tables
    assert tables.count("django_session") == 1
    assert MembershipChange.objects.count() == 1  # the first sign-in's


def test_a_session_that_had_a_key_gets_a_new_one_at_sign_in(sign_in_connection):
    """Written once (jobs/sessions.py), yet no session fixation: a key someone may hold is replaced."""
    browser = Client()
    before = browser.session
    before["seen"] = True
    before.save()
    old = before.session_key
    assert _login(browser).status_code == 302
    assert browser.cookies["sessionid"].value != old
    assert not Session.objects.filter(session_key=old).exists()
    assert browser.session.get("seen") is True  # its data kept, as Django keeps it


def test_a_changed_role_still_goes_through_change_membership(sign_in_connection, ips_emulator):
    assert _login(Client()).status_code == 302
    ips_emulator.state.change_user(EMAIL, memberships={"47": "IpsCompanyAdmin", "48": "IpsUser"})
    assert _login(Client()).status_code == 302
    roles = dict(Membership.objects.filter(user__username=EMAIL).values_list("company__handle", "role"))
    assert roles == {"47": "IpsCompanyAdmin", "48": "IpsUser"}
    changes = MembershipChange.objects.order_by("pk").values_list("company_handle", "role_before", "role_after")
    assert list(changes) == [("47", "", "IpsUser"), ("47", "IpsUser", "IpsCompanyAdmin"), ("48", "", "IpsUser")]
    ips_emulator.state.change_user(EMAIL, memberships={"47": ["IpsCompanyAdmin", False]})  # no longer active
    assert _login(Client()).status_code == 302
    assert list(Membership.objects.filter(user__username=EMAIL).values_list("company__handle", flat=True)) == ["48"]


# --- getUserInfo and getCompanyMembership at the same time ------------------------------------------


def test_both_reads_as_the_person_are_asked_at_the_same_time(sign_in_connection, ips_emulator, hold_calls):
    info = hold_calls(ips_emulator, "getUserInfo")
    memberships = hold_calls(ips_emulator, "getCompanyMembership")
    both_held = []

    def release_once_both_are_held():
        # One after the other, the second would never arrive while the first is held.
        try:
            info.wait(timeout=10)
            memberships.wait(timeout=10)
            both_held.append(True)
        finally:
            info.release()
            memberships.release()

    helper = threading.Thread(target=release_once_both_are_held)
    helper.start()
    response = _login(Client())
    helper.join()
    assert both_held == [True]
    assert response.status_code == 302
    assert [len(soap_calls(ips_emulator, op)) for op in ("checkLogin", "getUserInfo", "getCompanyMembership")] == [1, 1, 1]
    assert Membership.objects.get(user__username=EMAIL).role == "IpsUser"


def test_a_failed_membership_read_fails_the_sign_in_as_before(sign_in_connection, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getCompanyMembership", code=30000, reason="Busy")
    response = _login(Client())
    assert response.status_code == 200
    assert "IPS could not check your password just now" in response.content.decode()
    assert len(soap_calls(ips_emulator, "getUserInfo")) == 1  # asked, its answer not used
    assert not get_user_model().objects.filter(username=EMAIL).exists()


def test_a_failed_user_info_read_fails_the_sign_in_whatever_the_memberships_say(sign_in_connection, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getUserInfo", code=30000, reason="Busy")
    response = _login(Client())
    assert "IPS could not check your password just now" in response.content.decode()
    assert len(soap_calls(ips_emulator, "getCompanyMembership")) == 1
    assert not get_user_model().objects.filter(username=EMAIL).exists()


def test_a_membership_read_refused_by_role_signs_in_with_no_rights_as_before(sign_in_connection, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getCompanyMembership", code=20003, reason="Not allowed",
                              fault="authorizationFault")
    assert _login(Client()).status_code == 302
    user = get_user_model().objects.get(username=EMAIL)
    assert not user.memberships.exists()
    assert user.ips_identity.default_role == ""  # getUserInfo's answer dropped with it, as before


def test_a_membership_read_past_its_deadline_fails_the_sign_in(sign_in_connection, ips_emulator, hold_calls, settings):
    settings.IPS_CONNECT_TIMEOUT, settings.IPS_READ_TIMEOUT = 0.05, 0.5  # a held call ends in 0.5 s
    hold_calls(ips_emulator, "getCompanyMembership")
    response = _login(Client())
    text = response.content.decode()
    assert response.status_code == 200
    assert "IPS could not check your password just now" in text and "getCompanyMembership" in text
    assert len(soap_calls(ips_emulator, "getUserInfo")) == 1
    assert not get_user_model().objects.filter(username=EMAIL).exists()


class _ScriptedDeadline(connections.Deadline):
    """A request deadline whose time left is said by the test, check after check."""

    def __init__(self, *remaining):
        super().__init__(60)
        self._left = list(remaining)

    def remaining(self):
        return self._left.pop(0) if len(self._left) > 1 else self._left[0]


def test_neither_read_starts_when_one_call_no_longer_fits_in_the_request(sign_in_connection, ips_emulator):
    enough, too_little = connections.per_call() * 2, connections.per_call() / 2
    with pytest.raises(people.SignInRefused, match="IPS answered too slowly"):
        people.sign_in_with_ips(sign_in_connection, EMAIL, PASSWORD, _ScriptedDeadline(enough, too_little))
    assert len(soap_calls(ips_emulator, "checkLogin")) == 1
    assert soap_calls(ips_emulator, "getUserInfo") == soap_calls(ips_emulator, "getCompanyMembership") == []


def test_both_reads_start_when_one_call_fits_though_two_in_a_row_would_not(sign_in_connection, ips_emulator):
    one_and_a_half = connections.per_call() * 1.5
    user = people.sign_in_with_ips(sign_in_connection, EMAIL, PASSWORD, _ScriptedDeadline(one_and_a_half))
    assert user.get_username() == EMAIL


# --- at_once itself ---------------------------------------------------------------------------------


def test_at_once_runs_the_calls_together_and_keeps_their_order():
    meet = threading.Barrier(3, timeout=10)  # passes only when all three calls are running at once

    def call(value):
        return lambda: (meet.wait(), value)[1]

    assert [o.result() for o in at_once(call("a"), call("b"), call("c"))] == ["a", "b", "c"]


def test_at_once_hands_each_failure_to_the_caller_to_raise():
    def fails():
        raise ips.IpsTimeout("slow", request_sent=True)

    first, second = at_once(fails, lambda: 2)
    assert second.result() == 2
    assert isinstance(first.error, ips.IpsTimeout)
    with pytest.raises(ips.IpsTimeout):
        first.result()
