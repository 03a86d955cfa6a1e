"""Management commands: load_demo (against the emulator), the demo-password
guard, reconcile_executions and prune_executions."""

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs import demo
from jobs.models import Company, Connection, Execution, Job, Membership

from .conftest import free_port, make_execution, soap_calls

User = get_user_model()

# The ten IPS user types: dashboard username -> IPS user type in company 47.
DEMO_USERS = {
    "ipsadmin": "IpsAdmin",
    "ipscompanyadmin": "IpsCompanyAdmin",
    "ipsuser": "IpsUser",
    "webserviceuser": "WebServiceUser",
    "trialsiteadmin": "TrialSiteAdmin",
    "trialsiteuser": "TrialSiteUser",
    "imageportaladmin": "ImagePortalAdmin",
    "imageportaluser": "ImagePortalUser",
    "imageportalcontrib": "ImagePortalContrib",
    "imageportalcontribuser": "ImagePortalContribUser",
}


def _load_demo(ips_emulator, **kwargs):
    out = io.StringIO()
    call_command("load_demo", service_url=ips_emulator.service_url, stdout=out, **kwargs)
    return out.getvalue()


def _counts():
    return {
        "connections": Connection.objects.count(),
        "companies": Company.objects.count(),
        "users": User.objects.count(),
        "memberships": Membership.objects.count(),
        "jobs": Job.objects.count(),
    }


@pytest.fixture
def debug(settings):
    settings.DEBUG = True
    return settings


# --- load_demo ----------------------------------------------------------------


def test_load_demo_creates_the_connection(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    connection = Connection.objects.get()
    assert connection.region == Connection.Region.CUSTOM
    assert connection.service_url == ips_emulator.service_url
    assert connection.username == "service@example.com"
    assert connection.get_password() == "demo"
    assert connection.password_encrypted != "demo"


def test_load_demo_creates_the_service_accounts_companies(db, debug, ips_emulator):
    out = _load_demo(ips_emulator)
    # service@example.com is a member of 47, 48 and 52 in demo.toml.
    assert sorted(Company.objects.values_list("handle", "name")) == [
        ("47", "Demo Company"),
        ("48", "Café Zürich"),
        ("52", "Nordlicht & Søn"),
    ]
    assert "Demo data: 3 companies, 11 users." in out


@pytest.mark.parametrize("username, role", list(DEMO_USERS.items()))
def test_load_demo_creates_one_user_per_ips_user_type(db, debug, ips_emulator, username, role):
    _load_demo(ips_emulator)
    user = User.objects.get(username=username)
    assert user.check_password("demo")
    assert user.is_active and not user.is_staff and not user.is_superuser
    [membership] = Membership.objects.filter(user=user)
    assert (membership.company.handle, membership.role) == ("47", role)


def test_load_demo_creates_the_superuser(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert admin.check_password("demo")
    assert sorted(User.objects.values_list("username", flat=True)) == sorted([*DEMO_USERS, "admin"])


def test_load_demo_syncs_the_jobs(db, debug, ips_emulator):
    out = _load_demo(ips_emulator)
    assert Job.objects.filter(company__handle="47", name="My Test Job", handle="47|My Test Job|").exists()
    assert Job.objects.filter(company__handle="47").count() == 5
    assert Job.objects.filter(company__handle="48").count() == 3
    assert Job.objects.filter(company__handle="52").count() == 3
    assert "Demo Company (47): 5 new, 0 updated, 0 gone from IPS" in out


def test_load_demo_without_sync(db, debug, ips_emulator):
    _load_demo(ips_emulator, no_sync=True)
    assert Company.objects.count() == 3
    assert not Job.objects.exists()
    assert not soap_calls(ips_emulator, "getScheduledJobs")


def test_load_demo_twice_is_harmless(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    first = _counts()
    assert first == {"connections": 1, "companies": 3, "users": 11, "memberships": 10, "jobs": 11}
    admin = User.objects.get(username="admin")
    admin.set_password("changed")
    admin.save()

    out = _load_demo(ips_emulator)
    assert _counts() == first
    assert "Demo Company (47): 0 new, 5 updated, 0 gone from IPS" in out
    assert User.objects.get(username="admin").check_password("demo")


def test_load_demo_restores_a_changed_role(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    Membership.objects.filter(user__username="ipsuser").update(role="WebServiceUser")
    _load_demo(ips_emulator)
    assert Membership.objects.get(user__username="ipsuser").role == "IpsUser"


def test_load_demo_refuses_without_debug(db, settings, ips_emulator):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        _load_demo(ips_emulator)
    assert _counts() == {"connections": 0, "companies": 0, "users": 0, "memberships": 0, "jobs": 0}
    assert ips_emulator.state.calls == []


def test_load_demo_fails_when_the_emulator_is_unreachable(db, debug):
    with pytest.raises(CommandError, match="Cannot read the companies"):
        call_command(
            "load_demo",
            service_url=f"http://127.0.0.1:{free_port()}/scene7/services/IpsApiService",
            stdout=io.StringIO(),
        )
    assert not Company.objects.exists()
    assert not User.objects.exists()


# --- The demo-password guard --------------------------------------------------------


def test_refuse_demo_passwords_refuses_demo_accounts_without_debug(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    debug.DEBUG = False
    with pytest.raises(ImproperlyConfigured) as raised:
        demo.refuse_demo_passwords()
    for username in [*DEMO_USERS, "admin"]:
        assert username in str(raised.value)


def test_refuse_demo_passwords_names_the_accounts_left(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    debug.DEBUG = False
    for user in User.objects.exclude(username="trialsiteuser"):
        user.set_password("a-real-password")
        user.save()
    with pytest.raises(ImproperlyConfigured) as raised:
        demo.refuse_demo_passwords()
    assert "'demo': trialsiteuser. Change" in str(raised.value)


def test_refuse_demo_passwords_passes_once_they_are_changed(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    debug.DEBUG = False
    for user in User.objects.all():
        user.set_password(f"{user.username}-real-password")
        user.save()
    demo.refuse_demo_passwords()  # no exception


def test_refuse_demo_passwords_ignores_deactivated_accounts(db, settings):
    settings.DEBUG = False
    User.objects.create_user("ipsuser", password="demo", is_active=False)
    User.objects.create_superuser("admin", password="demo", is_active=False)
    demo.refuse_demo_passwords()


def test_refuse_demo_passwords_ignores_other_accounts(db, settings):
    settings.DEBUG = False
    User.objects.create_user("someone", password="demo")
    demo.refuse_demo_passwords()


def test_refuse_demo_passwords_does_nothing_with_debug(db, debug, ips_emulator):
    _load_demo(ips_emulator)
    demo.refuse_demo_passwords()  # no exception: DEBUG is on


# --- reconcile_executions and prune_executions ---------------------------------


def _execution(job, user, outcome, age, request_id):
    requested = timezone.now() - age
    return make_execution(
        job,
        user,
        outcome,
        requested_at=requested,
        sent_at=requested if outcome != "denied" else None,
        finished_at=None if outcome == "sending" else requested + dt.timedelta(seconds=1),
        request_id=request_id,
    )


@pytest.fixture
def jobs(synced):
    """Three jobs of company 47: the in-flight index allows one 'sending' row per job."""
    return list(Job.objects.filter(company=synced).order_by("handle")[:3])


def test_reconcile_marks_old_sending_rows_interrupted(jobs, users):
    old = _execution(jobs[0], users["IpsUser"], "sending", dt.timedelta(minutes=10), "old")
    fresh = _execution(jobs[1], users["IpsUser"], "sending", dt.timedelta(seconds=1), "fresh")
    done = _execution(jobs[2], users["IpsUser"], "accepted", dt.timedelta(minutes=10), "done")

    out = io.StringIO()
    call_command("reconcile_executions", stdout=out)
    assert out.getvalue().strip() == "1 stale execution marked interrupted."

    old.refresh_from_db()
    assert old.outcome == "interrupted"
    assert old.finished_at is not None
    assert "may or may not have started" in old.message
    assert (old.job_name, old.username, old.request_id) == (jobs[0].name, "ipsuser", "old")

    fresh.refresh_from_db()
    assert fresh.outcome == "sending" and fresh.finished_at is None
    done.refresh_from_db()
    assert done.outcome == "accepted"

    out = io.StringIO()
    call_command("reconcile_executions", stdout=out)
    assert out.getvalue().strip() == "0 stale executions marked interrupted."


# age in days -> (outcome, kept by prune_executions --days 30)
PRUNE_TABLE = [
    (31, "accepted", False),
    (400, "refused", False),
    (31, "denied", False),
    (31, "interrupted", False),
    (29, "accepted", True),
    (1, "refused", True),
    (40, "sending", True),
]


def test_prune_deletes_finished_rows_older_than_days_only(job, users):
    rows = []
    for n, (days, outcome, kept) in enumerate(PRUNE_TABLE):
        rows.append((_execution(job, users["IpsUser"], outcome, dt.timedelta(days=days), f"r{n}"), kept))

    out = io.StringIO()
    call_command("prune_executions", days=30, stdout=out)
    assert out.getvalue().strip() == "4 executions older than 30 days deleted."
    for row, kept in rows:
        assert Execution.objects.filter(pk=row.pk).exists() == kept, (row.request_id, row.outcome)
    assert Execution.objects.filter(outcome="sending").count() == 1


def test_prune_with_more_days_keeps_more(job, users):
    _execution(job, users["IpsUser"], "accepted", dt.timedelta(days=31), "a")
    _execution(job, users["IpsUser"], "accepted", dt.timedelta(days=91), "b")
    out = io.StringIO()
    call_command("prune_executions", "--days", "90", stdout=out)
    assert out.getvalue().strip() == "1 execution older than 90 days deleted."
    assert list(Execution.objects.values_list("request_id", flat=True)) == ["a"]


@pytest.mark.parametrize("days", [29, 0, -1])
def test_prune_refuses_less_than_30_days(job, users, days):
    _execution(job, users["IpsUser"], "accepted", dt.timedelta(days=400), "old")
    with pytest.raises(CommandError, match="at least 30 days"):
        call_command("prune_executions", days=days, stdout=io.StringIO())
    assert Execution.objects.count() == 1


def test_prune_requires_days(job):
    with pytest.raises(CommandError):
        call_command("prune_executions", stdout=io.StringIO())


def test_prune_never_deletes_a_sending_row(job, users):
    sending = _execution(job, users["IpsUser"], "sending", dt.timedelta(days=365), "stuck")
    call_command("prune_executions", days=30, stdout=io.StringIO())
    assert Execution.objects.filter(pk=sending.pk).exists()


def test_prune_closes_the_door_behind_it(job, users):
    _execution(job, users["IpsUser"], "accepted", dt.timedelta(days=40), "old")
    young = _execution(job, users["IpsUser"], "accepted", dt.timedelta(days=1), "young")
    call_command("prune_executions", days=30, stdout=io.StringIO())
    with pytest.raises(PermissionError):
        young.delete()
    with pytest.raises(PermissionError):
        Execution.objects.all().delete()
    assert Execution.objects.count() == 1
