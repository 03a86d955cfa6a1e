"""A connection's service account: does it work, may it do what the dashboard asks, and which companies IPS gives it."""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.utils.translation import gettext as _

from .. import ips, roles
from ..models import IPS_CALLS_PER_RUN, Company, Connection
from .base import fit

log = logging.getLogger(__name__)

# The service account's own IPS type must be allowed everything we call.


SERVICE_ACCOUNT_TYPES = {roles.UserType.IPS_ADMIN, roles.UserType.IPS_USER}


# --- Where a password goes -----------------------------------------------------------

# The check lives in ips (every endpoint is checked there); the admin's form asks it through here
# (the outer layer imports ips only for its errors).
url_problem = ips.url_problem


# --- One deadline for a request's IPS calls, across connections -------------------------------


def per_call() -> float:
    """The longest one IPS call takes: its whole-reply deadline (ips/transport.py)."""
    return settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT


def request_budget() -> float:
    """Seconds one web request may spend asking IPS, inside gunicorn's worker timeout.

    GUNICORN_TIMEOUT when the settings have it, less a tenth for the rest of the
    request (database, page); else what a Run may take, which gunicorn refuses
    to start without fitting in its timeout (jobs/checks.py)."""
    worker = getattr(settings, "GUNICORN_TIMEOUT", None)
    if worker:
        return float(worker) * 0.9
    return IPS_CALLS_PER_RUN * per_call()


class OutOfTime(ips.IpsError):
    """An IPS call not started: it could not have ended before the request's deadline."""


class Deadline:
    """One budget for every IPS call of a request (a sign-in, an admin action), across
    connections: a worker that outlasts gunicorn's timeout is killed, its answer a 500."""

    def __init__(self, seconds: float | None = None):
        self.seconds = request_budget() if seconds is None else seconds
        self._end = time.monotonic() + self.seconds

    @classmethod
    def unlimited(cls) -> Deadline:
        """No deadline (a background task, a command): every check passes."""
        return cls(math.inf)

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def check(self, calls: int = 1, connection: Connection | None = None) -> None:
        """Raise OutOfTime unless ``calls`` more IPS calls, each at its own deadline, can end before this one.

        The one test of the deadline: callers that say it in their own words catch OutOfTime.
        On ``connection``, its remote WSDL counts as one more call (it is fetched at first use)."""
        if connection is not None and connection.wsdl_url:
            calls += 1
        if self.remaining() < calls * per_call():
            raise OutOfTime(_(
                "IPS answered too slowly for this to finish within one request (%(seconds)s s): "
                "stopped before asking it again. Try again later."
            ) % {"seconds": f"{self.seconds:g}"})


def endpoint_origins(region: str, service_url: str, wsdl_url: str) -> tuple[ips.Origin | None, ips.Origin | None]:
    """Where a connection with these fields sends its password (the service) and reads its WSDL (None: bundled)."""
    try:
        service = Connection(region=region, service_url=service_url).resolved_service_url()
    except KeyError:  # a custom region without a URL: the form says so
        service = ""
    return ips.origin_of(service) if service else None, ips.origin_of(wsdl_url) if wsdl_url else None


def _refused(connection: Connection) -> str | None:
    """Why the service account's password must not go to the stored address (saved before it was checked)."""
    problem = url_problem(connection.resolved_service_url())
    return _("%(connection)s: the service URL is refused: %(problem)s") % {
        "connection": connection, "problem": problem} if problem else None


def check_connection(connection: Connection, deadline: Deadline | None = None) -> tuple[bool, str]:
    """checkLogin, getUserInfo, getCompanyMembership: (ok, message in plain words).

    The service account's IPS type must allow what the dashboard calls, in
    every company of the connection, or Runs there end in 20003. With a
    ``deadline``, no call starts that could not end before it.
    """
    refused = _refused(connection)
    if refused:
        return False, refused
    deadline = deadline or Deadline.unlimited()
    try:
        deadline.check(1, connection)
        client = ips.client_for(connection)
        if not client.check_login(connection.username, connection.get_password()):
            return False, _("%(connection)s: IPS says the login of %(username)s is invalid.") % {
                "connection": connection, "username": connection.username}
        deadline.check()
        info = client.get_user_info()
        deadline.check()
        memberships = client.get_company_membership()
    except ips.IpsAuthorizationFault as error:
        # Real IPS's reason need not name the user type: say what to fix.
        return False, _(
            "%(connection)s: IPS refused %(operation)s to the service account %(username)s "
            "(%(code)s — %(reason)s). Its IPS type must be IpsUser or IpsAdmin to run jobs; "
            "a WebServiceUser may call none of checkLogin, getScheduledJobs or executeJob."
        ) % {"connection": connection, "operation": error.operation, "username": connection.username,
             "code": error.code_label, "reason": error.reason}
    except ips.IpsError as error:
        return False, _("%(connection)s: %(error)s") % {"connection": connection, "error": error}
    default = info.default_role if info else None
    # From 2016-01-14-beta a user has no type of its own (only isIpsAdmin): each company's decides.
    per_company = info is not None and default is None and info.is_ips_admin is False
    if default not in SERVICE_ACCOUNT_TYPES and not per_company:
        return False, _(
            "%(connection)s: login works, but the service account's IPS type is %(type)s; "
            "it must be IpsUser or IpsAdmin to run jobs (executeJob)."
        ) % {"connection": connection, "type": default or _("unknown")}
    problems = []
    if default != roles.UserType.IPS_ADMIN:  # IpsAdmin overrides per-company roles
        # Before 6.0 a membership has no role of its own: the user's one role applies.
        in_ips = {m.company.company_handle: m.role or default for m in memberships if m.company and m.is_active}
        for company in connection.companies.all():
            role = in_ips.get(company.handle)
            if role is None:
                problems.append(_("not an active member of company %(company)s") % {"company": company.handle})
            elif role not in SERVICE_ACCOUNT_TYPES:
                problems.append(_("%(type)s in company %(company)s, which may not run jobs") % {
                    "type": role, "company": company.handle})
    listed = _listing(connection, info, memberships)
    shown = default or _("a type in each company")
    if problems:
        return False, _(
            "%(connection)s: login works as %(email)s (%(type)s), but the service account is "
            "%(problems)s. It must be IpsUser or IpsAdmin in every company of the connection.%(listed)s"
        ) % {"connection": connection, "email": info.email, "type": shown, "problems": "; ".join(problems),
             "listed": listed}
    return True, _("%(connection)s: login works as %(email)s (%(type)s).%(listed)s") % {
        "connection": connection, "email": info.email, "type": shown, "listed": listed}


def _listing(connection: Connection, info, memberships) -> str:
    """What IPS lists for the service account, in words for the admin."""
    rows = _service_account_companies(connection, info, memberships)
    if not rows:
        return " " + _("IPS lists no company for it.")
    return " " + _("IPS lists for it: %(companies)s.") % {"companies": "; ".join(
        (_("%(handle)s %(name)s as %(type)s") if known else _("%(handle)s %(name)s as %(type)s (not added here yet)"))
        % {"handle": handle, "name": name, "type": role} for handle, name, role, known in rows
    )}



def service_account_companies(
    connection: Connection, deadline: Deadline | None = None
) -> list[tuple[str, str, str, bool]]:
    """(handle, name, the service account's role, known here) of each company IPS lists for it."""
    refused = _refused(connection)
    if refused:
        raise ips.IpsError(refused)
    deadline = deadline or Deadline.unlimited()
    deadline.check(1, connection)
    client = ips.client_for(connection)
    info = client.get_user_info()
    deadline.check()
    return _service_account_companies(connection, info, client.get_company_membership())


def _service_account_companies(connection: Connection, info, memberships) -> list[tuple[str, str, str, bool]]:
    known = set(connection.companies.values_list("handle", flat=True))
    out = []
    for m in memberships:
        if m.company is None or m.is_active is False:
            continue
        role = m.role or (info.default_role if info else "") or ""
        out.append((m.company.company_handle, m.company.name or "", role, m.company.company_handle in known))
    return out


def add_service_account_companies(connection: Connection, deadline: Deadline | None = None) -> list[Company]:
    """Create the Companies IPS lists for the service account that the dashboard lacks."""
    added = []
    for handle, name, _role, known in service_account_companies(connection, deadline):
        if known:
            continue
        if fit(Company, "handle", handle) != handle:
            # A handle is who the company is to IPS: cut, it would name another (or none).
            log.warning("company %r… of %s not added: its handle is longer than the dashboard keeps",
                        handle[:60], connection)
            continue
        name = fit(Company, "name", name or handle)
        added.append(Company.objects.create(connection=connection, handle=handle, name=name))
    return added

