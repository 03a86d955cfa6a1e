"""Syncs and the watcher run in the background: the jobs page says when each company's jobs were
last read from IPS and shows a failed sync, and the admin shows both, with the watcher's state
(a failing watcher records no run). The syncs are the watcher's own (``look``) against the emulator
over real HTTP, or the Sync button; the dashboard's clock is moved, never waited for."""

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.models import Company, CompanyWatch, Connection

from .conftest import HTMX, look

LIST = reverse("jobs:list")
ITALIAN = {"HTTP_ACCEPT_LANGUAGE": "it-IT,it;q=0.9"}
SYNC_EVERY = dt.timedelta(minutes=15)


def header(body: str, company: Company) -> str:
    """The company section's header on the jobs page."""
    section = re.search(rf'<section class="company card" id="company-{company.pk}">(.*?)</section>', body, re.S)[1]
    return section[: section.index("</header>")]


def synced_time(head: str) -> re.Match:
    return re.search(r'<p class="muted small sync-status"[^>]*><time datetime="([^"]+)" title="([^"]+)">(.*?)</time>',
                     head)


def break_sync(ips_emulator, reason="Sync is broken today"):
    ips_emulator.state.inject("soap_fault", operation="getScheduledJobs", code=30000, reason=reason)


def sync_due(dashboard_clock):
    """Move the dashboard past the company's next sync (Connection.sync_interval)."""
    dashboard_clock.advance(SYNC_EVERY + dt.timedelta(seconds=1))


# --- The jobs page ------------------------------------------------------------------------


def test_each_company_says_when_it_was_last_synced(client, login, users, company, dashboard_clock):
    login("IpsUser")
    assert "never synced" in header(client.get(LIST).content.decode(), company)
    look(company)  # the watcher's first look syncs the company's jobs
    company.refresh_from_db()
    assert company.last_synced_at is not None and not company.sync_error
    head = header(client.get(LIST).content.decode(), company)
    assert synced_time(head)[3] == "synced just now"
    dashboard_clock.advance(3 * 60 + 5)
    head = header(client.get(LIST).content.decode(), company)
    at = synced_time(head)
    assert at[3] == "synced 3\xa0minutes ago"
    # The exact time: machine-readable, and the full date on hover, in the user's zone.
    local = timezone.localtime(company.last_synced_at)
    assert dt.datetime.fromisoformat(at[1]) == company.last_synced_at
    assert at[2] == f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
    italian = header(client.get(LIST, **ITALIAN).content.decode(), company)
    assert synced_time(italian)[3] == "sincronizzata 3\xa0minuti fa"
    client.cookies["tz"] = "Asia/Tokyo"
    tokyo = synced_time(header(client.get(LIST).content.decode(), company))[2]
    assert tokyo == f"{timezone.localtime(company.last_synced_at, dt.timezone(dt.timedelta(hours=9))):%Y-%m-%d %H:%M:%S} JST"


def test_never_synced_in_italian(client, login, users, company):
    login("IpsUser")
    assert "mai sincronizzata" in header(client.get(LIST, **ITALIAN).content.decode(), company)


def test_a_failed_sync_is_shown_until_one_succeeds(client, login, users, company, dashboard_clock, ips_emulator):
    look(company)
    break_sync(ips_emulator)
    sync_due(dashboard_clock)
    look(company)  # the sync fails; the look goes on
    company.refresh_from_db()
    assert "Sync is broken today" in company.sync_error and company.sync_failed_at is not None
    login("IpsUser")
    head = header(client.get(LIST).content.decode(), company)
    failed = timezone.localtime(company.sync_failed_at)
    error = re.search(r'<p class="small flash-error sync-error" id="sync-error-\d+" role="alert">(.*?)</p>', head, re.S)[1]
    assert error == escape(
        f"The last sync failed at {failed:%Y-%m-%d %H:%M:%S} {failed.tzname()}: {company.sync_error}"
    )
    # The last good sync is still said, as old as it is.
    assert synced_time(head)[3] == "synced 15\xa0minutes ago"
    italian = header(client.get(LIST, **ITALIAN).content.decode(), company)
    assert f"L’ultima sincronizzazione è fallita il {failed:%Y-%m-%d %H:%M:%S}" in italian
    assert escape(company.sync_error) in italian  # IPS's words stay as they are
    sync_due(dashboard_clock)
    look(company)
    head = header(client.get(LIST).content.decode(), company)
    assert "sync-error" not in head and synced_time(head)[3] == "synced just now"


def test_the_sync_button_shows_its_outcome_in_the_header(client, login, users, company, ips_emulator):
    login("IpsUser")
    break_sync(ips_emulator, "Nope")
    url = reverse("jobs:sync", args=[company.pk])
    response = client.post(url, HTTP_HX_TARGET=f"company-{company.pk}", **HTMX)
    head = header(response.content.decode(), company)
    assert "The last sync failed at" in head and "Nope" in head and "never synced" in head
    response = client.post(url, HTTP_HX_TARGET=f"company-{company.pk}", **HTMX)
    assert response.status_code == 200
    head = header(response.content.decode(), company)
    assert "sync-error" not in head and synced_time(head)[3] == "synced just now"


@pytest.mark.parametrize("actor, sees", [("IpsUser", True), ("IpsCompanyAdmin", True), ("WebServiceUser", False),
                                         ("ImagePortalUser", False), ("admin", True)])
def test_the_sync_state_is_shown_to_who_may_list_the_jobs(actor, sees, client, login, users, company, ips_emulator,
                                                          dashboard_clock):
    look(company)
    break_sync(ips_emulator, "Hidden detail")
    sync_due(dashboard_clock)
    look(company)
    login(actor)
    head = header(client.get(LIST).content.decode(), company)
    assert ("sync-status" in head) is sees and ("Hidden detail" in head) is sees


# --- The admin ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    return client


def _changelist_rows(body: str) -> dict[str, str]:
    """{company name: its changelist row}."""
    rows = re.findall(r'<tr>(.*?)</tr>', body[body.index('id="result_list"'):], re.S)
    return {re.search(r'<th class="field-name"><a [^>]*>(.*?)</a>', r)[1]: r for r in rows if "field-name" in r}


def test_the_company_list_shows_the_last_sync_and_a_failing_one(admin_client, company, other_company, ips_emulator,
                                                                dashboard_clock):
    look(company)
    look(other_company)
    break_sync(ips_emulator, "Broken for 47")
    sync_due(dashboard_clock)
    look(company)
    url = reverse("admin:jobs_company_changelist")
    body = admin_client.get(url).content.decode()
    assert "Last synced" in body and "Last sync" in body and "Watcher" in body
    rows = _changelist_rows(body)
    assert "Broken for 47" in rows["Demo Company"] and "failed at" in rows["Demo Company"]
    assert '<td class="field-sync_state">ok</td>' in rows["Other Company"]
    assert "sync failing" in body  # the filter
    failing = _changelist_rows(admin_client.get(url, {"sync_failing": "yes"}).content.decode())
    assert list(failing) == ["Demo Company"]
    assert list(_changelist_rows(admin_client.get(url, {"sync_failing": "no"}).content.decode())) == ["Other Company"]


def test_the_admin_shows_a_failing_watcher(admin_client, company, other_company, ips_emulator):
    look(other_company)
    ips_emulator.state.inject("http_500_html", operation="getActiveJobs", times=None)
    result = look(company, ok=False)
    assert result.error
    watch = CompanyWatch.objects.get(pk=company.pk)
    assert watch.last_error == result.error
    url = reverse("admin:jobs_company_changelist")
    body = admin_client.get(url).content.decode()
    rows = _changelist_rows(body)
    assert "failing:" in rows["Demo Company"] and escape(result.error[:60]) in rows["Demo Company"]
    assert "ok (last look" in rows["Other Company"]
    assert list(_changelist_rows(admin_client.get(url, {"watcher_failing": "yes"}).content.decode())) == ["Demo Company"]
    assert list(_changelist_rows(admin_client.get(url, {"watcher_failing": "no"}).content.decode())) == ["Other Company"]
    page = admin_client.get(reverse("admin:jobs_company_change", args=[company.pk])).content.decode()
    assert "Watcher of its runs in IPS" in page and escape(result.error) in page
    assert "Last look at IPS" in page and "Last successful look" in page and "Next look due" in page
    # Read-only: written by the sync and the watcher, never typed in.
    for name in ("last_synced_at", "sync_error", "sync_failed_at"):
        assert f'name="{name}"' not in page


def test_a_company_never_watched_says_so(admin_client, company):
    body = admin_client.get(reverse("admin:jobs_company_changelist")).content.decode()
    assert "not looked yet" in body and "never synced" in body
    assert admin_client.get(reverse("admin:jobs_company_change", args=[company.pk])).status_code == 200
    assert admin_client.get(reverse("admin:jobs_company_add")).status_code == 200


def test_the_connection_admin_shows_and_sets_the_sync_interval(admin_client, connection, ips_emulator):
    body = admin_client.get(reverse("admin:jobs_connection_changelist")).content.decode()
    assert "Sync every" in body and '<td class="field-sync_interval">0:15:00</td>' in body
    url = reverse("admin:jobs_connection_change", args=[connection.pk])
    assert 'name="sync_interval"' in admin_client.get(url).content.decode()
    form = {"name": "Emulator", "region": "custom", "service_url": ips_emulator.service_url, "wsdl_url": "",
            "api_version": "", "username": "service@example.com", "password": ""}
    assert admin_client.post(url, {**form, "sync_interval": "00:05:00"}).status_code == 302
    assert Connection.objects.get().sync_interval == dt.timedelta(minutes=5)
    # Left blank: kept as it is.
    assert admin_client.post(url, form).status_code == 302
    assert Connection.objects.get().sync_interval == dt.timedelta(minutes=5)
    response = admin_client.post(url, {**form, "sync_interval": "00:00:05"})
    assert response.status_code == 200 and "sync_interval" in response.context["adminform"].form.errors
    assert Connection.objects.get().sync_interval == dt.timedelta(minutes=5)
