"""People: memberships (the one way they change, recorded), sign-in with IPS, and each user's settings."""

from __future__ import annotations

import dataclasses
import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips, roles
from ..ips.concurrent import at_once
from ..models import Company, Connection, IpsIdentity, Membership, MembershipChange, Profile
from .base import english, fit
from .connections import Deadline, OutOfTime, url_problem

log = logging.getLogger(__name__)


def change_membership(actor, user, company: Company, role: str | None, source: str) -> MembershipChange | None:
    """Give ``user`` the IPS user type ``role`` in ``company`` (None: take it away), recorded.

    The one way memberships change (the admin, load_demo, sign-in with IPS):
    each change is a MembershipChange row with who, when, before and after.
    Nobody changes their own membership by hand."""
    if source == MembershipChange.Source.ADMIN and actor is not None and actor.pk == user.pk:
        raise PermissionError("Nobody changes their own IPS user type: ask another administrator.")
    with transaction.atomic():
        current = Membership.objects.select_for_update().filter(user=user, company=company).first()
        before = current.role if current else ""
        after = role or ""
        if before == after:
            return None
        from_ips = source in (MembershipChange.Source.IPS_SIGN_IN, MembershipChange.Source.IPS_REFRESH)
        read_at = timezone.now() if from_ips else None
        if role is None:
            current.delete()
        elif current is None:
            Membership.objects.create(user=user, company=company, role=role, from_ips=from_ips, read_at=read_at)
        else:
            current.role, current.from_ips, current.read_at = role, from_ips, read_at
            current.save(update_fields=["role", "from_ips", "read_at"])
        change = MembershipChange.objects.create(
            source=source,
            actor=actor,
            actor_name=actor.get_username() if actor is not None else "",
            user=user,
            username=user.get_username(),
            company=company,
            company_handle=company.handle,
            role_before=before,
            role_after=after,
        )
    log.info("membership changed: %s", english(lambda: str(change)))
    return change



# --- Sign in with IPS, and IPS's view of people -------------------------------------


class SignInRefused(Exception):
    """The dashboard will not sign this person in: the message (lazy, for the login form) says why.

    ``final``: about the person (no other connection may sign them in either);
    else about this connection only (it does not speak HTTPS)."""

    def __init__(self, message: str | Promise, *, final: bool = True):
        super().__init__(message)
        self.final = final


def is_local_account(username: str) -> bool:
    """A dashboard account of that name that does not sign in with IPS: its password stays here."""
    User = get_user_model()
    # Either spelling, in one query: every sign-in asks this first.
    names = {username.strip().lower(), username.strip()}
    return User.objects.filter(username__in=names, ips_identity__isnull=True).exists()


def password_may_go_to(connection: Connection) -> bool:
    """A person's IPS password only ever travels over HTTPS (the local emulator excepted), to the
    host the HTTP client will really connect to (ips.url_problem)."""
    return url_problem(connection.resolved_service_url()) is None


def _before_asking(deadline: Deadline, connection: Connection, first: bool = False) -> None:
    """Deadline.check, said in sign-in's words: no IPS call starts that could not end in time
    (nor is another connection asked)."""
    try:
        deadline.check(1, connection if first else None)
    except OutOfTime:
        log.warning("sign-in with IPS stopped before asking %s: %.1f s left of the request's %g s",
                    connection, deadline.remaining(), deadline.seconds)
        raise SignInRefused(_(
            "IPS answered too slowly for sign-in to finish within one request: "
            "it stopped before asking IPS again. Try again later."
        )) from None


def sign_in_with_ips(connection: Connection, email: str, password: str, deadline: Deadline | None = None):
    """The Django user for an IPS login, its memberships read from IPS as that person.

    None: IPS says the email and password are not a valid login. Raises
    SignInRefused when IPS accepts them but the dashboard will not (expired
    password, a local account of that name, no time left before the request's
    ``deadline`` for another call) and ips.IpsError when IPS could not be
    asked. The password is used for these calls and never stored.
    """
    User = get_user_model()
    limit = User._meta.get_field(User.USERNAME_FIELD).max_length
    if len(email.strip()) > limit:
        # The account would be named by the email: refused before any password goes to IPS.
        raise SignInRefused(format_lazy(
            _("IPS emails longer than {limit} characters cannot sign in to the dashboard: ask an administrator."),
            limit=limit,
        ))
    if not password_may_go_to(connection):
        raise SignInRefused(
            format_lazy(
                _("Sign-in with IPS needs an HTTPS connection; “{connection}” is not."), connection=str(connection)
            ),
            final=False,
        )
    deadline = deadline or Deadline.unlimited()
    _before_asking(deadline, connection, first=True)  # with the remote WSDL, read at first use
    service = ips.client_for(connection)
    if not service.check_login(email, password):
        return None
    # A client of its own, not kept: the person's password lives only as long as this call.
    person = ips.IpsClient(dataclasses.replace(ips.endpoint_for(connection), user=email, password=password))
    try:
        # Both need only the person's credentials: asked at once, they take one call's time
        # (each within its own whole-reply deadline), so one call must fit in what is left.
        _before_asking(deadline, connection)
        asked_info, asked_memberships = at_once(person.get_user_info, person.get_company_membership)
    finally:
        person.close()
    try:
        # Read in the order they were once asked one after the other: getUserInfo's failure decides first.
        info = asked_info.result()
        memberships = asked_memberships.result()
    except ips.IpsAuthorizationFault:
        # A WebServiceUser may not read even its own user info: no rights here.
        info, memberships = None, []
    now = timezone.now()
    if info is not None and info.password_expires is not None and info.password_expires <= now:
        raise SignInRefused(format_lazy(
            _("Your IPS password expired on {date}: change it in IPS, then sign in again."),
            date=f"{timezone.localtime(info.password_expires):%Y-%m-%d}",
        ))
    if info is not None and info.is_valid is False:
        raise SignInRefused(_("IPS says your IPS account is not valid any more."))
    username = email.strip().lower()
    # Every statement here is paid by every sign-in (test_sign_in_cost.py counts them): one read of the
    # user with its identity, and only the writes that change something (read_at always does).
    with transaction.atomic():
        # Locked: two sign-ins of one person at once write one after the other.
        user = (User.objects.select_related("ips_identity").select_for_update(of=("self",))
                .filter(username=username).first())
        identity = None
        if user is None:
            user = User(username=username, email=email)
            user.set_unusable_password()
        else:
            identity = _identity_of(user)
            if identity is None:
                raise SignInRefused(_(
                    "A local dashboard account already has this name: log in with its own password, "
                    "or ask an administrator."
                ))
            if identity.connection_id != connection.pk:
                # The same email on another IPS is another person as far as we know.
                raise SignInRefused(format_lazy(
                    _("This email signs in with IPS through “{other}”, not “{connection}”: ask an administrator."),
                    other=str(identity.connection), connection=str(connection),
                ))
        if not user.is_active:
            raise SignInRefused(_("Your dashboard account is switched off: ask an administrator."))
        names = (user.first_name, user.last_name)
        if info is not None:
            user.first_name = fit(User, "first_name", info.first_name or "")
            user.last_name = fit(User, "last_name", info.last_name or "")
        if user.pk is None:
            user.save()
        elif (user.first_name, user.last_name) != names:
            user.save(update_fields=["first_name", "last_name"])
        values = {
            "connection": connection,
            "email": email,
            "user_handle": fit(IpsIdentity, "user_handle", (info.user_handle if info else "") or ""),
            "default_role": fit(IpsIdentity, "default_role", (info.default_role if info else "") or ""),
            "password_expires": info.password_expires if info else None,
            "read_at": now,
        }
        if identity is None:
            IpsIdentity.objects.create(user=user, **values)
        else:
            for name, value in values.items():
                setattr(identity, name, value)
            identity.save(update_fields=list(values))
        apply_ips_memberships(user, connection, info, memberships, MembershipChange.Source.IPS_SIGN_IN, now)
    log.info("signed in with IPS: %s on %s", username, connection)
    return user


def _identity_of(user) -> IpsIdentity | None:
    try:
        return user.ips_identity
    except IpsIdentity.DoesNotExist:
        return None


def ips_roles(connection: Connection, info: ips.UserInfo | None, memberships, handles=None) -> dict[str, str]:
    """{company handle: IPS user type} as IPS gives them, for the connection's companies
    (``handles``: theirs, when the caller has read them already)."""
    default = info.default_role if info is not None else None
    handles = set(connection.companies.values_list("handle", flat=True) if handles is None else handles)
    if default == roles.UserType.IPS_ADMIN:  # IpsAdmin overrides per-company roles
        return dict.fromkeys(handles, roles.UserType.IPS_ADMIN)
    out = {}
    for m in memberships:
        handle = m.company.company_handle if m.company else None
        # Before 6.0 a membership has no role of its own: the user's one role applies.
        role = m.role or default
        if handle in handles and m.is_active is not False and role in roles.UserType.values:
            out[handle] = role
    return out


def apply_ips_memberships(user, connection: Connection, info, memberships, source: str, now=None) -> int:
    """Make the user's memberships in the connection's companies exactly IPS's; returns the changes.

    Inside the caller's transaction (the rows read are locked). Only a role that changes goes
    through change_membership (recorded); the others, IPS's still, are marked read now, in one update."""
    now = now or timezone.now()
    companies = list(connection.companies.all())
    wanted = ips_roles(connection, info, memberships, handles=[c.handle for c in companies])
    mine = Membership.objects.select_for_update().filter(user=user, company__in=[c.pk for c in companies])
    held = {m.company_id: m for m in mine}
    changes, confirmed = 0, []
    for company in companies:
        role, current = wanted.get(company.handle), held.get(company.pk)
        if current is not None and current.role == role:
            confirmed.append(current.pk)
        elif current is not None or role is not None:
            if change_membership(None, user, company, role, source):
                changes += 1
    if confirmed:
        Membership.objects.filter(pk__in=confirmed).update(from_ips=True, read_at=now)
    return changes


def refresh_ips_memberships(connection: Connection) -> tuple[int, str]:
    """Read every signed-in person's memberships from IPS again: (people refreshed, why not if none).

    Only a service account of type IpsAdmin may read other users; otherwise
    people are refreshed at their next sign-in, and their memberships age out.
    """
    try:
        service = ips.client_for(connection)
        me = service.get_user_info()
    except ips.IpsError as error:
        return 0, f"{connection}: IPS could not be asked ({error})."
    if me is None or me.default_role != roles.UserType.IPS_ADMIN:
        return 0, (
            f"{connection}: the service account is not an IpsAdmin, so it may not read other people; "
            "their memberships are refreshed when they sign in."
        )
    refreshed = 0
    for identity in IpsIdentity.objects.filter(connection=connection).select_related("user"):
        try:
            info = service.get_user_info(identity.user_handle or None, email=None if identity.user_handle else identity.email)
            memberships = service.get_company_membership(info.user_handle if info else identity.user_handle)
        except ips.IpsFault as error:
            if error.code in (20002, 10002):  # IPS no longer knows the person
                info, memberships = None, []
            else:
                log.warning("refresh of %s failed: %s", identity.email, error)
                continue
        except ips.IpsError as error:
            log.warning("refresh of %s failed: %s", identity.email, error)
            continue
        if info is not None and info.is_valid is False:
            info, memberships = None, []
        with transaction.atomic():
            apply_ips_memberships(identity.user, connection, info, memberships, MembershipChange.Source.IPS_REFRESH)
            identity.read_at = timezone.now()
            if info is not None:
                identity.default_role = fit(IpsIdentity, "default_role", info.default_role or "")
                identity.password_expires = info.password_expires
            identity.save(update_fields=["read_at", "default_role", "password_expires"])
        refreshed += 1
    return refreshed, ""



def set_time_zone(user, zone: str) -> None:
    """The user's own choice of time zone ("" for the browser's)."""
    Profile.objects.update_or_create(user=user, defaults={"time_zone": zone})

