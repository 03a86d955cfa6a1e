"""Every time in the user's zone: their choice in Settings, else their browser's, else TIME_ZONE."""

import datetime as dt
from pathlib import Path

import pytest
from django.urls import reverse

from jobs.models import Execution, Profile

from .conftest import ALL_ACTORS, ANONYMOUS, make_execution

AT = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def noon_run(users, job):
    return make_execution(job, users["IpsUser"], "denied", requested_at=AT)


def _requested(client) -> str:
    """The time the history row shows."""
    body = client.get(reverse("jobs:history")).content.decode()
    return body[body.index('<tr id="execution-') :][:400]


def test_without_a_zone_times_are_in_the_servers(client, login, noon_run, settings):
    login("IpsUser")
    assert "2026-11-29 12:00:00 UTC" in _requested(client)


def test_the_browsers_zone_from_its_cookie(client, login, noon_run):
    login("IpsUser")
    client.cookies["tz"] = "America/Los_Angeles"
    assert "2026-11-29 04:00:00 PST" in _requested(client)
    # The date moves with the zone.
    client.cookies["tz"] = "Pacific/Auckland"
    assert "2026-11-30 01:00:00 NZDT" in _requested(client)


@pytest.mark.parametrize("cookie", ["Nowhere/City", "../../etc/passwd", "", "UTC; x=1"])
def test_a_cookie_that_is_no_zone_is_ignored(cookie, client, login, noon_run):
    login("IpsUser")
    client.cookies["tz"] = cookie
    assert "2026-11-29 12:00:00 UTC" in _requested(client)


def test_the_users_choice_wins_over_the_browser(client, login, users, noon_run):
    Profile.objects.create(user=users["IpsUser"], time_zone="Asia/Tokyo")
    login("IpsUser")
    client.cookies["tz"] = "America/Los_Angeles"
    assert "2026-11-29 21:00:00 JST" in _requested(client)


def test_settings_saves_the_zone_and_every_page_shows_it(client, login, users, noon_run):
    login("IpsUser")
    url = reverse("jobs:preferences")
    assert client.get(url).status_code == 200
    response = client.post(url, {"time_zone": "Europe/Zurich"})
    assert response.status_code == 302
    assert Profile.objects.get(user=users["IpsUser"]).time_zone == "Europe/Zurich"
    assert "2026-11-29 13:00:00 CET" in _requested(client)
    assert "Times in Europe/Zurich" in client.get(reverse("jobs:list")).content.decode()
    # Back to the browser's.
    client.post(url, {"time_zone": ""})
    client.cookies["tz"] = "America/Los_Angeles"
    assert "2026-11-29 04:00:00 PST" in _requested(client)


def test_settings_refuses_a_zone_that_does_not_exist(client, login, users):
    login("IpsUser")
    response = client.post(reverse("jobs:preferences"), {"time_zone": "Mars/Olympus"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Profile.objects.exists()


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_settings_are_everyones_own(actor, client, login, users):
    """Any signed-in user has settings, whatever their IPS user type; nobody else's."""
    login(actor)
    response = client.get(reverse("jobs:preferences"))
    if actor == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        assert client.post(reverse("jobs:preferences"), {"time_zone": "UTC"}).status_code == 302
        assert not Profile.objects.exists()
        return
    assert response.status_code == 200
    client.post(reverse("jobs:preferences"), {"time_zone": "Asia/Tokyo"})
    assert list(Profile.objects.values_list("user__username", "time_zone")) == [(users[actor].username, "Asia/Tokyo")]


def test_the_script_keeps_the_browsers_zone_in_a_cookie():
    script = (Path(__file__).resolve().parents[2] / "static" / "ipsadmin.js").read_text()
    assert "resolvedOptions().timeZone" in script and '"tz="' in script


def test_the_jobs_page_shows_next_fire_times_with_their_date_in_the_users_zone(client, login, users, job):
    job.next_fire_time = AT
    job.save()
    Profile.objects.create(user=users["IpsUser"], time_zone="Asia/Tokyo")
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert "Sun 2026-11-29 21:00 JST" in body
    assert Execution.objects.count() == 0
