"""Sign in with IPS: people log in with their IPS email and password, and their
companies and user types come from IPS (the emulator over HTTP), in both API
versions; changes are recorded; a role read too long ago no longer acts."""

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import events, roles
from jobs.services import chores, people
from jobs.models import Company, Connection, Execution, IpsIdentity, Membership, MembershipChange

from .conftest import HTMX, executes
from .html_forms import Listener

PASSWORD = "demo"


@pytest.fixture
def sign_in_connection(connection, company, other_company, synced):
    connection.ips_sign_in = True
    connection.save()
    return connection


def _login(client, email, password=PASSWORD):
    return client.post(reverse("login"), {"username": email, "password": password})


@pytest.mark.parametrize("api_version", ["", "2014-04-03"], ids=["unversioned", "2014-04-03"])
def test_a_person_without_an_account_signs_in_and_gets_what_ips_gives(api_version, sign_in_connection, client):
    sign_in_connection.api_version = api_version
    sign_in_connection.save()
    response = _login(client, "ipsuser@example.com")
    assert response.status_code == 302, response.content.decode()[:500]
    user = get_user_model().objects.get(username="ipsuser@example.com")
    assert not user.has_usable_password()  # the IPS password is never stored
    identity = IpsIdentity.objects.get(user=user)
    assert (identity.email, identity.default_role) == ("ipsuser@example.com", "IpsUser")
    # In 47 as IpsUser; the inactive membership in 48 gives nothing.
    assert {(m.company.handle, m.role, m.from_ips) for m in user.memberships.all()} == {("47", "IpsUser", True)}
    [change] = MembershipChange.objects.filter(username="ipsuser@example.com")
    assert (change.company_handle, change.role_before, change.role_after, change.source) == (
        "47", "", "IpsUser", "ips_sign_in")
    page = client.get(reverse("jobs:list")).content.decode()
    assert "Demo Company" in page and "from IPS" in page
    assert "Other Company" not in page


def test_the_password_is_kept_nowhere(sign_in_connection, client, caplog):
    _login(client, "ipsuser@example.com", PASSWORD)
    user = get_user_model().objects.get(username="ipsuser@example.com")
    assert PASSWORD not in (user.password or "")
    identity = IpsIdentity.objects.get(user=user)
    assert all(PASSWORD != str(getattr(identity, f.attname)) for f in IpsIdentity._meta.concrete_fields)
    assert "demo" not in caplog.text.replace("demo@", "")


def test_a_role_changed_in_ips_changes_what_the_person_may_do_at_next_sign_in(
    sign_in_connection, client, ips_emulator, job
):
    assert _login(client, "ipsuser@example.com").status_code == 302
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 200
    ips_emulator.state.change_user("ipsuser@example.com", memberships={"47": "IpsCompanyAdmin"})
    again = Client()
    assert _login(again, "ipsuser@example.com").status_code == 302
    response = again.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 403
    assert "Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)." in response.content.decode()
    change = MembershipChange.objects.filter(username="ipsuser@example.com").first()
    assert (change.role_before, change.role_after, change.source) == ("IpsUser", "IpsCompanyAdmin", "ips_sign_in")
    # The first session reads the role afresh at its next request too.
    assert client.post(reverse("jobs:run", args=[job.pk]), **HTMX).status_code == 403


def test_the_refresh_reads_everyone_again_through_an_ipsadmin_service_account(
    sign_in_connection, client, ips_emulator
):
    assert _login(client, "trialsiteuser@example.com").status_code == 302
    ips_emulator.state.change_user("service@example.com", default_role="IpsAdmin")
    ips_emulator.state.change_user("trialsiteuser@example.com", memberships={"47": ["TrialSiteUser", False]})
    assert people.refresh_ips_memberships(sign_in_connection) == (1, "")
    user = get_user_model().objects.get(username="trialsiteuser@example.com")
    assert not user.memberships.exists()  # deactivated in IPS: no rights here
    change = MembershipChange.objects.first()
    assert (change.role_before, change.role_after, change.source) == ("TrialSiteUser", "", "ips_refresh")
    out = io.StringIO()
    call_command("refresh_ips_memberships", stdout=out)
    assert "1 person refreshed from IPS" in out.getvalue()


def test_without_an_ipsadmin_service_account_the_refresh_says_why(sign_in_connection, client):
    _login(client, "ipsuser@example.com")
    count, why = people.refresh_ips_memberships(sign_in_connection)
    assert count == 0 and "not an IpsAdmin" in why


def test_a_role_read_too_long_ago_no_longer_runs_jobs(sign_in_connection, client, job, settings):
    assert _login(client, "ipsuser@example.com").status_code == 302
    Membership.objects.filter(user__username="ipsuser@example.com").update(
        read_at=timezone.now() - settings.IPS_MEMBERSHIP_MAX_AGE - dt.timedelta(minutes=1)
    )
    response = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    assert response.status_code == 403
    assert "was last read from IPS" in response.content.decode() and "sign in again" in response.content.decode()
    assert client.get(reverse("jobs:list")).status_code == 200  # still reads
    assert "out of date" in client.get(reverse("jobs:list")).content.decode()


def test_each_run_records_whether_ips_said_so_lately(sign_in_connection, client, job):
    _login(client, "ipsuser@example.com")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    row = Execution.objects.get()
    assert row.role_from_ips and row.role_read_at is not None
    assert timezone.now() - row.role_read_at < dt.timedelta(minutes=1)


def test_a_wrong_password_is_refused_and_throttled(sign_in_connection, db):
    browser = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(4):
        response = _login(browser, "ipsuser@example.com", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct" in response.content.decode()
    assert _login(browser, "ipsuser@example.com", "wrong").status_code == 429
    assert _login(browser, "ipsuser@example.com", PASSWORD).status_code == 429  # even the right one, for a while
    assert not get_user_model().objects.filter(username="ipsuser@example.com").exists()


def test_an_expired_ips_password_is_refused_with_a_clear_message(sign_in_connection, client, ips_emulator):
    ips_emulator.state.change_user("ipsuser@example.com", password_expires=dt.datetime(2020, 1, 31, tzinfo=dt.UTC))
    response = _login(client, "ipsuser@example.com")
    assert response.status_code == 200
    assert "Your IPS password expired on 2020-01-31: change it in IPS, then sign in again." in response.content.decode()


def test_a_password_goes_only_over_https(sign_in_connection, client, ips_emulator):
    Connection.objects.filter(pk=sign_in_connection.pk).update(service_url="http://ips.example.com/scene7/services/IpsApiService")
    response = _login(client, "ipsuser@example.com")
    assert "needs an HTTPS connection" in response.content.decode()
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]


def test_ips_unreachable_says_so(sign_in_connection, client, unused_url):
    Connection.objects.filter(pk=sign_in_connection.pk).update(service_url=unused_url)
    response = _login(client, "ipsuser@example.com")
    assert "IPS could not check your password just now" in response.content.decode()
    assert unused_url not in response.content.decode()


def test_a_local_account_of_the_same_name_is_not_taken_over(sign_in_connection, client, ips_emulator):
    get_user_model().objects.create_superuser("ipsuser@example.com", password="local-secret")
    response = _login(client, "ipsuser@example.com", PASSWORD)
    assert response.status_code == 200 and "Please enter a correct" in response.content.decode()
    assert _login(Client(), "ipsuser@example.com", "local-secret").status_code == 302  # break-glass works
    # Neither password of a local account ever goes to IPS.
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]


def test_the_same_email_on_another_ips_is_another_person(sign_in_connection, client, ips_emulator):
    assert _login(client, "ipsuser@example.com").status_code == 302
    other = Connection(name="Staging", service_url=ips_emulator.service_url, username="service@example.com",
                       ips_sign_in=True)
    other.set_password("demo")
    other.save()
    Connection.objects.filter(pk=sign_in_connection.pk).update(ips_sign_in=False)
    response = _login(Client(), "ipsuser@example.com")
    assert "signs in with IPS through “Emulator”, not “Staging”" in response.content.decode()


def test_a_plain_http_connection_refuses_for_itself_only(sign_in_connection, client, ips_emulator):
    # Asked first (the lowest key): it refuses, and the next connection signs the person in.
    plain = Connection(pk=-1, name="Plain", service_url="http://ips.example.com/scene7/services/IpsApiService",
                       username="service@example.com", ips_sign_in=True)
    plain.set_password("demo")
    plain.save(force_insert=True)
    assert Connection.objects.filter(ips_sign_in=True).order_by("pk").first() == plain
    assert _login(client, "ipsuser@example.com").status_code == 302


def test_a_role_typed_in_the_admin_is_manual(sign_in_connection, client, users, company):
    _login(client, "ipsuser@example.com")
    person = get_user_model().objects.get(username="ipsuser@example.com")
    people.change_membership(users["admin"], person, company, "TrialSiteUser", MembershipChange.Source.ADMIN)
    membership = Membership.objects.get(user=person, company=company)
    assert (membership.role, membership.from_ips, membership.read_at) == ("TrialSiteUser", False, None)


def test_local_accounts_keep_working(sign_in_connection, users, client):
    users["IpsUser"].set_password("pw")
    users["IpsUser"].save()
    assert _login(client, "ipsuser", "pw").status_code == 302


def test_sign_in_is_off_unless_the_connection_says_so(connection, synced, client):
    response = _login(client, "ipsuser@example.com")
    assert response.status_code == 200 and "Please enter a correct" in response.content.decode()


# The executeJob role table, with memberships read from IPS instead of typed in.
@pytest.mark.parametrize("user_type", [t.value for t in roles.UserType])
def test_run_follows_the_execute_job_table_with_roles_from_ips(user_type, sign_in_connection, job, ips_emulator):
    browser = Client()
    assert _login(browser, f"{user_type.lower()}@example.com").status_code == 302
    user = get_user_model().objects.get(username=f"{user_type.lower()}@example.com")
    response = browser.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    ran = len(executes(ips_emulator)) == 1
    if user_type == "WebServiceUser":
        # IPS lets a WebServiceUser read not even its own companies: no role here at all.
        assert not user.memberships.exists() and response.status_code == 404 and not ran
    else:
        assert user.memberships.get(company=job.company).from_ips
        assert ran is roles.is_authorized(user_type, "executeJob"), response.content[:300]
        assert response.status_code == (200 if ran else 403)
    row = Execution.objects.get()
    assert row.outcome == ("accepted" if ran else "denied")


def test_test_connection_lists_the_service_accounts_companies_and_adds_them(admin_client, connection, company):
    response = admin_client.post(
        reverse("admin:jobs_connection_changelist"),
        {"action": "test_connections", "_selected_action": [connection.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "IPS lists for it: 47 Demo Company as IpsUser;" in text
    assert "48 Café Zürich as IpsUser (not added here yet)" in text
    admin_client.post(
        reverse("admin:jobs_connection_changelist"),
        {"action": "add_companies_from_ips", "_selected_action": [connection.pk]},
    )
    assert set(Company.objects.values_list("handle", "name")) >= {("48", "Café Zürich"), ("52", "Nordlicht & Søn")}


def test_the_refresh_chore_runs_one_chain(sign_in_connection, django_capture_on_commit_callbacks, monkeypatch):
    calls = []
    monkeypatch.setitem(events.SCHEDULERS, events.CHORE, lambda *a, when: calls.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    [(_, first)] = calls
    with django_capture_on_commit_callbacks(execute=True):
        chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    second = calls[-1][1]
    with django_capture_on_commit_callbacks(execute=True):
        assert chores.refresh_memberships_chore(first) == "stale"
        assert "not an IpsAdmin" in chores.refresh_memberships_chore(second)
    assert len(calls) == 3  # the replaced chain stopped; the live one scheduled its next run


def test_the_demo_connection_signs_in_with_ips(db, settings, ips_emulator, client):
    settings.DEBUG = True
    call_command("load_demo", service_url=ips_emulator.service_url, stdout=io.StringIO())
    assert Connection.objects.get(name="Local IPS emulator").ips_sign_in
    assert _login(client, "imageportalcontrib@example.com").status_code == 302
    changes = MembershipChange.objects.filter(source="demo")
    assert changes.count() == 10  # load_demo's own local users, recorded too


@pytest.mark.parametrize(
    "actor, sees",
    [("IpsUser", True), ("ImagePortalUser", True), ("WebServiceUser", False), ("nomember", False),
     ("othercompany", False), ("admin", True)],
)
def test_membership_changes_show_in_the_history_audit_view(actor, sees, sign_in_connection, client, login, users):
    _login(Client(), "trialsiteadmin@example.com")  # recorded: "" -> TrialSiteAdmin in 47
    login(actor)
    body = client.get(reverse("jobs:membership_history")).content.decode()
    assert ("trialsiteadmin@example.com" in body) is sees
    if actor == "WebServiceUser":
        assert "cannot see job history (getJobLogs)" in body


# Each URL looks local to Python's urlsplit; requests connects to 127.1 (127.0.0.1 to the
# resolver, but no name of this machine the dashboard trusts), where a real socket listens.
DECEPTIVE_URLS = [
    "http://127.1:{port}\\@127.0.0.1/scene7/services/IpsApiService",
    "http://127.1:{port}\\@localhost/scene7/services/IpsApiService",
    "http://127.1:{port}/scene7/services/IpsApiService",
]


@pytest.mark.parametrize("template", DECEPTIVE_URLS)
def test_no_password_goes_in_clear_where_the_url_only_seems_local(template, sign_in_connection, users, settings):
    settings.IPS_READ_TIMEOUT = 1.0  # before the fix, the call waits on the silent socket this long
    listener = Listener()
    try:
        Connection.objects.filter(pk=sign_in_connection.pk).update(service_url=template.format(port=listener.port))
        response = _login(Client(), "ipsuser@example.com")
        assert [b"demo" in r for r in listener.received] == []  # the socket got nothing, the password least of all
        assert "needs an HTTPS connection" in response.content.decode()
        # Nor the service account's, through Test connection.
        admin = Client()
        admin.force_login(users["admin"])
        response = admin.post(reverse("admin:jobs_connection_changelist"),
                              {"action": "test_connections", "_selected_action": [sign_in_connection.pk]}, follow=True)
        assert listener.received == []
        assert "the service URL is refused" in response.content.decode()
    finally:
        listener.close()


@pytest.fixture
def hashes(monkeypatch):
    """Every password hashed, checked or as a decoy: what a sign-in spends on local passwords."""
    from django.contrib.auth import hashers

    made = []
    hasher = type(hashers.get_hasher("default"))
    real = hasher.encode

    def counting(self, password, *args, **kwargs):
        made.append(password)
        return real(self, password, *args, **kwargs)

    monkeypatch.setattr(hasher, "encode", counting)
    return made


def test_an_ips_sign_in_hashes_no_local_password(sign_in_connection, client, hashes):
    """IPS is asked first: a person of IPS (new, or known here) pays no local hash before it."""
    assert _login(client, "ipsuser@example.com").status_code == 302
    client.logout()
    assert _login(client, "ipsuser@example.com").status_code == 302  # an IPS identity now
    assert _login(Client(), "ipsuser@example.com", "wrong").status_code == 200
    assert hashes == []


@pytest.mark.parametrize("name", ["nobody", "admin", "admin@example.com"])
def test_a_local_name_pays_the_same_one_hash_found_or_not(sign_in_connection, client, hashes, name, ips_emulator):
    """Names IPS never sees (no "@", or a local account's) are checked here, one hash each, whether
    the account exists or not: the order of the backends tells no attacker more than before."""
    User = get_user_model()
    if name != "nobody":
        User.objects.create_user(name, password="local-pw")
    hashes.clear()
    assert _login(client, name, "wrong").status_code == 200
    assert len(hashes) == 1
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "checkLogin"]  # its password stays here


def test_without_a_connection_signing_in_with_ips_an_email_is_a_local_name(connection, client, hashes):
    assert _login(client, "ipsuser@example.com").status_code == 200
    assert len(hashes) == 1  # hashed like any unknown local name
