"""Times in the user's zone: their profile's choice, else their browser's, else TIME_ZONE.

The browser's zone comes from static/ipsadmin.js, which reads it once per
page (``Intl.DateTimeFormat().resolvedOptions().timeZone``) and keeps it in
the ``tz`` cookie when it differs: the page after the first one is in the
right zone, and nothing is stored for a user who never chose. A user who
chooses a zone (Settings) keeps it on every device. Not in middleware.py:
that module is loaded with the logging configuration, before the models.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from urllib.parse import unquote

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Profile

#: The cookie in which static/ipsadmin.js keeps the browser's time zone.
BROWSER_ZONE_COOKIE = "tz"


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_or_none(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for anything else (a cookie is the client's to forge)."""
    if not name or name not in known_zones():
        return None
    return zoneinfo.ZoneInfo(name)


def zone_choices() -> list[tuple[str, str]]:
    return [("", _("My browser's"))] + [(z, z.replace("_", " ")) for z in sorted(known_zones())]


def _chosen_zone(user) -> str:
    """The user's own choice, "" for none: read with the user (the backends' get_user), else here."""
    try:
        return user.profile.time_zone
    except Profile.DoesNotExist:
        return ""


class TimezoneMiddleware:
    """Activates the user's zone for the request (Django's time zone pattern).

    ``request.time_zone`` is the zone, ``request.time_zone_source`` says
    whence: "profile", "browser" or "server". The profile is read with the
    user on every request (no query of its own), so that a change shows at once
    in every session."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = ""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            chosen = _chosen_zone(user)
        zone, source = zone_or_none(chosen), "profile"
        if zone is None:
            zone, source = zone_or_none(unquote(request.COOKIES.get(BROWSER_ZONE_COOKIE, ""))), "browser"
        if zone is None:
            zone, source = zoneinfo.ZoneInfo(settings.TIME_ZONE), "server"
        request.time_zone = zone
        request.time_zone_source = source
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
