"""Dashboard fixtures: a connection to the emulator, its companies and jobs,
and one named user per IPS user type (plus the edge cases of the role tables).

Shared helpers: ``HTMX`` (the header htmx sends), ``executes(emulator)`` and
``soap_calls(emulator, operation)``, ``dashboard_clock`` (the dashboard's
``timezone.now()`` moved forward instead of waited for), and from the root
conftest ``free_port`` and ``wait_for`` (for other processes and threads
only). The emulator's clock is the root conftest's ``ips_clock``."""

import datetime as dt
import os
import secrets
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.db import connection as db_connection
from django.utils import timezone, translation

from ipsemulator.clock import ManualClock
from conftest import free_port, wait_for  # noqa: F401  (the root conftest's, shared with bench/)
from jobs import ips
from jobs.services import actions, base, press, sync, watch
from jobs.models import Company, CompanyWatch, Connection, Execution, Job, Membership
from jobs.roles import UserType

#: What htmx sends with every request (``client.post(url, **HTMX)``).
HTMX = {"HTTP_HX_REQUEST": "true"}

#: The role-table rows beyond the ten IPS user types.
NO_MEMBERSHIP = "nomember"
OTHER_COMPANY_ONLY = "othercompany"
SUPERUSER = "admin"
ANONYMOUS = "anonymous"
ALL_ACTORS = [t.value for t in UserType] + [NO_MEMBERSHIP, OTHER_COMPANY_ONLY, SUPERUSER, ANONYMOUS]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _english_unless_asked():
    # A request activates its language for the rest of the thread (LocaleMiddleware
    # never deactivates): without this, a test after an Italian request reads Italian.
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fresh_ips_clients():
    # Tests change timeouts and endpoints: no client outlives its test.
    ips.clear_clients()
    yield
    ips.clear_clients()


@pytest.fixture
def connection(db, ips_emulator):
    c = Connection(
        name="Emulator",
        region=Connection.Region.CUSTOM,
        service_url=ips_emulator.service_url,
        username="service@example.com",
    )
    c.set_password("demo")
    c.save()
    return c


@pytest.fixture
def company(connection):
    return Company.objects.create(connection=connection, handle="47", name="Demo Company")


@pytest.fixture
def other_company(connection):
    return Company.objects.create(connection=connection, handle="48", name="Other Company")


@pytest.fixture
def synced(company, other_company):
    """Both companies' jobs, fetched from the emulator."""
    for c in (company, other_company):
        result = sync.sync_company(c)
        assert not result.error, result.error
    return company


@pytest.fixture
def job(synced):
    return Job.objects.get(company=synced, handle="47|My Test Job|")


@pytest.fixture
def users(db, company, other_company):
    """Named users: one per IPS user type in company 47, and the edge cases."""
    User = get_user_model()
    made = {}
    for t in UserType:
        user = User.objects.create_user(t.value.lower(), password="pw")
        Membership.objects.create(user=user, company=company, role=t.value)
        made[t.value] = user
    made[NO_MEMBERSHIP] = User.objects.create_user("nomember", password="pw")
    other = User.objects.create_user("othercompany", password="pw")
    Membership.objects.create(user=other, company=other_company, role=UserType.IPS_ADMIN)
    made[OTHER_COMPANY_ONLY] = other
    made[SUPERUSER] = User.objects.create_superuser("admin", password="pw")
    return made


@pytest.fixture
def login(client, users):
    """login(actor) logs the client in as that named user (or not at all)."""

    def _login(actor):
        if actor != ANONYMOUS:
            client.force_login(users[actor])
        return users.get(actor)

    return _login


#: How long an emulator run takes in tests on the ``clock`` fixture.
RUN_SECONDS = 10.0


@pytest.fixture
def clock(ips_emulator):
    """The emulator's clock, frozen: a run (RUN_SECONDS long) moves only when a test advances it."""
    manual = ManualClock(9000.0)
    ips_emulator.state.clock = manual
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


def press_run(job, user, request_id="press-0001"):
    """A press of Run as the view makes it (the user's access resolved first); the audit row."""
    access = job.company.access(user, "executeJob")
    return actions.run_job(job, access, user, base.RequestInfo(request_id=request_id)).execution


def look(company, owner="test-watcher", *, ok=True):
    """One look of the company's watcher now, as a watcher process takes it when due (services.watch)."""
    watch.ensure_watches()
    CompanyWatch.objects.filter(pk=company.pk).update(
        next_look_at=timezone.now() - dt.timedelta(seconds=1), lease_until=None, lease_owner=""
    )
    claimed = watch.claim(company.pk, owner, timezone.now())
    assert claimed is not None
    result = watch.look(claimed, owner)
    if ok:
        assert not result.error, result.error
    return result


def make_execution(job, user, outcome="accepted", **values):
    """An audit row as another worker (alive or dead) would have written it."""
    defaults = dict(
        job=job,
        company=job.company,
        company_handle=job.company.handle,
        job_handle=job.handle,
        job_name=job.name,
        user=user,
        username=user.get_username(),
        role="IpsUser",
        outcome=outcome,
        requested_at=timezone.now(),
        client_ip="192.0.2.1",
        user_agent="pytest",
        request_id="req-" + secrets.token_hex(8),
    )
    defaults.update(values)
    if outcome in Execution.INSERTABLE:
        return Execution.objects.create(**defaults)
    # Any other outcome is reached the one way there is: born 'sending', then finished.
    execution = Execution.objects.create(**{**defaults, "outcome": "sending"})
    press.finish(execution, outcome, "")
    return execution


def soap_calls(emulator, operation) -> list[dict]:
    """The ``operation`` calls the emulator received, oldest first."""
    return [c for c in emulator.state.calls if c["operation"] == operation]


def executes(emulator) -> list[dict]:
    """The executeJob calls the emulator received, oldest first."""
    return soap_calls(emulator, "executeJob")


class DashboardClock:
    """The dashboard's time (``django.utils.timezone.now``), moved forward on
    demand instead of waited for: ``advance(seconds)``."""

    def __init__(self, monkeypatch):
        self._real_now = timezone.now
        self.offset = dt.timedelta(0)
        monkeypatch.setattr(timezone, "now", self.now)

    def now(self):
        return self._real_now() + self.offset

    def advance(self, seconds) -> None:
        if isinstance(seconds, dt.timedelta):
            seconds = seconds.total_seconds()
        if seconds < 0:
            raise ValueError("the dashboard's clock does not go back")
        self.offset += dt.timedelta(seconds=seconds)


@pytest.fixture
def dashboard_clock(monkeypatch):
    """Move the dashboard's ``timezone.now()`` forward (this process only)."""
    return DashboardClock(monkeypatch)


@pytest.fixture
def unused_url():
    """An IpsApiService address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/scene7/services/IpsApiService"


def database_url_for_subprocess() -> str:
    """The URL of the database this test uses, for processes we start."""
    s = db_connection.settings_dict
    if db_connection.vendor == "sqlite":
        name = str(s["NAME"])
        assert os.path.isabs(name), f"the SQLite test database must be a file other processes can open: {name!r}"
        return f"sqlite:///{name}"
    assert db_connection.vendor == "postgresql", db_connection.vendor
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(s['NAME'], safe='')}"
