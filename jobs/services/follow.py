"""Following every accepted run to its IPS result, and recording it on the audit row.

Every accepted run is followed until IPS says how it ended, by background
follow steps (scheduled through jobs/events.py) and by the browser's polls
alike: both ask IPS through status.run_status() and write what they learn
with record_status(), the final result once (first writer wins), announced
once after the commit (events.run_ended).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import events, ips
from ..models import Execution, RunFollow
from .base import english, fit, new_token
from .status import LOG_PAGES, RunStatus, run_status

log = logging.getLogger(__name__)
Outcome = Execution.Outcome
IpsResult = Execution.IpsResult


def follow_lease() -> dt.timedelta:
    """How long one poll may hold a run: every IPS call of run_status() at its deadline, plus the margin."""
    per_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
    return dt.timedelta(seconds=(2 + LOG_PAGES) * per_call + settings.IPS_STALE_MARGIN)


def follow_interval(poll: int) -> dt.timedelta:
    """The wait before poll number ``poll`` (from 1): 1.5 times longer each time, up to the maximum."""
    seconds = settings.IPS_FOLLOW_FIRST_POLL * (1.5 ** max(0, poll - 1))
    return dt.timedelta(seconds=min(seconds, settings.IPS_FOLLOW_MAX_INTERVAL))


def start_follow(execution: Execution) -> RunFollow | None:
    """Follow an accepted run in the background, from the first poll on."""
    if not execution.is_following:
        return None
    now = timezone.now()
    follow, created = RunFollow.objects.get_or_create(
        execution=execution,
        defaults={
            "deadline": now + settings.IPS_FOLLOW_DEADLINE,
            "next_poll_at": now + follow_interval(1),
            "token": new_token(),
        },
    )
    if created:
        _schedule_next(follow)
    return follow


def follow_step(execution_id: int, token: str, now: dt.datetime | None = None) -> str:
    """One poll of a followed run; says what it did (for the worker's log and tests).

    The next step is scheduled before IPS is asked, so a worker that dies
    mid-poll loses nothing: the next step finds the lease expired and goes on.
    """
    now = now or timezone.now()
    with transaction.atomic():
        follow = RunFollow.objects.select_for_update().filter(pk=execution_id).first()
        if follow is None or follow.done_at is not None:
            return "done"
        if follow.token != token:
            return "stale"  # a duplicate of a chain that went on without it
        follow.token = new_token()
        if follow.lease_until is not None and follow.lease_until > now:
            # Another worker is polling this run right now: come back after it, or sooner
            # (a live poll ends long before its lease; a dead one's lease is what it takes).
            follow.next_poll_at = min(follow.lease_until, now + follow_interval(follow.polls + 1))
            follow.save(update_fields=["token", "next_poll_at"])
            _schedule_next(follow)
            return "leased"
        follow.polls += 1
        follow.lease_until = now + follow_lease()
        follow.next_poll_at = now + follow_interval(follow.polls + 1)
        follow.save(update_fields=["token", "polls", "lease_until", "next_poll_at"])
        _schedule_next(follow)
    execution = Execution.objects.select_related("job__company__connection").get(pk=execution_id)
    if execution.is_following:
        if now >= follow.deadline:
            record_no_result(execution)
            error = ""
        else:
            began = dt.datetime.now(dt.timezone.utc)
            status = run_status(execution)
            record_status(execution, status)
            error = english(lambda: status.error)
            # Inside the lease (taken above, released below): two of these never overlap for one run.
            log.info("follow of execution %s: asked IPS from %s to %s", execution_id,
                     began.isoformat(timespec="microseconds"),
                     dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"))
    else:
        error = ""
    with transaction.atomic():
        follow = RunFollow.objects.select_for_update().get(pk=execution_id)
        follow.lease_until = None
        follow.last_error = error
        execution.refresh_from_db()
        if not execution.is_following:
            follow.done_at = timezone.now()
        follow.save(update_fields=["lease_until", "last_error", "done_at"])
    return "finished" if follow.done_at else ("failed poll" if error else "polled")


def _schedule_next(follow: RunFollow) -> None:
    events.schedule(events.FOLLOW, follow.pk, follow.token, when=follow.next_poll_at)


def resume_follows() -> int:
    """Start again every follow whose chain was lost (a broker flushed, a backend swapped)."""
    count = 0
    for follow in RunFollow.objects.filter(done_at__isnull=True):
        with transaction.atomic():
            follow = RunFollow.objects.select_for_update().get(pk=follow.pk)
            if follow.done_at is not None:
                continue
            follow.token = new_token()
            follow.save(update_fields=["token"])
            _schedule_next(follow)
            count += 1
    return count


#: A browser's poll reads at most this many pages of logs for an unnamed run:
#: it must fit in a web worker's time (the background follow reads LOG_PAGES).
BROWSER_LOG_PAGES = 1


def observe_run(execution: Execution) -> RunStatus:
    """run_status(), and what it learns recorded on the audit row (a browser's poll)."""
    status = run_status(execution, log_pages=BROWSER_LOG_PAGES)
    if execution.is_following:
        record_status(execution, status)
    return status


def _stopped(execution: Execution, status: RunStatus) -> bool:
    if status.active is not None and status.active.state == "Stopping":
        return True
    if execution.ips_state == "Stopping":
        return True
    stops = Execution.objects.filter(
        operation="stopJob",
        job_id=execution.job_id,
        outcome=Outcome.ACCEPTED,
        requested_at__gte=execution.requested_at,
    )
    if execution.ips_run_handle:  # a stop of this very run, not of a later one
        stops = stops.filter(ips_run_handle=execution.ips_run_handle)
    return stops.exists()


def _result_of(log_: ips.JobLog, stopped: bool) -> str:
    if log_.fatal_error or log_.log_type == "FatalError":
        return IpsResult.FATAL
    if stopped:
        return IpsResult.STOPPED
    if log_.file_error_count:
        return IpsResult.ERRORS
    if log_.file_warning_count:
        return IpsResult.WARNINGS
    return IpsResult.OK


def record_status(execution: Execution, status: RunStatus) -> bool:
    """Write what IPS says of the run on its audit row; the final result once. Returns True if written."""
    if status.error:
        return False
    with transaction.atomic():
        row = Execution.objects.select_for_update().get(pk=execution.pk)
        if not row.is_following:
            return False  # another poll recorded the end first
        a, log_ = status.active, status.log
        if a is not None:
            row.ips_state = fit(Execution, "ips_state", a.state or "")  # IPS's words have no limit
            row.ips_progress = a.progress
            if not row.ips_run_handle and a.job_handle:
                row.ips_run_handle, row.ips_run_name = a.job_handle, a.name or ""
            row.ips_started_at = row.ips_started_at or a.start_date
        if log_ is not None:
            if not row.ips_run_handle and log_.job_handle:
                row.ips_run_handle, row.ips_run_name = log_.job_handle, log_.job_name or ""
            row.ips_log_type = fit(Execution, "ips_log_type", log_.log_type or "")
            row.ips_success_count = log_.file_success_count
            row.ips_warning_count = log_.file_warning_count
            row.ips_error_count = log_.file_error_count
            row.ips_duplicate_count = log_.file_duplicate_count
            row.ips_update_count = log_.file_update_count
            row.ips_total_count = log_.total_file_count
            row.ips_fatal = log_.fatal_error
            row.ips_started_at = log_.start_date or row.ips_started_at
        if status.finished:
            row.ips_ended_at = log_.end_date
            row.ips_state = "Done"
            row.ips_progress = 100 if not row.ips_fatal else row.ips_progress
            if row.ips_started_at and row.ips_ended_at:
                row.ips_runtime_ms = max(0, int((row.ips_ended_at - row.ips_started_at).total_seconds() * 1000))
            row.ips_result = _result_of(log_, _stopped(row, status))
            row.ips_result_at = timezone.now()
            # Inside the row lock that makes this writer the only one: once, after the commit.
            events.announce_run_ended(row.pk, row.ips_result)
        row.save(update_fields=sorted(Execution.IPS_FIELDS))
    if status.finished:
        log.info(
            "run of %r (execution %s, request %s) ended in IPS: %s",
            row.job_handle,
            row.pk,
            row.request_id,
            english(lambda: row.ips_result_label),
        )
    execution.refresh_from_db()
    return True


def record_no_result(execution: Execution) -> bool:
    """The follow's deadline passed without IPS saying how the run ended."""
    with transaction.atomic():
        row = Execution.objects.select_for_update().get(pk=execution.pk)
        if not row.is_following:
            return False
        row.ips_result = IpsResult.NO_RESULT
        row.ips_result_at = timezone.now()
        row.save(update_fields=sorted(Execution.IPS_FIELDS))
        events.announce_run_ended(row.pk, row.ips_result)
    log.warning("run of %r (execution %s): %s", row.job_handle, row.pk, english(lambda: row.ips_result_label))
    execution.refresh_from_db()
    return True

