"""Login throttling by address: many user names from one address are locked out too."""

import threading

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse

from jobs import throttle

from .conftest import soap_calls, wait_for


def test_spraying_many_user_names_from_one_address_is_throttled(db, settings):
    settings.AXES_IP_FAILURE_LIMIT = 20
    get_user_model().objects.create_user("real", password="right")
    browser = Client(REMOTE_ADDR="198.51.100.7")
    statuses = []
    for n in range(25):
        for attempt in range(4):
            response = browser.post(reverse("login"), {"username": f"user{n}", "password": f"guess{attempt}"})
            statuses.append(response.status_code)
    assert statuses[:19] == [200] * 19  # the login page again, each with its error
    assert set(statuses[19:]) == {429}  # the 20th failure from this address locks it out
    locked = browser.post(reverse("login"), {"username": "real", "password": "right"})
    assert locked.status_code == 429
    assert "paused for 15 min after the last failed attempt" in locked.content.decode()
    elsewhere = Client(REMOTE_ADDR="198.51.100.8")
    assert elsewhere.post(reverse("login"), {"username": "real", "password": "right"}).status_code == 302


# --- Sign-in with IPS: one person however spelled, and no race past the limits -----------------


@pytest.fixture
def sign_in_connection(connection, company):
    connection.ips_sign_in = True
    connection.save()
    return connection


def test_the_throttled_user_name_is_the_same_however_typed():
    spellings = ["ipsuser@example.com", "IpsUser@Example.com", "  IPSUSER@EXAMPLE.COM ", "ＩＰＳＵＳＥＲ@example.com",
                 "ipsuser@example.com\u00a0"]
    assert {throttle.throttle_username(None, {"username": s}) for s in spellings} == {"ipsuser@example.com"}
    assert throttle.throttle_username(None, {}) is None


def test_the_settings_count_failures_by_the_throttled_user_name():
    assert django_settings.AXES_USERNAME_CALLABLE == "jobs.throttle.throttle_username"


def test_five_spellings_of_one_email_get_five_guesses_not_twenty(sign_in_connection, ips_emulator):
    spellings = ["ipsuser@example.com", "IpsUser@example.com", "IPSUSER@EXAMPLE.COM", " ipsuser@Example.com ",
                 "ipsUSER@example.COM"]
    browser = Client(REMOTE_ADDR="198.51.100.9")
    statuses = [
        browser.post(reverse("login"), {"username": spelling, "password": f"guess{n}"}).status_code
        for n in range(4)
        for spelling in spellings
    ]
    assert len(soap_calls(ips_emulator, "checkLogin")) == django_settings.AXES_FAILURE_LIMIT == 5
    assert statuses[:4] == [200] * 4 and set(statuses[4:]) == {429}


def _login_together(usernames: list[str], hold) -> list[int]:
    """POST each login through the whole Django stack, each from its own thread (its own database
    connection) at once; the held ones go on once every other is answered."""
    barrier = threading.Barrier(len(usernames))
    results: list = [None] * len(usernames)

    def attempt(i, username):
        try:
            barrier.wait(timeout=30)
            browser = Client(REMOTE_ADDR="198.51.100.20")
            results[i] = browser.post(reverse("login"), {"username": username, "password": "wrong"}).status_code
        except Exception as exc:  # reported below
            results[i] = exc
        finally:
            db_connection.close()

    threads = [threading.Thread(target=attempt, args=(i, u), daemon=True) for i, u in enumerate(usernames)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(r is not None for r in results) + hold.held >= len(usernames),
             "every attempt to be answered or held at IPS")
    hold.release()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads)
    assert all(isinstance(r, int) for r in results), results
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("names, limit", [("many", "AXES_IP_FAILURE_LIMIT"), ("one", "AXES_FAILURE_LIMIT")])
def test_sixty_simultaneous_attempts_reach_ips_no_more_than_the_limit(names, limit, sign_in_connection, ips_emulator,
                                                                      hold_calls):
    usernames = [f"sprayed{n}@example.com" if names == "many" else "ipsuser@example.com" for n in range(60)]
    held = hold_calls(ips_emulator, "checkLogin")
    statuses = _login_together(usernames, held)
    allowed = getattr(django_settings, limit)
    assert held.received == allowed  # 20 from one address, 5 for one name: all at once or one by one
    assert statuses.count(429) >= 60 - allowed
    # Each attempt counted once: nothing is left in flight.
    # Each attempt counted once, under its own name: nothing is left in flight.
    assert throttle.address_failures("198.51.100.20") == 60
    counted = dict(AccessAttempt.objects.filter(ip_address="198.51.100.20")
                   .values_list("username", "failures_since_start"))
    expected = {name: usernames.count(name) for name in usernames}  # 60 names once each, or one name 60 times
    assert counted == expected


# --- A user name longer than any kept: refused before it is counted or checked -------------------


def test_the_throttled_user_name_fits_the_access_attempts_column():
    limit = AccessAttempt._meta.get_field("username").max_length
    assert len(throttle.throttle_username(None, {"username": "x" * 1000})) == limit


@pytest.mark.parametrize("sign_in", [False, True], ids=["local", "sign-in connection"])
def test_a_user_name_too_long_for_any_account_is_refused_by_the_form(sign_in, connection, company, ips_emulator):
    """On PostgreSQL, a 300-character name used to reach axes's varchar(255): a 500."""
    connection.ips_sign_in = sign_in
    connection.save()
    browser = Client(REMOTE_ADDR="198.51.100.30")
    name = "a" * 288 + "@example.com"
    response = browser.post(reverse("login"), {"username": name, "password": "guess"})
    assert response.status_code == 200
    assert response.context["form"].errors["username"]
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]
