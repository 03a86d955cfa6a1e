"""Login throttling: django-axes per user name and address, and per address alone.

Axes counts failures for one set of lockout parameters at one limit; a
sprayer trying a few passwords on many user names stays under a per-name
limit forever. This handler also locks an address out once its failures
across all user names reach AXES_IP_FAILURE_LIMIT within the cool-off time.
"""

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone


def address_failures(ip_address: str | None) -> int:
    """Failed logins from ``ip_address`` within the cool-off time, whatever the user name."""
    if not ip_address:
        return 0
    attempts = AccessAttempt.objects.filter(ip_address=ip_address)
    cool_off = get_cool_off()
    if cool_off is not None:
        attempts = attempts.filter(attempt_time__gte=timezone.now() - cool_off)
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


class UserAndAddressHandler(AxesDatabaseHandler):
    def is_locked(self, request, credentials=None) -> bool:
        if super().is_locked(request, credentials):
            return True
        return self._address_locked(request)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        # Axes flags a lockout by its own count only: the address's count flags it too,
        # so the login page turns into the lockout page.
        if request is not None and not request.axes_locked_out and self._address_locked(request):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send("axes", request=request, username=None, ip_address=request.axes_ip_address)

    @staticmethod
    def _address_locked(request) -> bool:
        return address_failures(getattr(request, "axes_ip_address", None)) >= settings.AXES_IP_FAILURE_LIMIT
