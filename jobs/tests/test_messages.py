"""Messages say exactly what happened when running a job.

A failed look before running says nothing was started; an HTTP 500 page from IPS is an
IPS error, not "unreachable"; an in-flight refusal says when Run is offered again;
"already running" has no Sent time; IPS addresses are shown to staff only.
"""

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Execution

from .conftest import HTMX, make_execution, press_run, soap_calls


def test_a_failed_look_before_running_says_nothing_was_started(client, login, job, ips_emulator):
    ips_emulator.state.inject("drop_connection", operation="getActiveJobs")
    login("IpsUser")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    row = Execution.objects.get()
    assert "Nothing was started" in row.message and "may or may not" not in row.message
    assert row.sent_at is None and soap_calls(ips_emulator, "executeJob") == []


def test_an_http_500_from_ips_is_not_unreachable(client, login, job, ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="executeJob")
    login("IpsUser")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    row = Execution.objects.get()
    assert row.outcome == "ips_error" and row.get_outcome_display() == "IPS error page"
    assert "HTTP 500 error page" in row.message


def test_an_interrupted_start_says_when_run_is_offered_again(client, login, users, job):
    other = make_execution(job, users["IpsUser"], "sending")
    login("TrialSiteUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    again = timezone.localtime(other.requested_at + Execution.stale_after())
    assert f"offered again from {again:%H:%M:%S}" in response.content.decode()
    assert "Nothing was sent" in response.content.decode()


def test_an_already_running_refusal_has_no_sent_time(clock_free_run, client, login, job, ips_emulator):
    login("TrialSiteUser")
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 409
    row = Execution.objects.filter(username="trialsiteuser").get()
    assert row.outcome == "already_running" and row.sent_at is None


@pytest.fixture
def clock_free_run(ips_emulator, job, users):
    ips_emulator.state.job_duration = 3600
    assert press_run(job, users["IpsUser"]).outcome == "accepted"


@pytest.mark.parametrize("actor, shown", [("IpsUser", False), ("admin", True)])
def test_ips_addresses_are_for_staff_only(actor, shown, client, login, job, unused_url):
    connection_ = job.company.connection
    connection_.service_url = unused_url
    connection_.save()
    login(actor)
    body = client.post(reverse("jobs:run", args=[job.pk]), **HTMX).content.decode()
    row = Execution.objects.get()
    assert unused_url not in row.message
    assert (unused_url in body) is shown
    assert "refused the connection" in body
