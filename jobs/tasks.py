"""Background work, through Django's Tasks API (the django-tasks backport).

The tasks only call services, as views do; which backend runs them (the
database by default, RQ on Redis to scale out) is settings.TASKS' business.
Services schedule work through jobs/events.py; this module registers how
each kind is enqueued (JobsConfig.ready imports it).
On Django 6, ``from django_tasks import task`` becomes ``from django.tasks import task``.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models.signals import post_save
from django_tasks import task

from . import events, exporting, metrics
from .models import DeliveryAttempt
from .services import chores, exports, notify

log = logging.getLogger(__name__)


@task()
def refresh_memberships(token: str) -> str:
    """Read from IPS again the companies and user types of everyone who signs in with IPS."""
    did = chores.refresh_memberships_chore(token)
    log.info("membership refresh: %s", did)
    return did


@task()
def clean_history_exports(token: str) -> str:
    """Delete export files past their keep; fail exports whose worker stopped."""
    did = chores.clean_exports_chore(token)
    log.info("export cleanup: %s", did)
    return did


@task()
def export_history(export_id: int) -> str:
    """Write one history export's CSV file, with its progress (exporting.run_export)."""
    did = exporting.run_export(export_id)
    log.info("history export %s: %s", export_id, did)
    return did


def enqueue_export(export_id: int, *, when: dt.datetime) -> None:
    export_history.enqueue(export_id)  # at once: the user is watching its progress


@task()
def resume_notifications(token: str) -> str:
    """Queue again the notifications a dead worker or a lost task left behind."""
    did = chores.resume_notifications_chore(token)
    log.info("notifications sweep: %s", did)
    return did


CHORES = {chores.REFRESH_MEMBERSHIPS: refresh_memberships, chores.CLEAN_EXPORTS: clean_history_exports,
          chores.RESUME_NOTIFICATIONS: resume_notifications}
assert set(CHORES) == set(chores.NAMES), "every chore has its task"


def enqueue_chore(name: str, token: str, *, when: dt.datetime) -> None:
    CHORES[name].using(run_after=when).enqueue(token)


events.register(events.CHORE, enqueue_chore)
events.register(exports.EXPORT, enqueue_export)


# --- notifications (issue 19: services.notify) --------------------------------------------------


@task()
def notify_event(kind: str, event_id: int) -> str:
    """Make the event's notifications (once each), then one delivery task per notification."""
    ids = notify.fan_out(kind, event_id)
    for pk in ids:
        deliver_notification.enqueue(pk)
    return f"{kind} {event_id}: {len(ids)} notifications to send"


@task()
def deliver_notification(notification_id: int) -> str:
    """Send one notification; a failed try is enqueued again for its next time (backoff)."""
    did = notify.deliver(notification_id)
    if did.retry_at is not None:
        deliver_notification.using(run_after=did.retry_at).enqueue(notification_id)
    return did.text


# The receivers run after the commit that recorded the event (events._announce) and only enqueue,
# and only while anybody listens: a watcher's every run is no task for nobody (one small read).
def _on_run_ended(sender, execution_id: int, result: str, **kwargs) -> None:
    if notify.anybody_listens():
        notify_event.enqueue(notify.Kind.RUN_ENDED.value, execution_id)


def _on_press_ended(sender, execution_id: int, outcome: str, operation: str = "executeJob", **kwargs) -> None:
    if operation != "executeJob" or outcome not in notify.DID_NOT_GO_THROUGH:
        return  # every press comes here: most need no database at all (a Stop or a Pause is no run)
    if notify.anybody_listens():
        notify_event.enqueue(notify.Kind.PRESS_ENDED.value, execution_id)


def _on_run_missed(sender, missed_id: int, **kwargs) -> None:
    if notify.anybody_listens():
        notify_event.enqueue(notify.Kind.RUN_MISSED.value, missed_id)


def enqueue_notification(notification_id: int, *, when: dt.datetime) -> None:
    deliver_notification.enqueue(notification_id)  # due now: the sweep queues only what is due


events.register(events.NOTIFICATION, enqueue_notification)
events.run_ended.connect(_on_run_ended, dispatch_uid="jobs.notify.run_ended")
events.press_ended.connect(_on_press_ended, dispatch_uid="jobs.notify.press_ended")
events.run_missed.connect(_on_run_missed, dispatch_uid="jobs.notify.run_missed")


# --- metrics (issue 21: jobs/metrics.py), counted in the process that did the work -------------


def _count_press(sender, execution_id: int, outcome: str, operation: str = "executeJob", **kwargs) -> None:
    # After the commit: a press rolled back is no press. Never raising: a count is no part of the press.
    metrics.safely(metrics.record_press, operation, outcome)


def _count_notification_try(sender, instance: DeliveryAttempt, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        transaction.on_commit(lambda: metrics.safely(metrics.record_notification_try, instance.ok), robust=True)


events.press_ended.connect(_count_press, dispatch_uid="jobs.metrics.press_ended")
post_save.connect(_count_notification_try, sender=DeliveryAttempt, dispatch_uid="jobs.metrics.notification_try")
