"""A connection's service account: does it work, may it do what the dashboard asks, and which companies IPS gives it."""

from __future__ import annotations

from .. import ips, roles
from ..models import Company, Connection

# The service account's own IPS type must be allowed everything we call.


SERVICE_ACCOUNT_TYPES = {roles.UserType.IPS_ADMIN, roles.UserType.IPS_USER}


def check_connection(connection: Connection) -> tuple[bool, str]:
    """checkLogin, getUserInfo, getCompanyMembership: (ok, message in plain words).

    The service account's IPS type must allow what the dashboard calls, in
    every company of the connection, or Runs there end in 20003.
    """
    try:
        client = ips.client_for(connection)
        if not client.check_login(connection.username, connection.get_password()):
            return False, f"{connection}: IPS says the login of {connection.username} is invalid."
        info = client.get_user_info()
        memberships = client.get_company_membership()
    except ips.IpsAuthorizationFault as error:
        # Real IPS's reason need not name the user type: say what to fix.
        return False, (
            f"{connection}: IPS refused {error.operation} to the service account {connection.username} "
            f"({error.code_label} — {error.reason}). Its IPS type must be IpsUser or IpsAdmin to run jobs; "
            "a WebServiceUser may call none of checkLogin, getScheduledJobs or executeJob."
        )
    except ips.IpsError as error:
        return False, f"{connection}: {error}"
    default = info.default_role if info else None
    if default not in SERVICE_ACCOUNT_TYPES:
        return False, (
            f"{connection}: login works, but the service account's IPS type is {default or 'unknown'}; "
            "it must be IpsUser or IpsAdmin to run jobs (executeJob)."
        )
    problems = []
    if default != roles.UserType.IPS_ADMIN:  # IpsAdmin overrides per-company roles
        # Before 6.0 a membership has no role of its own: the user's one role applies.
        in_ips = {m.company.company_handle: m.role or default for m in memberships if m.company and m.is_active}
        for company in connection.companies.all():
            role = in_ips.get(company.handle)
            if role is None:
                problems.append(f"not an active member of company {company.handle}")
            elif role not in SERVICE_ACCOUNT_TYPES:
                problems.append(f"{role} in company {company.handle}, which may not run jobs")
    listed = _listing(connection, info, memberships)
    if problems:
        return False, (
            f"{connection}: login works as {info.email} ({default}), but the service account is "
            f"{'; '.join(problems)}. It must be IpsUser or IpsAdmin in every company of the connection.{listed}"
        )
    return True, f"{connection}: login works as {info.email} ({default}).{listed}"


def _listing(connection: Connection, info, memberships) -> str:
    """What IPS lists for the service account, in words for the admin."""
    rows = _service_account_companies(connection, info, memberships)
    if not rows:
        return " IPS lists no company for it."
    return " IPS lists for it: " + "; ".join(
        f"{handle} {name} as {role}{'' if known else ' (not added here yet)'}" for handle, name, role, known in rows
    ) + "."



def service_account_companies(connection: Connection) -> list[tuple[str, str, str, bool]]:
    """(handle, name, the service account's role, known here) of each company IPS lists for it."""
    client = ips.client_for(connection)
    return _service_account_companies(connection, client.get_user_info(), client.get_company_membership())


def _service_account_companies(connection: Connection, info, memberships) -> list[tuple[str, str, str, bool]]:
    known = set(connection.companies.values_list("handle", flat=True))
    out = []
    for m in memberships:
        if m.company is None or m.is_active is False:
            continue
        role = m.role or (info.default_role if info else "") or ""
        out.append((m.company.company_handle, m.company.name or "", role, m.company.company_handle in known))
    return out


def add_service_account_companies(connection: Connection) -> list[Company]:
    """Create the Companies IPS lists for the service account that the dashboard lacks."""
    added = []
    for handle, name, _, known in service_account_companies(connection):
        if not known:
            added.append(Company.objects.create(connection=connection, handle=handle, name=name or handle))
    return added

