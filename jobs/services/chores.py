"""Recurring background chores: one chain of each at a time, scheduled through jobs/events.py."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import events
from ..models import Chore, Connection
from .base import new_token
from .exports import clean_exports
from .people import refresh_ips_memberships

#: The chores, by name (jobs/tasks.py maps each to its task).
REFRESH_MEMBERSHIPS = "refresh_ips_memberships"
CLEAN_EXPORTS = "clean_history_exports"
NAMES = (REFRESH_MEMBERSHIPS, CLEAN_EXPORTS)
#: How often the export cleanup runs: a file lives at most EXPORTS_KEEP plus this.
CLEAN_EXPORTS_EVERY = dt.timedelta(minutes=15)


def start_chore(name: str, when: dt.datetime | None = None) -> Chore:
    """(Re)start the one chain of a chore: any older chain's next run finds its token stale."""
    when = when or timezone.now()
    with transaction.atomic():
        chore, _ = Chore.objects.select_for_update().get_or_create(
            name=name, defaults={"token": new_token(), "next_run_at": when}
        )
        chore.token, chore.next_run_at = new_token(), when
        chore.save(update_fields=["token", "next_run_at"])
        events.schedule(events.CHORE, name, chore.token, when=when)
    return chore


def refresh_memberships_chore(token: str) -> str:
    """One run of the membership refresh: every sign-in connection, then the next run."""
    with transaction.atomic():
        chore = Chore.objects.select_for_update().filter(name=REFRESH_MEMBERSHIPS).first()
        if chore is None or chore.token != token:
            return "stale"
        chore.token = new_token()
        chore.next_run_at = timezone.now() + settings.IPS_MEMBERSHIP_REFRESH
        chore.save(update_fields=["token", "next_run_at"])
        events.schedule(events.CHORE, REFRESH_MEMBERSHIPS, chore.token, when=chore.next_run_at)
    results = []
    for connection in Connection.objects.filter(ips_sign_in=True):
        count, why = refresh_ips_memberships(connection)
        results.append(why or f"{connection}: {count} people refreshed from IPS")
    Chore.objects.filter(name=REFRESH_MEMBERSHIPS).update(last_run_at=timezone.now(), last_result="\n".join(results))
    return "; ".join(results) or "no connection signs in with IPS"


def clean_exports_chore(token: str, now: dt.datetime | None = None) -> str:
    """One run of the export cleanup (services.exports.clean_exports), then the next run."""
    now = now or timezone.now()
    with transaction.atomic():
        chore = Chore.objects.select_for_update().filter(name=CLEAN_EXPORTS).first()
        if chore is None or chore.token != token:
            return "stale"
        chore.token = new_token()
        chore.next_run_at = now + CLEAN_EXPORTS_EVERY
        chore.save(update_fields=["token", "next_run_at"])
        events.schedule(events.CHORE, CLEAN_EXPORTS, chore.token, when=chore.next_run_at)
    result = clean_exports(now)
    Chore.objects.filter(name=CLEAN_EXPORTS).update(last_run_at=now, last_result=result)
    return result
