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
from .notify import left_behind, prune
from .people import refresh_ips_memberships

#: The chores, by name (jobs/tasks.py maps each to its task).
REFRESH_MEMBERSHIPS = "refresh_ips_memberships"
CLEAN_EXPORTS = "clean_history_exports"
RESUME_NOTIFICATIONS = "resume_notifications"
NAMES = (REFRESH_MEMBERSHIPS, CLEAN_EXPORTS, RESUME_NOTIFICATIONS)
#: How often the export cleanup runs: a file lives at most EXPORTS_KEEP plus this.
CLEAN_EXPORTS_EVERY = dt.timedelta(minutes=15)
#: How often notifications left behind (a worker died with them, a task was lost) are queued again.
RESUME_NOTIFICATIONS_EVERY = dt.timedelta(minutes=5)


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


def _chain(name: str, token: str, next_run_at: dt.datetime) -> bool:
    """This run is the chore's current one (its token): schedule the next at ``next_run_at``, with a
    new token, and go on (True); else it is a stale chain's, which stops here (False)."""
    with transaction.atomic():
        chore = Chore.objects.select_for_update().filter(name=name).first()
        if chore is None or chore.token != token:
            return False
        chore.token, chore.next_run_at = new_token(), next_run_at
        chore.save(update_fields=["token", "next_run_at"])
        events.schedule(events.CHORE, name, chore.token, when=next_run_at)
    return True


def refresh_memberships_chore(token: str) -> str:
    """One run of the membership refresh: every sign-in connection, then the next run."""
    if not _chain(REFRESH_MEMBERSHIPS, token, timezone.now() + settings.IPS_MEMBERSHIP_REFRESH):
        return "stale"
    results = []
    for connection in Connection.objects.filter(ips_sign_in=True):
        count, why = refresh_ips_memberships(connection)
        results.append(why or f"{connection}: {count} people refreshed from IPS")
    Chore.objects.filter(name=REFRESH_MEMBERSHIPS).update(last_run_at=timezone.now(), last_result="\n".join(results))
    return "; ".join(results) or "no connection signs in with IPS"


def clean_exports_chore(token: str, now: dt.datetime | None = None) -> str:
    """One run of the export cleanup (services.exports.clean_exports), then the next run."""
    now = now or timezone.now()
    if not _chain(CLEAN_EXPORTS, token, now + CLEAN_EXPORTS_EVERY):
        return "stale"
    result = clean_exports(now)
    Chore.objects.filter(name=CLEAN_EXPORTS).update(last_run_at=now, last_result=result)
    return result


def resume_notifications_chore(token: str, now: dt.datetime | None = None) -> str:
    """One run of the notifications' sweep: each one due and left behind (its worker died mid-send,
    its delivery task was lost) gets a delivery task again (a duplicate finds it claimed, not sent twice);
    the delivery log's ended rows past NOTIFY_KEEP_DAYS go."""
    now = now or timezone.now()
    with transaction.atomic():
        if not _chain(RESUME_NOTIFICATIONS, token, now + RESUME_NOTIFICATIONS_EVERY):
            return "stale"
        ids = left_behind(now)
        for pk in ids:
            events.schedule(events.NOTIFICATION, pk, when=now)
    result = f"{len(ids)} notifications left behind queued again; {prune(now)} old rows of the delivery log deleted"
    Chore.objects.filter(name=RESUME_NOTIFICATIONS).update(last_run_at=now, last_result=result)
    return result
