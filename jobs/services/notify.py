"""Notifications (issue 19): which subscriptions an event concerns, and sending one notification.

Two steps, each a background task (jobs/tasks.py), after the commit that recorded the event:

- ``fan_out(kind, event_id)``: the live subscriptions the event matches, whose owner may read the company's
  job logs (roles: getJobLogs), each get one Notification row. The rows' unique key (kind, event, subscription)
  makes this safe to run twice: a second run adds nothing.
- ``deliver(notification_id)``: claims the row by compare-and-set (state to send -> sending), checks the role
  again, sends by the subscription's channel, records the try; on failure leaves it to try again after the
  next delay of NOTIFY_RETRY_DELAYS, or failed after the last. One task per notification: a slow or failing
  channel delays no other.

Superusers act as IpsAdmin everywhere (design.md), so they may subscribe to any company and are told of it.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from .. import roles
from ..text import neutralise_bidi
from ..models import DeliveryAttempt, Execution, Notification, Profile, Subscription
from . import channels as notify_channels

log = logging.getLogger(__name__)

O = Execution.Outcome
R = Execution.IpsResult
Kind = Notification.Kind
State = Notification.State

#: Press outcomes that mean "did not go through": IPS refused it, or could not be reached or answered badly.
#: Refusals here (denied, already running) are the presser's own answer on the page, not news.
DID_NOT_GO_THROUGH = frozenset({O.REFUSED, O.UNREACHABLE, O.TIMED_OUT, O.BAD_REPLY, O.IPS_ERROR})

#: A run's IPS result -> the subscription fields that want to hear of it.
RESULT_FIELDS = {
    R.FATAL: ("on_fatal", "on_finish"),
    R.ERRORS: ("on_errors", "on_finish"),
    R.WARNINGS: ("on_warnings", "on_finish"),
    R.OK: ("on_finish",),
    R.STOPPED: ("on_finish",),
    R.NO_RESULT: ("on_finish",),
    R.NOT_STARTED: ("on_finish",),
}

#: The IPS operation whose authorized user types may hear of a company's runs.
OPERATION = "getJobLogs"


@dataclass(frozen=True)
class Event:
    kind: str
    event_id: int
    what: str  # the result, the outcome, or "missed"
    fields: tuple[str, ...]
    company: object  # Company
    job: object | None  # Job
    execution: Execution | None = None
    missed: object | None = None  # MissedRun

    @property
    def presser_id(self) -> int | None:
        if self.execution is not None and self.execution.started_by == Execution.StartedBy.HERE:
            return self.execution.user_id
        return None


def anybody_listens() -> bool:
    """Is any subscription live (not paused)? Events nobody can hear of are not queued."""
    return Subscription.objects.filter(paused=False).exists()


def event_of(kind: str, event_id: int) -> Event | None:
    """The event as its subscribers are told of it (None: nothing to tell, or its rows are gone)."""
    if kind == Kind.RUN_MISSED:
        missed = apps.get_model("jobs", "MissedRun").objects.select_related("job", "company").filter(pk=event_id).first()
        if missed is None:
            return None
        return Event(kind, event_id, "missed", ("on_missed",), missed.company, missed.job, missed=missed)
    execution = Execution.objects.select_related("company", "job").filter(pk=event_id).first()
    if execution is None or execution.company is None:
        return None
    if kind == Kind.RUN_ENDED:
        fields = RESULT_FIELDS.get(execution.ips_result)
        what = execution.ips_result
    elif kind == Kind.PRESS_ENDED:
        fields = ("on_not_through",) if execution.outcome in DID_NOT_GO_THROUGH else None
        what = execution.outcome
    else:
        raise ValueError(f"unknown notification kind {kind!r}")
    if not fields:
        return None
    return Event(kind, event_id, what, fields, execution.company, execution.job, execution=execution)


def may_hear(user, company) -> bool:
    """May ``user`` be told of ``company``'s runs? Only while their user type there may read its job logs."""
    return user.is_active and roles.may(user, OPERATION, company)


def fan_out(kind: str, event_id: int) -> list[int]:
    """One Notification per matching subscription (none twice); the ids still to send."""
    event = event_of(kind, event_id)
    if event is None:
        return []
    scope = Q(scope=Subscription.Scope.COMPANY, company=event.company)
    if event.job is not None:
        scope |= Q(scope=Subscription.Scope.JOB, job=event.job)
    if event.presser_id is not None:
        scope |= Q(scope=Subscription.Scope.MINE, user_id=event.presser_id)
    wants = Q()
    for field in event.fields:
        wants |= Q(**{field: True})
    subscriptions = Subscription.objects.filter(scope, wants, paused=False).select_related("user").order_by("-pk")
    # One message per event and subscriber at each address: several subscriptions of one user that
    # match it (a company's and one of its jobs', one added twice) to one channel and address make one
    # notification, always the newest subscription's (a webhook's: the secret its receiver was given
    # last; handled again, the same one: made once).
    chosen = {}
    for s in subscriptions:
        chosen.setdefault((s.user_id, s.channel, s.target()), s)
    rows = [
        Notification(kind=kind, event_id=event_id, subscription=s, what=event.what,
                     recipient=s.user.get_username(), channel=s.channel)
        for s in chosen.values()
        if may_hear(s.user, event.company)
    ]
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    # Also a send whose worker died mid-send (its claim ran out): handled again, it is tried again.
    unsent = Q(state__in=[State.PENDING, State.RETRY]) | Q(state=State.SENDING, claimed_until__lt=timezone.now())
    return list(
        Notification.objects.filter(unsent, kind=kind, event_id=event_id).order_by("pk").values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class Delivered:
    text: str
    #: Set when it failed and is to be tried again then.
    retry_at: dt.datetime | None = None


def _claim(notification_id: int, now: dt.datetime) -> bool:
    """Compare-and-set: this worker, and no other, sends the notification now."""
    due = Q(state__in=[State.PENDING, State.RETRY], next_try_at__lte=now) | Q(state=State.SENDING, claimed_until__lt=now)
    return bool(
        Notification.objects.filter(due, pk=notification_id).update(
            state=State.SENDING,
            attempts=F("attempts") + 1,
            claimed_until=now + dt.timedelta(seconds=settings.NOTIFY_CLAIM_SECONDS),
        )
    )


#: A notification due this long ago and not sent was left behind (its task lost, its worker dead).
LEFT_BEHIND_AFTER = dt.timedelta(minutes=5)


def left_behind(now: dt.datetime, limit: int = 1000) -> list[int]:
    """Notifications due (to send, to try again) for LEFT_BEHIND_AFTER and more, or claimed by a send
    that outlived its claim: the chore resume_notifications queues each again."""
    late = now - LEFT_BEHIND_AFTER
    stuck = Q(state__in=[State.PENDING, State.RETRY], next_try_at__lte=late) | Q(
        state=State.SENDING, claimed_until__lt=now)
    return list(Notification.objects.filter(stuck).order_by("next_try_at", "pk").values_list("pk", flat=True)[:limit])


def prune(now: dt.datetime) -> int:
    """Delete ended notifications (and their tries) older than NOTIFY_KEEP_DAYS; how many."""
    old = now - dt.timedelta(days=settings.NOTIFY_KEEP_DAYS)
    ended = Notification.objects.filter(state__in=[State.SENT, State.FAILED, State.SKIPPED], created_at__lt=old)
    count, _ = ended.delete()
    return count


def deliver(notification_id: int, now: dt.datetime | None = None) -> Delivered:
    """Send one notification, if it is this call's to send (see the module's docstring)."""
    now = now or timezone.now()
    if not _claim(notification_id, now):
        return Delivered(f"notification {notification_id}: not due, or another worker has it")
    n = Notification.objects.select_related("subscription__user").get(pk=notification_id)
    subscription = n.subscription
    event = event_of(n.kind, n.event_id)
    if subscription is None or event is None or subscription.paused or not may_hear(subscription.user, event.company):
        reason = ("the subscription was removed" if subscription is None else "the event is gone" if event is None
                  else "the subscription is paused" if subscription.paused
                  else f"{subscription.user} may no longer read the job logs of company {event.company.handle}")
        _still_mine(n).update(state=State.SKIPPED, last_error=reason, claimed_until=None)
        return Delivered(f"notification {n.pk}: not sent, {reason}")
    try:
        status = send(subscription, event, message_id=f"msg_{n.pk}")
    except notify_channels.DeliveryError as error:
        return _failed(n, error, now)
    except Exception as error:  # a bug or a key that cannot decrypt: a failed try, not a send stuck "sending"
        log.exception("notification %s: could not be sent", n.pk)
        return _failed(n, notify_channels.DeliveryError(f"dashboard error: {type(error).__name__}"), now)
    with transaction.atomic():
        DeliveryAttempt.objects.create(notification=n, at=now, ok=True, status_code=status)
        # Only while this try still holds the claim: one that outlived it (another worker took the row
        # since) records its try, never a state over the newer one's.
        _still_mine(n).update(state=State.SENT, sent_at=now, last_error="", claimed_until=None)
    log.info("notification %s (%s %s) sent by %s", n.pk, n.kind, n.event_id, subscription.channel)
    return Delivered(f"notification {n.pk}: sent by {subscription.channel}")


def _still_mine(n: Notification):
    """The row, as long as this try's claim is the last one taken (same state and count of tries)."""
    return Notification.objects.filter(pk=n.pk, state=State.SENDING, attempts=n.attempts)


def _failed(n: Notification, error: notify_channels.DeliveryError, now: dt.datetime) -> Delivered:
    delays = settings.NOTIFY_RETRY_DELAYS
    attempts = n.attempts  # read after the claim, which counted this one
    again = not error.permanent and attempts <= len(delays)
    retry_at = now + dt.timedelta(seconds=delays[attempts - 1]) if again else None
    with transaction.atomic():
        DeliveryAttempt.objects.create(notification=n, at=now, ok=False, status_code=error.status_code,
                                       error=error.error[:1000])
        if not _still_mine(n).update(
            state=State.RETRY if again else State.FAILED, next_try_at=retry_at or now,
            last_error=error.error[:1000], claimed_until=None,
        ):
            retry_at = None  # another try has the row now: its own task follows it
    # The error names no URL or secret (notify_channels): it may be logged.
    log.warning("notification %s try %s failed: %s%s", n.pk, attempts, error.error,
                f"; next try at {retry_at:%H:%M:%S}" if retry_at else "; no more tries")
    return Delivered(f"notification {n.pk}: try {attempts} failed ({error.error})", retry_at=retry_at)


# --- what is sent ---------------------------------------------------------------------------


def link(event: Event) -> str:
    """The absolute address of the run's page (of the job's, for a missed run)."""
    path = (reverse("jobs:job_detail", args=[event.job.pk]) if event.missed is not None
            else reverse("jobs:run_detail", args=[event.event_id]))
    return settings.SITE_URL + path


def started_by(execution: Execution) -> str:
    """Who pressed, or "IPS schedule"."""
    if execution.started_by == Execution.StartedBy.SCHEDULE:
        return "IPS schedule"
    return execution.username


def payload(event: Event) -> dict:
    """The webhook's JSON (Standard Webhooks' type/timestamp/data), in English, values as recorded."""
    company = event.company
    data = {
        "company": {"id": company.pk, "handle": company.handle, "name": company.name},
        "job": ({"id": event.job.pk, "handle": event.job.handle, "name": event.job.name} if event.job else None),
        "link": link(event),
    }
    if event.missed is not None:
        m = event.missed
        data["missed"] = {"id": m.pk, "fire_time": m.fire_time.isoformat(), "detected_at": m.detected_at.isoformat()}
        kind = "run.missed"
    else:
        e = event.execution
        if event.job is None:
            data["job"] = {"id": None, "handle": e.job_handle, "name": e.job_name}
        data["run"] = {
            "id": e.pk,
            "ips_run_handle": e.ips_run_handle or None,
            "outcome": e.outcome,
            "result": e.ips_result or None,
            "counts": {
                "success": e.ips_success_count, "warnings": e.ips_warning_count, "errors": e.ips_error_count,
                "duplicates": e.ips_duplicate_count, "updates": e.ips_update_count, "total": e.ips_total_count,
            },
            "runtime_ms": e.ips_runtime_ms,
            "started_at": e.ips_started_at.isoformat() if e.ips_started_at else None,
            "ended_at": e.ips_ended_at.isoformat() if e.ips_ended_at else None,
            "started_by": started_by(e),
            "pressed_by": e.username if e.started_by == Execution.StartedBy.HERE else None,
        }
        kind = "run.ended" if event.kind == Kind.RUN_ENDED else "run.not_through"
    when = event.missed.detected_at if event.missed is not None else (
        event.execution.ips_result_at or event.execution.finished_at or event.execution.requested_at)
    return {"type": kind, "timestamp": when.isoformat(), "data": data}


def _language_and_zone(user) -> tuple[str, object]:
    profile = Profile.objects.filter(user=user).values("language", "time_zone").first() or {}
    language = profile.get("language") or settings.LANGUAGE_CODE
    try:
        zone = zoneinfo.ZoneInfo(profile.get("time_zone") or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return language, zone


def words(event: Event) -> str:
    """What happened, in the active language."""
    if event.missed is not None:
        return gettext("missed run")
    if event.kind == Kind.RUN_ENDED:
        return event.execution.ips_result_label
    return gettext("did not go through: %(outcome)s") % {"outcome": event.execution.get_outcome_display()}


def text_of(event: Event, user) -> tuple[str, str]:
    """(subject, body) in the subscriber's language and time zone."""
    language, zone = _language_and_zone(user)
    with translation.override(language), timezone.override(zone):
        context = {
            "event": event,
            "execution": event.execution,
            "missed": event.missed,
            # Names from IPS: a bidi control would make a subject read one way and be another.
            "job_name": neutralise_bidi(event.job.name if event.job else event.execution.job_name),
            "company_name": neutralise_bidi(event.company.name),
            "company": event.company,
            "what": words(event),
            "link": link(event),
            "started_by": (gettext("IPS schedule") if event.execution and
                           event.execution.started_by == Execution.StartedBy.SCHEDULE
                           else event.execution.username if event.execution else ""),
        }
        subject = " ".join(render_to_string("jobs/email/notification_subject.txt", context).split())
        body = render_to_string("jobs/email/notification.txt", context)
    return subject, body


def send(subscription: Subscription, event: Event, message_id: str) -> int | None:
    """Send by the subscription's channel (raises notify_channels.DeliveryError)."""
    channel = subscription.channel
    if channel == Subscription.Channel.EMAIL:
        if not subscription.user.email:
            raise notify_channels.DeliveryError("the subscriber has no email address", permanent=True)
        subject, body = text_of(event, subscription.user)
        notify_channels.send_email(subscription.user.email, subject, body, message_id)
        return None
    url = subscription.target()
    if channel == Subscription.Channel.WEBHOOK:
        return notify_channels.send_webhook(url, subscription.secret(), message_id, payload(event))
    subject, body = text_of(event, subscription.user)
    if channel == Subscription.Channel.SLACK:
        return notify_channels.send_slack(url, subject, link(event))
    with translation.override(_language_and_zone(subscription.user)[0]):
        title = gettext("Details")
    return notify_channels.send_teams(url, subject, link(event), title)


# --- the settings page and the admin ----------------------------------------------------------


def subscription_works(subscription: Subscription) -> bool:
    """Does the subscription still send? Not once its owner may no longer read the company's job logs."""
    company = subscription.scope_company()
    return company is None or may_hear(subscription.user, company)


def set_language(user, language: str) -> None:
    Profile.objects.update_or_create(user=user, defaults={"language": language})


def add_subscription(user, *, scope: str, company=None, job=None, results: dict[str, bool], channel: str,
                     url: str = "") -> tuple[Subscription, str]:
    """A new subscription; returns it and, for a signed webhook, its secret (shown once, never again)."""
    subscription = Subscription(user=user, scope=scope, company=company, job=job, channel=channel, **results)
    secret = ""
    if channel in Subscription.URL_CHANNELS:
        subscription.set_target(url)
    if channel == Subscription.Channel.WEBHOOK:
        secret = subscription.new_secret()
    subscription.save()
    return subscription, secret
