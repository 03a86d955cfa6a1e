"""Sync: jobs kept in step with getScheduledJobs, against the emulator over HTTP."""

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from ipsemulator.state import Job as EmulatedJob
from jobs import ips
from jobs.services import sync
from jobs.models import Execution, Job

from .conftest import ALL_ACTORS, HTMX, executes, press_run, soap_calls
UTC = dt.timezone.utc

# Company 47 in ipsemulator/demo.toml:
# handle -> (name, type, schedule, next fire time in UTC, trigger state, time zone)
COMPANY_47_JOBS = {
    "47|My Test Job|": (
        "My Test Job", "ImageServingPublish", "00 00 00 * * ",
        dt.datetime(2026, 11, 30, 8, 0, tzinfo=UTC), "Normal", "PST",
    ),
    "47|Nightly | Publish|": (
        "Nightly | Publish", "ImageServingPublish", "00 30 02 * * ",
        dt.datetime(2026, 11, 30, 10, 30, tzinfo=UTC), "Normal", "PST",
    ),
    "47|<b>Bold</b> Upload|": (
        "<b>Bold</b> Upload", "UrlUpload", "00 15 * * * ",
        dt.datetime(2026, 11, 29, 19, 15, tzinfo=UTC), "Paused", "PST",
    ),
    "47|Übersicht Publish|": (
        "Übersicht Publish", "ImageRenderingPublish", "00 00 06 * * ",
        dt.datetime(2026, 11, 30, 5, 0, tzinfo=UTC), "Normal", "CET",
    ),
    "47|Video Sync|": (
        "Video Sync", "VideoPublish", "00 00 01 * * 1",
        dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC), "Blocked", "PST",
    ),
}


def _row(job):
    return (job.name, job.type, job.exec_schedule, job.next_fire_time, job.trigger_state, job.time_zone)


def _state(company):
    """Everything sync may write, by handle."""
    return {
        j.handle: (*_row(j), j.description, j.is_gone, j.gone_at, j.last_synced_at)
        for j in Job.objects.filter(company=company)
    }


# --- sync.sync_company ----------------------------------------------------


def test_it_creates_the_companys_jobs(company, ips_emulator):
    result = sync.sync_company(company)
    assert not result.error
    assert (result.created, result.updated, result.gone) == (5, 0, 0)
    assert str(result) == "Demo Company (47): 5 new, 0 updated, 0 gone from IPS"
    assert set(Job.objects.filter(company=company).values_list("handle", flat=True)) == set(COMPANY_47_JOBS)
    assert Job.objects.count() == 5
    [call] = soap_calls(ips_emulator, "getScheduledJobs")
    assert call["company_handle"] == "47" and call["user"] == "service@example.com"


@pytest.mark.parametrize("handle", list(COMPANY_47_JOBS))
def test_it_stores_each_jobs_fields(company, ips_emulator, handle):
    sync.sync_company(company)
    job = Job.objects.get(company=company, handle=handle)
    assert _row(job) == COMPANY_47_JOBS[handle]
    assert timezone.is_aware(job.next_fire_time)
    assert job.original_name == job.name
    assert job.submit_user_email.endswith("@example.com")
    assert job.is_gone is False and job.gone_at is None
    assert job.last_synced_at is not None and timezone.now() - job.last_synced_at < dt.timedelta(minutes=1)


def test_it_stores_descriptions_as_text(company, ips_emulator):
    sync.sync_company(company)
    job = Job.objects.get(company=company, handle="47|<b>Bold</b> Upload|")
    assert job.description == "Name with <markup> & an ampersand"
    assert job.submit_user_email == "ipsuser@example.com"


def test_a_second_sync_updates_and_creates_no_duplicates(company, ips_emulator):
    sync.sync_company(company)
    first = {j.handle: j.pk for j in Job.objects.filter(company=company)}

    emulated = ips_emulator.state.jobs["47|My Test Job|"]
    emulated.name = "My Renamed Job"
    emulated.exec_schedule = "00 00 12 * * "
    emulated.next_fire_time = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    emulated.time_zone = "EST"
    emulated.description = "changed"
    ips.client_for(company.connection).pause_job("47", "47|Video Sync|")  # over HTTP

    result = sync.sync_company(company)
    assert not result.error
    assert (result.created, result.updated, result.gone) == (0, 5, 0)
    assert Job.objects.count() == 5
    assert {j.handle: j.pk for j in Job.objects.filter(company=company)} == first
    renamed = Job.objects.get(handle="47|My Test Job|")
    assert _row(renamed) == (
        "My Renamed Job", "ImageServingPublish", "00 00 12 * * ",
        dt.datetime(2026, 12, 1, 20, 0, tzinfo=UTC), "Normal", "EST",
    )
    assert renamed.description == "changed"
    assert Job.objects.get(handle="47|Video Sync|").trigger_state == "Paused"
    assert _row(Job.objects.get(handle="47|Nightly | Publish|")) == COMPANY_47_JOBS["47|Nightly | Publish|"]


def test_a_job_added_in_ips_is_created(company, ips_emulator):
    sync.sync_company(company)
    ips_emulator.state.jobs["47|Fresh Job|"] = EmulatedJob(
        company="47", handle="47|Fresh Job|", name="Fresh Job", type="Cleanup",
        exec_schedule="00 00 05 * * ", time_zone="UTC", trigger_state="Normal",
        next_fire_time=dt.datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
    )
    result = sync.sync_company(company)
    assert (result.created, result.updated, result.gone) == (1, 5, 0)
    fresh = Job.objects.get(company=company, handle="47|Fresh Job|")
    assert _row(fresh) == (
        "Fresh Job", "Cleanup", "00 00 05 * * ", dt.datetime(2026, 12, 2, 5, 0, tzinfo=UTC), "Normal", "UTC",
    )
    assert Job.objects.count() == 6


class _EmptyItem:
    """A scheduled job the emulator lists as an empty ``<items/>`` (every field absent)."""

    company, handle, name = "47", "47|(empty)|", ""

    def wire(self, root_path=""):
        return {}


@pytest.mark.parametrize("item", ["empty", "blank handle"])
def test_an_item_without_a_job_handle_is_skipped_with_a_note(company, ips_emulator, item, caplog):
    # An empty <items/> in getScheduledJobs' jobArray once crashed the sync (IntegrityError).
    if item == "empty":
        ips_emulator.state.jobs["47|(empty)|"] = _EmptyItem()
    else:  # <jobHandle></jobHandle>: names no job either
        ips_emulator.state.add_job("47", "Nameless")
        ips_emulator.state.jobs["47|Nameless|"].handle = ""
    result = sync.sync_company(company)
    assert not result.error, result.error
    assert (result.created, result.gone) == (5, 0)
    assert set(Job.objects.values_list("handle", flat=True)) == set(COMPANY_47_JOBS)
    assert "getScheduledJobs with 1 item(s) without a jobHandle; skipped" in caplog.text


def test_it_keeps_companies_apart(company, other_company, ips_emulator):
    sync.sync_company(other_company)
    assert not Job.objects.filter(company=company).exists()
    assert sorted(Job.objects.filter(company=other_company).values_list("name", flat=True)) == [
        "Menü Bilder Upload", "Metadaten Import", "Template Publish",
    ]


def test_a_job_deleted_in_ips_is_marked_gone_never_deleted(company, users, ips_emulator):
    sync.sync_company(company)
    job = Job.objects.get(company=company, handle="47|My Test Job|")
    execution = press_run(job, users["IpsUser"], "before-delete")
    assert execution.outcome == "accepted"

    ips.client_for(company.connection).delete_job("47", "47|My Test Job|")
    assert "47|My Test Job|" not in ips_emulator.state.jobs

    result = sync.sync_company(company)
    assert (result.created, result.updated, result.gone) == (0, 4, 1)
    job.refresh_from_db()
    assert job.is_gone is True
    assert job.gone_at is not None and timezone.now() - job.gone_at < dt.timedelta(minutes=1)
    assert _row(job) == COMPANY_47_JOBS["47|My Test Job|"]
    assert Job.objects.count() == 5
    assert Job.objects.filter(is_gone=True).count() == 1
    row = Execution.objects.get(pk=execution.pk)
    assert row.job == job and row.request_id == "before-delete" and row.outcome == "accepted"

    # Still gone after another sync: counted once, gone_at unchanged.
    gone_at = job.gone_at
    again = sync.sync_company(company)
    assert (again.created, again.updated, again.gone) == (0, 4, 0)
    job.refresh_from_db()
    assert job.is_gone and job.gone_at == gone_at

    # A gone job cannot be run: nothing is sent.
    refused = press_run(job, users["IpsUser"], "after-delete")
    assert refused.outcome == "job_gone"
    assert len(executes(ips_emulator)) == 1


def test_a_job_back_in_ips_is_no_longer_gone(company, ips_emulator):
    sync.sync_company(company)
    emulated = ips_emulator.state.jobs["47|Video Sync|"]
    ips.client_for(company.connection).delete_job("47", "47|Video Sync|")
    sync.sync_company(company)
    assert Job.objects.get(handle="47|Video Sync|").is_gone

    ips_emulator.state.jobs[emulated.handle] = emulated
    result = sync.sync_company(company)
    assert (result.created, result.updated, result.gone) == (0, 5, 0)
    job = Job.objects.get(handle="47|Video Sync|")
    assert job.is_gone is False and job.gone_at is None


# injection -> words of the error
FAILURES = [
    (dict(kind="soap_fault", code=30000, reason="Disk full"), ["sync failed", "30000", "Disk full"]),
    (dict(kind="soap_fault", code=20003, reason="No permission"), ["sync failed", "20003", "NO_OPERATION_PERMISSION"]),
    (dict(kind="soap_fault", code=10001, reason="Bad password"), ["sync failed", "10001"]),
    (dict(kind="drop_connection"), ["sync failed", "closed the connection"]),
    (dict(kind="http_500_html"), ["sync failed", "HTTP 500"]),
    (dict(kind="malformed_xml"), ["sync failed"]),
    (dict(kind="empty_body"), ["sync failed"]),
]


@pytest.mark.parametrize("injection, words", FAILURES)
def test_a_failed_sync_changes_nothing(company, ips_emulator, injection, words):
    sync.sync_company(company)
    before = _state(company)
    # IPS has changed meanwhile, but the sync cannot see it.
    ips_emulator.state.jobs["47|My Test Job|"].name = "Renamed"
    ips.client_for(company.connection).delete_job("47", "47|Video Sync|")

    ips_emulator.state.inject(operation="getScheduledJobs", **injection)
    result = sync.sync_company(company)
    assert result.error
    for word in words:
        assert word in result.error, result.error
    assert (result.created, result.updated, result.gone) == (0, 0, 0)
    assert str(result).startswith("Demo Company (47): sync failed")
    assert _state(company) == before
    assert not Job.objects.filter(is_gone=True).exists()


def test_a_failed_first_sync_creates_nothing(company, unused_url):
    company.connection.service_url = unused_url
    company.connection.save()
    result = sync.sync_company(company)
    assert "refused the connection" in result.error
    assert not Job.objects.exists()


# --- sync_jobs command ----------------------------------------------------------


def _sync_jobs(*args, **kwargs):
    out = io.StringIO()
    call_command("sync_jobs", *args, stdout=out, **kwargs)
    return out.getvalue()


def test_sync_jobs_syncs_every_company(company, other_company, ips_emulator):
    out = _sync_jobs()
    assert "Demo Company (47): 5 new, 0 updated, 0 gone from IPS" in out
    assert "Other Company (48): 3 new, 0 updated, 0 gone from IPS" in out
    assert Job.objects.filter(company=company).count() == 5
    assert Job.objects.filter(company=other_company).count() == 3

    out = _sync_jobs()
    assert "Demo Company (47): 0 new, 5 updated, 0 gone from IPS" in out
    assert Job.objects.count() == 8


def test_sync_jobs_with_handles(company, other_company, ips_emulator):
    out = _sync_jobs("48")
    assert out.strip() == "Other Company (48): 3 new, 0 updated, 0 gone from IPS"
    assert not Job.objects.filter(company=company).exists()
    assert [c["company_handle"] for c in soap_calls(ips_emulator, "getScheduledJobs")] == ["48"]

    out = _sync_jobs("47", "48")
    assert "Demo Company (47): 5 new" in out and "Other Company (48): 0 new, 3 updated" in out


def test_sync_jobs_by_connection(company, other_company, connection):
    _sync_jobs(connection="Emulator")
    assert Job.objects.count() == 8
    with pytest.raises(CommandError, match="No company matches"):
        _sync_jobs(connection="No such connection")


def test_sync_jobs_refuses_unknown_handles(company):
    with pytest.raises(CommandError, match="No company matches"):
        _sync_jobs("999")
    assert not Job.objects.exists()


def test_sync_jobs_fails_when_ips_is_unreachable(company, other_company, unused_url):
    company.connection.service_url = unused_url
    company.connection.save()
    with pytest.raises(CommandError, match="2 of 2 companies could not be synced"):
        _sync_jobs()
    assert not Job.objects.exists()


def test_sync_jobs_fails_when_one_company_fails(company, other_company, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getScheduledJobs", code=30000, reason="Disk full")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 companies could not be synced"):
        call_command("sync_jobs", stdout=out)
    # Companies sync by name: 47 ("Demo Company") takes the fault, 48 is synced all the same.
    assert "Demo Company (47): sync failed" in out.getvalue()
    assert "Other Company (48): 3 new, 0 updated, 0 gone from IPS" in out.getvalue()
    assert not Job.objects.filter(company=company).exists()
    assert Job.objects.filter(company=other_company).count() == 3


# --- The dashboard's Sync button --------------------------------------------------

# actor -> HTTP status. Written out from shared/ips-api.md's getScheduledJobs row
# (IpsCompanyAdmin may list; WebServiceUser and ImagePortalUser may not), not
# derived from jobs/roles.py. A superuser acts as IpsAdmin.
SYNC_TABLE = {
    "IpsAdmin": 200,
    "IpsCompanyAdmin": 200,
    "IpsUser": 200,
    "WebServiceUser": 403,
    "TrialSiteAdmin": 200,
    "TrialSiteUser": 200,
    "ImagePortalAdmin": 200,
    "ImagePortalUser": 403,
    "ImagePortalContrib": 200,
    "ImagePortalContribUser": 200,
    "nomember": 404,
    "othercompany": 404,
    "admin": 200,
    "anonymous": 200,  # htmx: HX-Redirect to the login page
}


def test_the_sync_table_covers_every_actor():
    assert sorted(SYNC_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_sync_role_table(actor, client, login, company, ips_emulator):
    login(actor)
    response = client.post(reverse("jobs:sync", args=[company.pk]), **HTMX)
    status = SYNC_TABLE[actor]
    assert response.status_code == status
    body = response.content.decode()

    if actor == "anonymous":
        assert response["HX-Redirect"].startswith(reverse("login"))
    if status == 200 and actor != "anonymous":
        assert Job.objects.filter(company=company).count() == 5
        assert len(soap_calls(ips_emulator, "getScheduledJobs")) == 1
        assert "Synced from IPS: Demo Company (47): 5 new, 0 updated, 0 gone from IPS" in body
        assert f'id="company-{company.pk}"' in body
        assert "My Test Job" in body
        return
    assert not Job.objects.exists()
    assert soap_calls(ips_emulator, "getScheduledJobs") == []
    if status == 403:
        assert f"Your role {actor} in company 47 cannot list jobs (getScheduledJobs)." in body
    if status == 404:
        assert "Demo Company" not in body


def test_sync_button_reports_a_failure(client, login, company, ips_emulator):
    login("IpsUser")
    ips_emulator.state.inject("soap_fault", operation="getScheduledJobs", code=30000, reason="Disk full")
    response = client.post(reverse("jobs:sync", args=[company.pk]), **HTMX)
    assert response.status_code == 502
    assert "sync failed" in response.content.decode() and "Disk full" in response.content.decode()
    assert not Job.objects.exists()


def test_sync_button_without_htmx_redirects_with_a_message(client, login, company, ips_emulator):
    login("IpsUser")
    response = client.post(reverse("jobs:sync", args=[company.pk]), follow=True)
    assert response.redirect_chain == [(reverse("jobs:list"), 302)]
    assert "Synced from IPS: Demo Company (47): 5 new" in response.content.decode()
    assert Job.objects.count() == 5


def test_sync_refuses_get(client, login, company, ips_emulator):
    login("IpsUser")
    response = client.get(reverse("jobs:sync", args=[company.pk]), **HTMX)
    assert response.status_code == 405
    assert not Job.objects.exists()
    assert soap_calls(ips_emulator, "getScheduledJobs") == []


def test_sync_answers_404_for_unknown_company(client, login, company):
    login("admin")
    assert client.post(reverse("jobs:sync", args=[987654]), **HTMX).status_code == 404
