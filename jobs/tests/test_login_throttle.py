"""Login throttling by address: many user names from one address are locked out too."""

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse


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
