"""The Django admin: executions are read-only for everyone, connection passwords
are write-only, the actions talk to the emulator over HTTP, changelists search
and filter."""

import datetime as dt

import pytest
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import Company, Connection, Execution, IpsIdentity, Job, Membership

from .conftest import HTMX, press_run
from .html_forms import Listener, form_data


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    return client


@pytest.fixture
def execution(users, job):
    """A real, finished run of "My Test Job" by the IpsUser, through the view."""
    browser = Client()
    browser.force_login(users["IpsUser"])
    response = browser.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 200
    row = Execution.objects.get()
    assert row.outcome == "accepted"
    return row


def _messages(response):
    return [(m.level, str(m)) for m in response.context["messages"]]


# --- Executions: the audit trail --------------------------------------------


def test_superuser_sees_the_execution_changelist(admin_client, execution):
    response = admin_client.get(reverse("admin:jobs_execution_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert "My Test Job" in response.content.decode()


def test_superuser_sees_an_execution(admin_client, execution):
    response = admin_client.get(reverse("admin:jobs_execution_change", args=[execution.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "My Test Job" in body
    assert "ipsuser" in body
    # A view page: nothing to submit.
    assert 'name="_save"' not in body
    assert 'name="_continue"' not in body


def test_it_refuses_to_add_executions(admin_client, execution):
    assert admin_client.get(reverse("admin:jobs_execution_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:jobs_execution_add"),
        {"job_name": "forged", "username": "x", "outcome": "accepted", "request_id": "f"},
    )
    assert response.status_code == 403
    assert Execution.objects.count() == 1


def test_it_refuses_to_delete_executions(admin_client, execution):
    url = reverse("admin:jobs_execution_delete", args=[execution.pk])
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Execution.objects.filter(pk=execution.pk).exists()


def test_it_refuses_to_change_executions(admin_client, execution):
    response = admin_client.post(
        reverse("admin:jobs_execution_change", args=[execution.pk]),
        {"job_name": "rewritten", "username": "someone", "outcome": "refused", "message": "edited"},
    )
    assert response.status_code == 403
    row = Execution.objects.get(pk=execution.pk)
    assert (row.job_name, row.username, row.outcome) == ("My Test Job", "ipsuser", "accepted")
    assert row.message == execution.message


def test_it_does_not_offer_delete_selected(admin_client, execution):
    response = admin_client.get(reverse("admin:jobs_execution_changelist"))
    assert response.status_code == 200
    action_form = response.context["action_form"]
    offered = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "delete_selected" not in offered
    assert 'value="delete_selected"' not in response.content.decode()


def test_the_delete_selected_action_is_refused_when_forced(admin_client, execution):
    response = admin_client.post(
        reverse("admin:jobs_execution_changelist"),
        {"action": "delete_selected", "_selected_action": [execution.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302, 403)
    assert Execution.objects.filter(pk=execution.pk).exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("operation", "stopJob"),
        ("company_handle", "48"),
        ("job_handle", "47|Other|"),
        ("job_name", "Other"),
        ("username", "somebody"),
        ("role", "IpsAdmin"),
        ("requested_at", timezone.now() - dt.timedelta(days=1)),
        ("client_ip", "10.9.8.7"),
        ("user_agent", "forger/1.0"),
        ("request_id", "forged"),
    ],
)
def test_it_refuses_to_change_identity_fields(execution, field, value):
    row = Execution.objects.get(pk=execution.pk)
    setattr(row, field, value)
    with pytest.raises(PermissionError):
        row.save()
    assert getattr(Execution.objects.get(pk=execution.pk), field) == getattr(execution, field)


@pytest.mark.parametrize(
    "field, value",
    [
        ("outcome", "refused"),
        ("message", "rewritten"),
        ("fault_code", 20003),
        ("fault_reason", "made up"),
        ("duration_ms", 987654),
    ],
)
def test_it_refuses_any_change_to_a_finished_row(execution, field, value):
    row = Execution.objects.get(pk=execution.pk)
    setattr(row, field, value)
    with pytest.raises(PermissionError):
        row.save()
    # The instance returned by run_job is as protected as a loaded one.
    setattr(execution, field, value)
    with pytest.raises(PermissionError):
        execution.save()
    assert getattr(Execution.objects.get(pk=execution.pk), field) != value


def test_it_lets_services_finish_a_sending_row(job, users):
    row = Execution.objects.create(
        job=job,
        company=job.company,
        company_handle="47",
        job_handle=job.handle,
        job_name=job.name,
        user=users["IpsUser"],
        username="ipsuser",
        role="IpsUser",
        outcome="sending",
        requested_at=timezone.now(),
        request_id="r1",
    )
    row = Execution.objects.get(pk=row.pk)
    row.outcome = "accepted"
    row.message = "done"
    row.save()
    assert Execution.objects.get(pk=row.pk).outcome == "accepted"
    row.message = "again"
    with pytest.raises(PermissionError):
        row.save()


def test_it_refuses_execution_delete(execution):
    with pytest.raises(PermissionError):
        execution.delete()
    with pytest.raises(PermissionError):
        Execution.objects.get(pk=execution.pk).delete()
    assert Execution.objects.filter(pk=execution.pk).exists()


def test_it_refuses_queryset_delete(execution):
    with pytest.raises(PermissionError):
        Execution.objects.filter(pk=execution.pk).delete()
    with pytest.raises(PermissionError):
        Execution.objects.all().delete()
    assert Execution.objects.filter(pk=execution.pk).exists()


@pytest.mark.parametrize("field, value", [("username", "somebody"), ("job_name", "x"), ("request_id", "y")])
def test_it_refuses_queryset_update_of_identity(execution, field, value):
    with pytest.raises(PermissionError):
        Execution.objects.update(**{field: value})
    with pytest.raises(PermissionError):
        Execution.objects.filter(pk=execution.pk).update(**{field: value})
    assert getattr(Execution.objects.get(pk=execution.pk), field) == getattr(execution, field)


def _snapshot(row):
    return {
        f: getattr(row, f)
        for f in ("job_name", "job_handle", "company_handle", "username", "role", "outcome", "request_id")
    }


def test_deleting_a_job_keeps_its_executions(execution, job):
    before = _snapshot(execution)
    job.delete()
    assert not Job.objects.filter(pk=job.pk).exists()
    row = Execution.objects.get(pk=execution.pk)
    assert row.job is None
    assert row.company is not None and row.user is not None
    assert _snapshot(row) == before
    assert before["job_name"] == "My Test Job" and before["job_handle"] == "47|My Test Job|"


def test_deleting_a_user_keeps_their_executions(job, users):
    user = users["IpsUser"]
    made = press_run(job, user, "t1")
    assert made.outcome == "accepted"
    before = _snapshot(made)
    user.delete()
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    row = Execution.objects.get(pk=made.pk)
    assert row.user is None
    assert row.job == job
    assert _snapshot(row) == before
    assert (before["username"], before["role"], before["request_id"]) == ("ipsuser", "IpsUser", "t1")


def test_deleting_a_user_in_the_admin_keeps_their_executions(admin_client, execution, users):
    user = users["IpsUser"]
    before = _snapshot(execution)
    response = admin_client.post(reverse("admin:auth_user_delete", args=[user.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    row = Execution.objects.get(pk=execution.pk)
    assert row.user is None
    assert _snapshot(row) == before


def test_the_admin_never_deletes_a_job(admin_client, execution, job):
    """A job missing from IPS is marked gone by a sync, never deleted."""
    response = admin_client.post(reverse("admin:jobs_job_delete", args=[job.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert Job.objects.filter(pk=job.pk).exists()
    changelist = admin_client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert "delete_selected" not in changelist
    assert Execution.objects.get(pk=execution.pk).job == job


# --- Connection passwords ---------------------------------------------------


def _connection_form(ips_emulator, **overrides):
    data = {
        "name": "Second emulator",
        "region": "custom",
        "service_url": ips_emulator.service_url,
        "wsdl_url": "",
        "api_version": "",
        "username": "service@example.com",
        "password": "s3cret-Pässword",
    }
    data.update(overrides)
    return data


def test_it_stores_a_new_connection_password_encrypted(admin_client, ips_emulator):
    response = admin_client.post(reverse("admin:jobs_connection_add"), _connection_form(ips_emulator))
    assert response.status_code == 302
    made = Connection.objects.get(name="Second emulator")
    assert made.password_encrypted
    assert made.password_encrypted != "s3cret-Pässword"
    assert "s3cret" not in made.password_encrypted
    assert made.get_password() == "s3cret-Pässword"


def test_the_change_page_never_shows_the_password(admin_client, connection):
    connection.set_password("s3cret-Pässword")
    connection.save()
    response = admin_client.get(reverse("admin:jobs_connection_change", args=[connection.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="password"' in body  # the write-only field is there, empty
    assert "s3cret" not in body
    assert connection.password_encrypted not in body


def _change(admin_client, connection, ips_emulator, password):
    return admin_client.post(
        reverse("admin:jobs_connection_change", args=[connection.pk]),
        _connection_form(ips_emulator, name="Emulator", username="service@example.com", password=password),
    )


def test_a_blank_password_keeps_the_old_one(admin_client, connection, ips_emulator):
    token = connection.password_encrypted
    response = _change(admin_client, connection, ips_emulator, "")
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.password_encrypted == token
    assert connection.get_password() == "demo"


def test_a_new_password_replaces_the_old_one(admin_client, connection, ips_emulator):
    token = connection.password_encrypted
    response = _change(admin_client, connection, ips_emulator, "n3w-password")
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.password_encrypted != token
    assert connection.get_password() == "n3w-password"


def test_a_new_connection_needs_a_password(admin_client, ips_emulator):
    response = admin_client.post(reverse("admin:jobs_connection_add"), _connection_form(ips_emulator, password=""))
    assert response.status_code == 200
    assert not Connection.objects.filter(name="Second emulator").exists()
    assert response.context["adminform"].form.errors["password"] == [
        "A new connection needs the service account's password."
    ]
    assert "A new connection needs the service account&#x27;s password." in response.content.decode()


# --- Admin actions ------------------------------------------------------------


def _act(admin_client, model, action, pks):
    return admin_client.post(
        reverse(f"admin:jobs_{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_test_connections_succeeds_for_an_ips_user(admin_client, connection, ips_emulator):
    response = _act(admin_client, "connection", "test_connections", [connection.pk])
    assert response.status_code == 200
    assert _messages(response) == [(
        messages.SUCCESS,
        "Emulator: login works as service@example.com (IpsUser). IPS lists for it: 47 Demo Company as IpsUser; "
        "48 Café Zürich as IpsUser; 52 Nordlicht & Søn as IpsUser (not added here yet).",
    )]
    operations = [c["operation"] for c in ips_emulator.state.calls]
    assert operations == ["checkLogin", "getUserInfo", "getCompanyMembership"]


def test_test_connections_warns_of_a_company_where_the_account_may_not_run_jobs(
    admin_client, connection, company, other_company, ips_emulator
):
    # IpsUser by default, but only IpsCompanyAdmin in 47 and no member of 48.
    ips_emulator.state.add_user("mixed@example.com", "pw", "IpsUser", {"47": "IpsCompanyAdmin"})
    connection.username = "mixed@example.com"
    connection.set_password("pw")
    connection.save()
    [(level, text)] = _messages(_act(admin_client, "connection", "test_connections", [connection.pk]))
    assert level == messages.ERROR
    assert "IpsCompanyAdmin in company 47, which may not run jobs" in text
    assert "not an active member of company 48" in text


# Service account -> (level, words the message must contain). The design: the
# service account must be IpsUser or IpsAdmin, and testing a connection warns
# when it isn't -- whichever call (checkLogin or getUserInfo) shows it.
CONNECTION_TEST_TABLE = [
    ("service@example.com", "demo", messages.SUCCESS, ["IpsUser"]),
    ("ipsadmin@example.com", "demo", messages.SUCCESS, ["IpsAdmin"]),
    ("webserviceuser@example.com", "demo", messages.ERROR, ["WebServiceUser", "IpsUser", "IpsAdmin"]),
    ("ipscompanyadmin@example.com", "demo", messages.ERROR, ["IpsCompanyAdmin", "IpsUser", "IpsAdmin"]),
    ("imageportaluser@example.com", "demo", messages.ERROR, ["ImagePortalUser", "IpsUser", "IpsAdmin"]),
    ("service@example.com", "Wr0ng-Pw!", messages.ERROR, ["10001", "INVALID_CREDENTIALS"]),
    ("nobody@example.com", "demo", messages.ERROR, ["10002", "INVALID_USER"]),
]


@pytest.mark.parametrize("email, password, level, words", CONNECTION_TEST_TABLE)
def test_test_connections_table(admin_client, connection, email, password, level, words):
    connection.username = email
    connection.set_password(password)
    connection.save()
    response = _act(admin_client, "connection", "test_connections", [connection.pk])
    assert response.status_code == 200
    [(got_level, text)] = _messages(response)
    assert got_level == level, text
    assert text.startswith("Emulator: ")
    for word in words:
        assert word in text, text
    if password != "demo":
        assert password not in text


def test_test_connections_reports_an_unreachable_ips(admin_client, connection, unused_url):
    connection.service_url = unused_url
    connection.save()
    response = _act(admin_client, "connection", "test_connections", [connection.pk])
    [(level, text)] = _messages(response)
    assert level == messages.ERROR
    assert "refused the connection" in text


def test_sync_company_jobs_action_creates_jobs(admin_client, company, other_company, ips_emulator):
    response = _act(admin_client, "company", "sync_company_jobs", [company.pk])
    assert response.status_code == 200
    assert _messages(response) == [(messages.SUCCESS, "Demo Company (47): 5 new, 0 updated, 0 gone from IPS")]
    assert Job.objects.filter(company=company).count() == 5
    assert not Job.objects.filter(company=other_company).exists()
    assert "My Test Job" in Job.objects.filter(company=company).values_list("name", flat=True)


def test_sync_company_jobs_action_reports_a_failure(admin_client, company, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="getScheduledJobs", code=30000, reason="Disk full")
    response = _act(admin_client, "company", "sync_company_jobs", [company.pk])
    [(level, text)] = _messages(response)
    assert level == messages.ERROR
    assert "sync failed" in text and "30000" in text and "Disk full" in text
    assert not Job.objects.exists()


def test_sync_connection_jobs_action_syncs_every_company(admin_client, connection, company, other_company):
    response = _act(admin_client, "connection", "sync_connection_jobs", [connection.pk])
    assert sorted(text for _, text in _messages(response)) == [
        "Demo Company (47): 5 new, 0 updated, 0 gone from IPS",
        "Other Company (48): 3 new, 0 updated, 0 gone from IPS",
    ]
    assert Job.objects.count() == 8


def test_sync_job_companies_action(admin_client, job, ips_emulator):
    ips_emulator.state.jobs["47|My Test Job|"].trigger_state = "Paused"
    response = _act(admin_client, "job", "sync_job_companies", [job.pk])
    assert [text for _, text in _messages(response)] == ["Demo Company (47): 0 new, 5 updated, 0 gone from IPS"]
    job.refresh_from_db()
    assert job.trigger_state == "Paused"



# --- Changelists: search and filters ------------------------------------------

CHANGELISTS = [
    # (admin url name, query, expected number of results)
    ("jobs_connection_changelist", {"q": "Emulator", "region__exact": "custom"}, 1),
    ("jobs_connection_changelist", {"q": "nothing-like-this"}, 0),
    ("jobs_company_changelist", {"q": "47"}, 1),
    ("jobs_company_changelist", {"q": "Company", "connection__id__exact": "{connection}"}, 2),
    ("jobs_membership_changelist", {"q": "ipsuser", "role__exact": "IpsUser"}, 1),
    ("jobs_membership_changelist", {"role__exact": "IpsAdmin"}, 2),
    ("jobs_membership_changelist", {"q": "48"}, 1),
    ("jobs_job_changelist", {"q": "Test", "is_gone__exact": "0"}, 1),
    ("jobs_job_changelist", {"trigger_state__exact": "Paused"}, 1),
    ("jobs_job_changelist", {"company__id__exact": "{company}"}, 5),
    ("auth_user_changelist", {"q": "ipsuser", "is_superuser__exact": "0"}, 1),
    ("auth_user_changelist", {"is_superuser__exact": "1"}, 1),
    ("jobs_execution_changelist", {"q": "My Test", "outcome__exact": "accepted"}, 1),
    ("jobs_execution_changelist", {"outcome__exact": "denied"}, 0),
]


@pytest.mark.parametrize("url_name, query, expected", CHANGELISTS)
def test_changelists_search_and_filter(admin_client, execution, connection, company, url_name, query, expected):
    ids = {"{connection}": str(connection.pk), "{company}": str(company.pk)}
    query = {k: ids.get(v, v) for k, v in query.items()}
    response = admin_client.get(reverse(f"admin:{url_name}"), query)
    assert response.status_code == 200
    assert response.context["cl"].result_count == expected


@pytest.mark.parametrize(
    "url_name",
    ["jobs_connection_changelist", "jobs_company_changelist", "jobs_membership_changelist",
     "jobs_job_changelist", "auth_user_changelist", "jobs_execution_changelist"],
)
def test_changelists_are_for_staff_only(client, users, job, url_name):
    client.force_login(users["IpsAdmin"])
    response = client.get(reverse(f"admin:{url_name}"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_company_and_user_change_pages_load(admin_client, company, users):
    assert admin_client.get(reverse("admin:jobs_company_change", args=[company.pk])).status_code == 200
    response = admin_client.get(reverse("admin:auth_user_change", args=[users["IpsUser"].pk]))
    assert response.status_code == 200
    assert Membership.objects.get(user=users["IpsUser"]).role == "IpsUser"
    assert "IpsUser" in response.content.decode()
    assert Company.objects.count() == 2


# --- Staff holding some permissions only ----------------------------------------


def _staff(username, *perms):
    """A staff user holding exactly ``perms`` ("app.codename"), and a browser logged in as them."""
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    browser = Client()
    browser.force_login(user)
    return user, browser


@pytest.fixture
def listener():
    """A port on 127.0.0.1 where a password must never arrive."""
    made = Listener()
    yield made
    made.close()


def _post_change_form(browser, url, form_id, **changes):
    """The admin's real change form, as the page shows it, with ``changes`` made: the response."""
    page = browser.get(url)
    if page.status_code != 200:
        return page
    data = form_data(page.content.decode(), form_id)
    data.update({k: v for k, v in changes.items() if v is not None})
    for name in [k for k, v in changes.items() if v is None]:
        data.pop(name, None)  # an unticked box
    return browser.post(url, data)


# Actions that change something need the change permission; viewing is not enough.
# (model, action) x (permission held, runs).
CHANGING_ACTIONS = [
    ("connection", "add_companies_from_ips"),
    ("connection", "sync_connection_jobs"),
    ("company", "sync_company_jobs"),
    ("job", "sync_job_companies"),
]


@pytest.mark.parametrize("held, runs", [("view", False), ("change", True)])
@pytest.mark.parametrize("model, action", CHANGING_ACTIONS)
def test_actions_that_change_need_the_change_permission(model, action, held, runs, job, connection, company,
                                                          ips_emulator):
    # Add companies also creates companies: it needs their add permission too (tested below).
    extra = ["jobs.add_company"] if action == "add_companies_from_ips" else []
    _, browser = _staff("operator", f"jobs.{held}_{model}", *extra)
    url = reverse(f"admin:jobs_{model}_changelist")
    page = browser.get(url)
    assert page.status_code == 200
    assert (f'value="{action}"' in page.content.decode()) is runs
    pk = {"connection": connection.pk, "company": company.pk, "job": job.pk}[model]
    calls, companies = len(ips_emulator.state.calls), Company.objects.count()
    browser.post(url, {"action": action, "_selected_action": [str(pk)]}, follow=True)
    assert (len(ips_emulator.state.calls) > calls) is runs
    if not runs:
        assert Company.objects.count() == companies


# --- The connection's URLs and its password: one secret ------------------------------------


@pytest.mark.parametrize("field", ["service_url", "wsdl_url"])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.1:8081\\@127.0.0.1/scene7/services/IpsApiService",  # requests goes to 127.1:8081
        "http://127.1:8081%5C@127.0.0.1/scene7/services/IpsApiService",
        "https://service%40example.com:demo@ips.example.com/scene7/services/IpsApiService",
        "https://ips.example.com@evil.example/scene7/services/IpsApiService",
        "http://ips.example.com/scene7/services/IpsApiService",  # plain HTTP beyond this machine
        "http://10.0.0.5:8080/scene7/services/IpsApiService",
        "ftp://ips.example.com/scene7/services/IpsApiService",
        "file:///etc/passwd",
    ],
)
def test_the_connection_form_refuses_urls_a_password_must_not_go_to(url, field, admin_client, ips_emulator):
    response = admin_client.post(reverse("admin:jobs_connection_add"), _connection_form(ips_emulator, **{field: url}))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors, response.context["adminform"].form.errors
    assert not Connection.objects.filter(name="Second emulator").exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://s7sps1apissl.scene7.com/scene7/services/IpsApiService",
        "http://127.0.0.1:8081/scene7/services/IpsApiService",
        "http://localhost:8081/scene7/services/IpsApiService",
        "http://[::1]:8081/scene7/services/IpsApiService",
    ],
)
def test_the_connection_form_takes_https_and_the_local_emulator(url, admin_client, ips_emulator):
    response = admin_client.post(reverse("admin:jobs_connection_add"), _connection_form(ips_emulator, service_url=url))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Connection.objects.get(name="Second emulator").service_url == url


# What moves the stored password elsewhere: each needs the password typed again.
SECRET_MOVES = {
    "service URL": {"service_url": "http://127.0.0.1:{port}/scene7/services/IpsApiService"},
    "region": {"region": "na", "service_url": ""},
    "WSDL URL": {"wsdl_url": "http://127.0.0.1:{port}/scene7/webservice/IpsApi.wsdl"},
}


@pytest.mark.parametrize("move", list(SECRET_MOVES))
def test_moving_a_connection_elsewhere_needs_its_password_again(move, connection, ips_emulator, listener):
    _, browser = _staff("connections", "jobs.view_connection", "jobs.change_connection")
    changes = {k: v.format(port=listener.port) for k, v in SECRET_MOVES[move].items()}
    url = reverse("admin:jobs_connection_change", args=[connection.pk])
    before = Connection.objects.values().get(pk=connection.pk)
    response = _post_change_form(browser, url, "connection_form", password="", **changes)
    assert response.status_code == 200
    assert "enter the service account's password again" in " ".join(
        response.context["adminform"].form.errors["password"])
    assert Connection.objects.values().get(pk=connection.pk) == before
    # Test connection still calls the stored address; nothing reached the new one.
    _act(browser, "connection", "test_connections", [connection.pk])
    assert [c["operation"] for c in ips_emulator.state.calls][:1] == ["checkLogin"]
    assert listener.received == []
    # With the password typed again, the move is saved (and it is that password that goes there).
    response = _post_change_form(browser, url, "connection_form", password="typed-again", **changes)
    assert response.status_code == 302, response.context["adminform"].form.errors
    connection.refresh_from_db()
    assert connection.get_password() == "typed-again"
    assert listener.received == []


def test_other_changes_keep_the_stored_password(connection, ips_emulator):
    _, browser = _staff("connections", "jobs.view_connection", "jobs.change_connection")
    url = reverse("admin:jobs_connection_change", args=[connection.pk])
    same_host = connection.service_url.replace("/IpsApiService", "/IpsApiService/")
    response = _post_change_form(browser, url, "connection_form", password="", name="Renamed", service_url=same_host,
                                 ips_sign_in="on")
    assert response.status_code == 302, response.context["adminform"].form.errors
    connection.refresh_from_db()
    assert (connection.name, connection.get_password()) == ("Renamed", "demo")


# --- Users: privileges only superusers give, never to themselves --------------------------------


@pytest.fixture
def operators(db):
    group = Group.objects.create(name="Operators")
    group.permissions.add(Permission.objects.get(codename="grant_ips_roles"))
    return group


def _privilege(field, operators):
    """The form value that grants ``field``."""
    return {
        "is_superuser": "on",
        "is_staff": "on",
        "groups": [str(operators.pk)],
        "user_permissions": [str(Permission.objects.get(codename="grant_ips_roles").pk)],
    }[field]


def _holds(user, field) -> bool:
    """Does ``user`` hold what _privilege grants?"""
    user = get_user_model().objects.get(pk=user.pk)
    if field == "groups":
        return user.groups.filter(name="Operators").exists()
    if field == "user_permissions":
        return user.user_permissions.filter(codename="grant_ips_roles").exists()
    return getattr(user, field)


# (actor, whose account) -> may grant. The actor holds only the user permissions, or is a superuser.
PRIVILEGE_TABLE = [
    ("user admin", "own", False),
    ("user admin", "another's", False),
    ("superuser", "another's", True),
]


@pytest.mark.parametrize("field", ["is_superuser", "is_staff", "groups", "user_permissions"])
@pytest.mark.parametrize("actor, whose, grants", PRIVILEGE_TABLE)
def test_only_superusers_give_privileges_and_never_to_themselves(actor, whose, grants, field, users, operators,
                                                                 caplog):
    if actor == "superuser":
        me, browser = users["admin"], Client()
        browser.force_login(me)
    else:
        me, browser = _staff("useradmin", "auth.view_user", "auth.add_user", "auth.change_user")
    target = me if whose == "own" else users["IpsUser"]
    held = _holds(target, field)
    url = reverse("admin:auth_user_change", args=[target.pk])
    response = _post_change_form(browser, url, "user_form", first_name="Renamed",
                                 **{field: _privilege(field, operators)})
    assert response.status_code == 302, response.content.decode()[:1000]
    assert get_user_model().objects.get(pk=target.pk).first_name == "Renamed"  # the rest of the form is saved
    assert _holds(target, field) is (grants or held)
    changed = [r for r in caplog.records if r.name == "jobs.admin" and "privileges" in r.getMessage()]
    if grants:
        [record] = changed
        assert f"admin changed the privileges of {target.username}" in record.getMessage()
        assert field in record.getMessage()
    else:
        assert changed == []


def test_a_superuser_cannot_drop_their_own_privileges(users):
    me = users["admin"]
    browser = Client()
    browser.force_login(me)
    url = reverse("admin:auth_user_change", args=[me.pk])
    response = _post_change_form(browser, url, "user_form", is_superuser=None, is_staff=None)
    assert response.status_code == 302
    me.refresh_from_db()
    assert me.is_superuser and me.is_staff


def test_who_only_administers_users_cannot_touch_a_privileged_account(users):
    _, browser = _staff("useradmin", "auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user")
    superuser = users["admin"]
    colleague, _ = _staff("colleague")
    for target in (superuser, colleague):
        url = reverse("admin:auth_user_change", args=[target.pk])
        page = browser.get(url)
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()  # shown, not changeable
        assert browser.post(url, {"username": target.username, "is_active": ""}).status_code == 403
        password_url = reverse("admin:auth_user_password_change", args=[target.pk])
        assert browser.post(password_url, {"password1": "Taken-0ver!", "password2": "Taken-0ver!"}).status_code == 403
        assert browser.post(reverse("admin:auth_user_delete", args=[target.pk]), {"post": "yes"}).status_code == 403
    superuser.refresh_from_db()
    assert superuser.is_active and superuser.check_password("pw")
    # Accounts without privileges (nor memberships, nor IPS sign-in) stay theirs to administer.
    ordinary = users["nomember"]
    password_url = reverse("admin:auth_user_password_change", args=[ordinary.pk])
    response = browser.post(password_url, {"password1": "N3w-Passw0rd!", "password2": "N3w-Passw0rd!",
                                           "usable_password": "true"})
    assert response.status_code == 302
    ordinary.refresh_from_db()
    assert ordinary.check_password("N3w-Passw0rd!")


def test_groups_are_changed_by_superusers_only(operators):
    _, browser = _staff("groupadmin", "auth.view_group", "auth.change_group", "auth.add_group")
    url = reverse("admin:auth_group_change", args=[operators.pk])
    everything = [str(p.pk) for p in Permission.objects.all()]
    assert browser.post(url, {"name": "Operators", "permissions": everything}).status_code == 403
    assert browser.post(reverse("admin:auth_group_add"), {"name": "Mine", "permissions": everything}).status_code == 403
    assert operators.permissions.count() == 1 and not Group.objects.filter(name="Mine").exists()


# --- Accounts that sign in with IPS, or carry memberships: their passwords -----------------------


@pytest.mark.parametrize("target", ["ips identity", "memberships"])
def test_who_only_administers_users_cannot_set_the_password_of_an_ips_or_member_account(target, users, connection):
    """The takeover: set a password on an account with IpsAdmin memberships, then log in as it."""
    victim = users["IpsAdmin"]
    if target == "ips identity":
        IpsIdentity.objects.create(user=victim, connection=connection, email="ipsadmin@example.com",
                                   read_at=timezone.now())
    _, browser = _staff("useradmin", "auth.view_user", "auth.change_user")
    password_url = reverse("admin:auth_user_password_change", args=[victim.pk])
    assert browser.get(password_url).status_code == 403
    response = browser.post(password_url, {"password1": "Taken-0ver!", "password2": "Taken-0ver!",
                                           "usable_password": "true"})
    assert response.status_code == 403
    victim.refresh_from_db()
    assert not victim.check_password("Taken-0ver!")
    assert Client().post(reverse("login"), {"username": victim.username, "password": "Taken-0ver!"}).status_code == 200


def test_who_may_grant_roles_sets_the_password_of_a_member_but_not_of_an_ips_account(users, connection):
    _, browser = _staff("useradmin", "auth.view_user", "auth.change_user", "jobs.grant_ips_roles")
    member, signed_in = users["IpsAdmin"], users["IpsUser"]
    IpsIdentity.objects.create(user=signed_in, connection=connection, email="ipsuser@example.com",
                               read_at=timezone.now())
    form = {"password1": "N3w-Passw0rd!", "password2": "N3w-Passw0rd!", "usable_password": "true"}
    assert browser.post(reverse("admin:auth_user_password_change", args=[member.pk]), form).status_code == 302
    assert browser.post(reverse("admin:auth_user_password_change", args=[signed_in.pk]), form).status_code == 403


def test_an_account_that_signs_in_with_ips_never_logs_in_with_a_local_password(users, connection):
    """Even a password a superuser set: IPS says who such an account is, not a password kept here."""
    boss = Client()
    boss.force_login(users["admin"])
    victim = users["IpsAdmin"]
    IpsIdentity.objects.create(user=victim, connection=connection, email="ipsadmin@example.com",
                                   read_at=timezone.now())
    response = boss.post(reverse("admin:auth_user_password_change", args=[victim.pk]),
                         {"password1": "Set-by-b0ss!", "password2": "Set-by-b0ss!", "usable_password": "true"})
    assert response.status_code == 302
    victim.refresh_from_db()
    assert victim.check_password("Set-by-b0ss!")
    assert Client().post(reverse("login"), {"username": victim.username, "password": "Set-by-b0ss!"}).status_code == 200
    # A local account still logs in with its own.
    assert Client().post(reverse("login"), {"username": "ipsuser", "password": "pw"}).status_code == 302


# --- Sign-in connections: where everyone's password goes is a superuser's to choose ---------------


@pytest.mark.parametrize("change", ["tick ips_sign_in", "untick ips_sign_in", "service URL", "region", "WSDL URL"])
def test_only_superusers_choose_where_sign_in_passwords_go(change, connection, ips_emulator, listener):
    _, browser = _staff("connections", "jobs.view_connection", "jobs.change_connection")
    if change != "tick ips_sign_in":
        Connection.objects.filter(pk=connection.pk).update(ips_sign_in=True)
    elsewhere = f"https://127.0.0.1:{listener.port}/scene7/services/IpsApiService"
    changes = {
        "tick ips_sign_in": {"ips_sign_in": "on"},
        "untick ips_sign_in": {"ips_sign_in": None},
        "service URL": {"service_url": elsewhere},
        "region": {"region": "na", "service_url": ""},
        "WSDL URL": {"wsdl_url": f"https://127.0.0.1:{listener.port}/scene7/webservice/IpsApi.wsdl"},
    }[change]
    before = Connection.objects.values().get(pk=connection.pk)
    url = reverse("admin:jobs_connection_change", args=[connection.pk])
    _post_change_form(browser, url, "connection_form", password="typed-again", **changes)
    after = Connection.objects.values().get(pk=connection.pk)
    for field in ("ips_sign_in", "region", "service_url", "wsdl_url"):
        assert after[field] == before[field], field


def test_only_superusers_add_a_sign_in_connection(ips_emulator, users):
    _, browser = _staff("connections", "jobs.view_connection", "jobs.add_connection", "jobs.change_connection")
    form = {**_connection_form(ips_emulator, name="Mine"), "ips_sign_in": "on"}
    browser.post(reverse("admin:jobs_connection_add"), form)
    assert not Connection.objects.filter(ips_sign_in=True).exists()
    boss = Client()
    boss.force_login(users["admin"])
    response = boss.post(reverse("admin:jobs_connection_add"), {**form, "name": "Real"})
    assert response.status_code == 302
    assert Connection.objects.get(name="Real").ips_sign_in


# --- Add companies creates companies: it needs the permission to add one -------------------------


@pytest.mark.parametrize("perms, runs", [
    (["jobs.change_connection"], False),
    (["jobs.view_connection", "jobs.add_company"], False),
    (["jobs.change_connection", "jobs.add_company"], True),
])
def test_add_companies_needs_the_add_company_permission(perms, runs, connection, ips_emulator):
    _, browser = _staff("operator", *perms)
    url = reverse("admin:jobs_connection_changelist")
    assert ('value="add_companies_from_ips"' in browser.get(url).content.decode()) is runs
    calls = len(ips_emulator.state.calls)
    browser.post(url, {"action": "add_companies_from_ips", "_selected_action": [str(connection.pk)]}, follow=True)
    assert (len(ips_emulator.state.calls) > calls) is runs
