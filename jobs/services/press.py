"""A press of an action on a job (run, stop, …): refused here, or sent to IPS, and audited either way.

Every press leaves one audit row, written before IPS is called and finished
after; ``finish()`` is the one writer of an audit row's outcome. What each
action sends is its row of the table in ``actions``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import events, ips, roles
from ..models import CompanyWatch, Execution, Job
from .base import RequestInfo, english

log = logging.getLogger(__name__)
Outcome = Execution.Outcome


@dataclass(frozen=True)
class RunResult:
    """What a press did, and what the user may be told of it."""

    execution: Execution
    #: May the user see the job itself (list it)? If not, say only the refusal.
    job_visible: bool
    #: IPS's address when calling it failed: for staff only, never in the message.
    where: str = ""
    #: What the user is told: the message given to finish(), lazy, so it reads in the
    #: request's language while the row keeps it in English. None: the row's own.
    said: object = None

    @property
    def outcome(self) -> str:
        return self.execution.outcome

    @property
    def message(self) -> str | Promise:
        return self.said if self.said is not None else self.execution.message



def interrupted_message(operation: str = "executeJob") -> Promise:
    # Whole sentences: the verb's place differs between languages.
    if operation == "stopJob":
        return _(
            "The server handling this press stopped before IPS answered. "
            "IPS may or may not have stopped the run: check its state before trying again."
        )
    if operation == "pauseJob":
        return _(
            "The server handling this press stopped before IPS answered. "
            "IPS may or may not have paused the job's schedule: check its state before trying again."
        )
    if operation == "resumeJob":
        return _(
            "The server handling this press stopped before IPS answered. "
            "IPS may or may not have resumed the job's schedule: check its state before trying again."
        )
    return _(
        "The server handling this press stopped before IPS answered. "
        "IPS may or may not have started the job: check its state before trying again."
    )


def finish(execution: Execution, outcome: str, message: str | Promise, error: ips.IpsError | None = None) -> bool:
    """The one way an audit row gets its outcome. Returns False if another process finished it first.

    A row is finished by its own run, by reconcile_stale() or by cron: the
    row lock and the re-read make the first of them win, once. A row never
    saved (refused before anything was sent) is simply written.
    """
    execution.outcome = outcome
    # The row is the record: English, whatever language the request speaks.
    with translation.override("en"):
        execution.message = str(message)
    if isinstance(error, ips.IpsFault):
        execution.fault_family = error.family
        execution.fault_code = error.code
        execution.fault_reason = error.reason
    execution.finished_at = timezone.now()
    start = execution.sent_at or execution.requested_at
    # A stored row's times are on the database's clock (AppendOnly.clock_offset), finished_at not yet.
    offset = execution.clock_offset() if execution.pk is not None else dt.timedelta(0)
    execution.duration_ms = max(0, int((execution.finished_at + offset - start).total_seconds() * 1000))
    if execution.pk is None:
        execution.save()
        return True
    try:
        # One UPDATE … WHERE outcome = 'sending': the first writer wins, without a lock or a read first.
        execution.save_if(outcome=Outcome.SENDING)
    except Execution.NotAsStored:
        stored = Execution.objects.filter(pk=execution.pk).values_list("outcome", flat=True).first()
        log.error(
            "run of %r (request %s) ended %s after its audit row %s was marked %s, which the row keeps",
            execution.job_handle,
            execution.request_id,
            outcome,
            execution.pk,
            stored,
        )
        return False
    return True


def reconcile_stale(job: Job | None = None, company=None) -> int:
    """Mark 'sending' rows of dead processes 'interrupted'; returns how many."""
    rows = Execution.objects.stale()
    if job is not None:
        rows = rows.filter(job=job)
    if company is not None:
        rows = rows.filter(company=company)
    count = 0
    for execution in rows:
        if finish(execution, Outcome.INTERRUPTED, interrupted_message(execution.operation)):
            log.warning(
                "execution %s (request %s) of job %r interrupted: no outcome after %s",
                execution.pk,
                execution.request_id,
                execution.job_handle,
                Execution.stale_after(),
            )
            count += 1
    return count


def _new_execution(job: Job, user, access: roles.Access, info: RequestInfo, operation="executeJob"):
    return Execution(
        role_from_ips=access.from_ips,
        role_read_at=access.read_at,
        operation=operation,
        job=job,
        company=job.company,
        company_handle=job.company.handle,
        job_handle=job.handle,
        job_name=job.name,
        user=user,
        username=user.get_username(),
        role=access.role or "",
        requested_at=timezone.now(),
        client_ip=info.client_ip,
        user_agent=info.user_agent[:512],
        request_id=info.request_id,
    )


# Outcomes where calling IPS went wrong: worth an operator's attention.
_FAILURES = {
    Outcome.REFUSED,
    Outcome.UNREACHABLE,
    Outcome.TIMED_OUT,
    Outcome.BAD_REPLY,
    Outcome.ERROR,
    Outcome.IPS_ERROR,
}


def _log_outcome(execution: Execution, error: ips.IpsError | None = None) -> None:
    """One log line per press, with the request id; the message (and IPS's address) when it did not go through."""
    accepted = execution.outcome == Outcome.ACCEPTED
    log.log(
        logging.WARNING if execution.outcome in _FAILURES else logging.INFO,
        "%s of %r in company %s by %s: %s %s (request %s)%s%s",
        execution.operation,
        execution.job_handle,
        execution.company_handle,
        execution.username,
        execution.outcome,
        execution.fault_label,
        execution.request_id,
        "" if accepted else f": {execution.message}",
        f" [IPS at {error.url}]" if error is not None and error.url else "",
    )



def press(action, job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Press ``action`` (a row of ``actions.ACTIONS``) on ``job`` for ``user``, whose ``access`` the caller resolved.

    The result says what the user may be told."""
    execution = _new_execution(job, user, access, info, operation=action.operation)
    visible = access.to("getScheduledJobs").allowed
    if not access.allowed:
        return _refused_here(execution, Outcome.DENIED, access.reason, visible)
    if job.is_gone:
        return _refused_here(
            execution,
            Outcome.JOB_GONE,
            format_lazy(
                _("“{job}” no longer exists in IPS (gone since the sync of {time}). Nothing was sent."),
                job=job.name, time=f"{timezone.localtime(job.gone_at):%Y-%m-%d %H:%M}",
            ),
            visible,
        )
    execution.outcome = Outcome.SENDING
    for attempt in (1, 2):
        try:
            # One transaction: the row takes the job's one in-flight slot (the partial unique index), and
            # only then the look for a press of unknown fate, which no press can begin or end meanwhile.
            with _atomic_flushed_by_the_next_commit():
                execution.save()
                doubt = _doubt(job) if action.operation == "executeJob" else None
        except IntegrityError:
            # Another press of this job is in flight, or was, in a process that died mid-call: its
            # row is marked interrupted (reconcile_stale) and this press tries once more.
            execution = _new_execution(job, user, access, info, operation=action.operation)
            if attempt == 1 and reconcile_stale(job):
                execution.outcome = Outcome.SENDING
                continue
            return _refused_here(execution, Outcome.ALREADY_RUNNING, _in_flight_message(job), visible)
        break
    if doubt is not None:
        # IPS may be running that press's run: a second executeJob could start the job twice. The
        # refusal's commit is a flushed one (and the row's insert with it).
        said = _uncertain_message(job, doubt)
        finish(execution, Outcome.ALREADY_RUNNING, said)
        _log_outcome(execution)
        events.announce_press_ended(execution.pk, execution.outcome, execution.operation)
        return RunResult(execution, visible, said=said)
    try:
        outcome, message, error = action.send(execution, job)
        with transaction.atomic():
            # The outcome and the watcher's wake in one commit (its run, or that there is none, is
            # found at the next look); a wake that fails must not take the outcome with it.
            _finish_sent(execution, outcome, message, error)
            events.announce_press_ended(execution.pk, execution.outcome, execution.operation)
            if execution.is_open:
                try:
                    with transaction.atomic():
                        CompanyWatch.objects.wake_now(job.company_id)
                except DatabaseError:
                    log.exception("the watcher of company %s was not woken: its run is found at its next look",
                                  job.company_id)
    except Superseded:
        # Taken for dead before it acted: nothing was sent, the row says so already.
        execution.refresh_from_db()
        log.warning("%s of %r (request %s) was taken for dead before it acted: nothing sent",
                    action.operation, execution.job_handle, execution.request_id)
        # reconcile_stale()'s words, in the user's language when the row holds them.
        interrupted = interrupted_message(action.operation)
        said = interrupted if execution.message == english(lambda: interrupted) else None
        return RunResult(execution, visible, said=said)
    except BaseException:
        # A bug, a database that failed the finish, or gunicorn's worker timeout
        # (SystemExit): never leave our own row 'sending' (as the database holds it: the
        # outcome's commit may have failed after the instance took the outcome), and never
        # claim to know what IPS did.
        with contextlib.suppress(Exception):
            row = Execution.objects.filter(pk=execution.pk, outcome=Outcome.SENDING).first()
            if row is not None:
                finish(row, Outcome.INTERRUPTED, interrupted_message(action.operation))
        raise
    _log_outcome(execution, error)
    return RunResult(execution, visible, where=error.url if error is not None else "", said=message)


@contextlib.contextmanager
def _atomic_flushed_by_the_next_commit():
    """A transaction whose commit is not waited on to reach the disk: the press's next commit
    (sent_at, before executeJob; else its outcome) flushes it with its own, the database's log being
    one file written in order.

    Saves a press one fsync. Whatever IPS may act on is on disk before executeJob goes, as before;
    a crash of this process loses nothing (the database has the row). Only a crash of the database
    server (or the machine) between the two commits could lose the row, and then the next commit
    fails with it and nothing is sent to IPS: an attempt that never left is all that can go."""
    connection = transaction.get_connection()
    # Inside a caller's transaction its commit decides (and SQLite refuses the change there).
    outermost = not connection.in_atomic_block
    sqlite = connection.vendor == "sqlite" and outermost
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: written at commit, synced by the next FULL one
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")  # this transaction only
            yield
    finally:
        if sqlite:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous = FULL")  # as settings.DATABASES' OPTIONS open it


def _doubt(job: Job) -> Execution | None:
    """The job's latest press of unknown fate (IPS may be running its run), if any."""
    # Its id first (every press asks; there is rarely one), the row only when there is.
    pk = Execution.objects.uncertain().filter(job=job).order_by("-requested_at").values_list("pk", flat=True).first()
    return None if pk is None else Execution.objects.get(pk=pk)


def _refused_here(execution: Execution, outcome: str, message: Promise, visible: bool) -> RunResult:
    """A press that ends before anything is sent to IPS."""
    finish(execution, outcome, message)
    _log_outcome(execution)
    events.announce_press_ended(execution.pk, execution.outcome, execution.operation)
    return RunResult(execution, visible, said=message)


def _uncertain_message(job: Job, doubt: Execution) -> Promise:
    return format_lazy(
        _(
            "Nothing was sent: the press of “{job}” by {user} at {since} ended without IPS saying whether it "
            "started the job ({outcome}). The dashboard is checking IPS's own logs and offers Run again as soon "
            "as it knows, within about {seconds} s."
        ),
        job=job.name,
        user=doubt.username,
        since=f"{timezone.localtime(doubt.requested_at):%Y-%m-%d %H:%M:%S}",
        outcome=doubt.get_outcome_display(),
        seconds=int(settings.IPS_WATCH_INTERVAL + settings.IPS_WATCH_GRACE.total_seconds()),
    )


def _in_flight_message(job: Job) -> Promise:
    other = Execution.objects.filter(job=job, outcome=Outcome.SENDING).first()
    if other is None:
        return format_lazy(
            _("“{job}” has a press on its way to IPS. Nothing was sent: wait for that to finish."), job=job.name
        )
    # Whole sentences: the verb's place differs between languages.
    if other.operation == "stopJob":
        text = _(
            "“{job}” is already being stopped by {user} (since {since}). Nothing was sent. "
            "If that server stopped before IPS answered, Run and Stop are offered again from {again}."
        )
    elif other.operation == "pauseJob":
        text = _(
            "“{job}” is already being paused by {user} (since {since}). Nothing was sent. "
            "If that server stopped before IPS answered, its actions are offered again from {again}."
        )
    elif other.operation == "resumeJob":
        text = _(
            "“{job}” is already being resumed by {user} (since {since}). Nothing was sent. "
            "If that server stopped before IPS answered, its actions are offered again from {again}."
        )
    else:
        text = _(
            "“{job}” is already being started by {user} (since {since}). Nothing was sent. "
            "If that server stopped before IPS answered, Run and Stop are offered again from {again}."
        )
    again = timezone.localtime(other.requested_at + Execution.stale_after())
    return format_lazy(
        text,
        job=job.name,
        user=other.username,
        since=f"{timezone.localtime(other.requested_at):%H:%M:%S}",
        again=f"{again:%H:%M:%S}",
    )


def _finish_sent(execution: Execution, outcome: str, message: Promise, error) -> None:
    try:
        finish(execution, outcome, message, error)
    except Exception:
        log.exception(
            "IPS answered %s for %r (request %s) but the audit row %s could not be updated",
            outcome,
            execution.job_handle,
            execution.request_id,
            execution.pk,
        )
        raise


class Superseded(Exception):
    """The press's row was finished by another process (taken for dead) before it acted."""


def mark_sent(execution: Execution, ips_clock_at: dt.datetime | None = None) -> None:
    """The action itself (not the look at getActiveJobs before it) goes to IPS now, unless
    another process already took this press for dead and finished its row. ``ips_clock_at``:
    IPS's own time as it answered the look (its Date header), if it said."""
    execution.sent_at = timezone.now()
    execution.ips_clock_at = ips_clock_at
    try:
        # One UPDATE … WHERE outcome = 'sending': nothing goes to IPS for a row already finished.
        execution.save_if(update_fields=["sent_at", "ips_clock_at"], outcome=Outcome.SENDING)
    except Execution.NotAsStored:
        raise Superseded() from None
