"""Login throttling: django-axes per user name and address, and per address alone.

Axes counts failures for one set of lockout parameters at one limit; a
sprayer trying a few passwords on many user names stays under a per-name
limit forever. This handler also locks an address out once its failures
across all user names reach AXES_IP_FAILURE_LIMIT within the cool-off time.

A user name is counted however it is spelled (``throttle_username``, axes's
AXES_USERNAME_CALLABLE): IPS reads one email in any case. And an attempt
whose password goes to IPS is counted before it goes (``count_ips_check``),
under a lock per address: simultaneous attempts cannot all pass the check
that comes before the count, and a worker killed mid-call leaves it counted.
"""

import unicodedata
import zlib

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone


def normalize_username(name: str | None) -> str | None:
    """One person's user name however typed: compatibility forms folded (NFKC), blanks cut, any case."""
    if name is None:
        return None
    return unicodedata.normalize("NFKC", str(name)).strip().casefold()


def counted_name(name: str | None) -> str | None:
    """The name an attempt is counted under: normalized, and cut to what AccessAttempt keeps
    (PostgreSQL refuses a longer one: the login would end in a 500)."""
    name = normalize_username(name)
    return None if name is None else name[: AccessAttempt._meta.get_field("username").max_length]


def throttle_username(request, credentials: dict | None = None) -> str | None:
    """AXES_USERNAME_CALLABLE: the user name failures are counted by."""
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials is not None:
        return counted_name(credentials.get(field))
    return counted_name(getattr(request, "data", request.POST).get(field))


def _recent(attempts):
    cool_off = get_cool_off()
    if cool_off is not None:
        attempts = attempts.filter(attempt_time__gte=timezone.now() - cool_off)
    return attempts


def address_failures(ip_address: str | None) -> int:
    """Failed logins from ``ip_address`` within the cool-off time, whatever the user name
    (attempts being checked with IPS included)."""
    if not ip_address:
        return 0
    attempts = _recent(AccessAttempt.objects.filter(ip_address=ip_address))
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


# --- An attempt counted before its password goes to IPS -----------------------------------


def _in_check(username: str) -> str:
    """The user name under which attempts being checked with IPS are counted (the admin's access attempts show it)."""
    return f"{username} (being checked with IPS)"[: AccessAttempt._meta.get_field("username").max_length]


def _lock_address(ip_address: str) -> None:
    """Serialize the counting of one address's attempts until the transaction ends."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"ipsadmin login {ip_address}".encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    # SQLite: the transaction began IMMEDIATE (settings): it holds the database's write lock.


def count_ips_check(request, username: str) -> bool:
    """Count a login attempt before its password goes to IPS; False (nothing counted) when the
    address or the user name has no attempt left.

    Axes counts a failure once IPS has answered, and checks the count before
    asking: 60 attempts at once all passed the check. Counted here under a lock
    per address, the attempts in flight count as failures until axes has
    counted theirs (``uncount_ips_check``, from the handler)."""
    ip_address = getattr(request, "axes_ip_address", None)
    if not ip_address:
        return True
    name = counted_name(username)
    with transaction.atomic():
        _lock_address(ip_address)
        if address_failures(ip_address) >= settings.AXES_IP_FAILURE_LIMIT:
            return False
        mine = _recent(AccessAttempt.objects.filter(ip_address=ip_address, username__in=[name, _in_check(name)]))
        if (mine.aggregate(n=Sum("failures_since_start"))["n"] or 0) >= settings.AXES_FAILURE_LIMIT:
            return False
        attempt, _ = AccessAttempt.objects.get_or_create(
            username=_in_check(name), ip_address=ip_address, user_agent="",
            defaults={"http_accept": "", "path_info": request.path[:255], "get_data": "", "post_data": "",
                      "failures_since_start": 0},
        )
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            failures_since_start=F("failures_since_start") + 1, attempt_time=timezone.now()
        )
    request.ips_check_counted = attempt.pk
    return True


def uncount_ips_check(request) -> None:
    """The attempt's own outcome is counted now (a failure by axes, or a login): take back its advance count."""
    pk = getattr(request, "ips_check_counted", None) if request is not None else None
    if pk is None:
        return
    request.ips_check_counted = None
    with transaction.atomic():
        _lock_address(request.axes_ip_address)
        AccessAttempt.objects.filter(pk=pk, failures_since_start__gt=1).update(
            failures_since_start=F("failures_since_start") - 1
        )
        AccessAttempt.objects.filter(pk=pk, failures_since_start__lte=1).delete()


class UserAndAddressHandler(AxesDatabaseHandler):
    def is_locked(self, request, credentials=None) -> bool:
        if super().is_locked(request, credentials):
            return True
        return self._address_locked(request)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        # Counted by axes now: the advance count of an IPS check goes (counted once, never by nobody).
        uncount_ips_check(request)
        # Axes flags a lockout by its own count only: the address's count flags it too,
        # so the login page turns into the lockout page.
        if request is not None and not request.axes_locked_out and self._address_locked(request):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send("axes", request=request, username=None, ip_address=request.axes_ip_address)

    @staticmethod
    def _address_locked(request) -> bool:
        return address_failures(getattr(request, "axes_ip_address", None)) >= settings.AXES_IP_FAILURE_LIMIT

    def user_logged_in(self, sender, request, user, **kwargs):
        super().user_logged_in(sender, request, user, **kwargs)
        uncount_ips_check(request)
