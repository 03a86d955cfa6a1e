"""One watcher per company: every run IPS makes, recorded once, whoever started it.

A look at a company asks IPS once for what it is running (getActiveJobs) and
reads its job logs from where the last look stopped (getJobLogs by start
date, with an overlap, paged), then the final log of each run that ended by
its own handle (getJobLogDetails). What it learns is written on the audit
trail: a run pressed here on its press's row, any other run on a row of its
own (``started_by``: IPS schedule or another client). Pages and polls read
those rows, never IPS; IPS's load grows with companies, not with runs or tabs.

Nothing depends on a chain of tasks: the watcher processes (``manage.py
watch_ips``) take whichever company is due under a lease that ends by
itself, so a process killed mid-look is replaced once its lease ends, and a
run IPS started is found from IPS's own logs whatever happened to its press,
its worker or the queue. Run times are compared in IPS's clock only (log
start dates, and the Date of IPS's replies), never with the dashboard's.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.utils import timezone

from .. import events, ips, metrics
from ..models import Company, CompanyWatch, Execution, Job, MissedRun
from .base import english, fit
from .press import reconcile_stale
from .sync import NOT_FIRING, fires, sync_company

log = logging.getLogger(__name__)
Outcome = Execution.Outcome
IpsResult = Execution.IpsResult
StartedBy = Execution.StartedBy

#: getJobLogs rows asked for at once, and how many pages one look reads (the rest: the next look).
LOG_PAGE_ROWS = 100
LOG_PAGES = 5
#: Logs asked for at once when a whole page started in the same instant.
TIE_ROWS = 1000
#: An instant, as IPS's dateTime carries it (milliseconds).
TIE_WIDTH = dt.timedelta(milliseconds=1)
#: Final logs read by handle in one look (runs that ended); more wait for the next look.
ENDS_PER_LOOK = 20
#: IPS calls one look may make: getActiveJobs, the log pages, the final logs.
MAX_CALLS = 1 + 2 * LOG_PAGES + ENDS_PER_LOOK
#: The Date header counts whole seconds: a run of a press may start within it.
DATE_RESOLUTION = dt.timedelta(seconds=1)


def interval(busy: bool) -> dt.timedelta:
    """The wait before a company's next look: short while IPS runs something the dashboard watches."""
    return dt.timedelta(seconds=settings.IPS_WATCH_INTERVAL if busy else settings.IPS_WATCH_IDLE_INTERVAL)


def lease_length() -> dt.timedelta:
    """A lease covers one IPS call at its deadline (renewed before each): a dead watcher's ends soon."""
    per_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
    return dt.timedelta(seconds=per_call + settings.IPS_WATCH_LEASE_MARGIN)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


# ------------------------------------------------------------------ scheduling
def ensure_watches(now: dt.datetime | None = None) -> int:
    """A watch row for every company (new ones are due now); returns how many were added."""
    now = now or timezone.now()
    missing = Company.objects.filter(watch__isnull=True).values_list("pk", flat=True)
    rows = [CompanyWatch(company_id=pk, next_look_at=now, next_sync_at=now) for pk in missing]
    CompanyWatch.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def claim(company_id: int, owner: str, now: dt.datetime) -> CompanyWatch | None:
    """Take the company's lease if it is due and free (compare-and-set: one winner on any database)."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    won = CompanyWatch.objects.filter(Q(pk=company_id, next_look_at__lte=now) & free).update(
        lease_owner=owner, lease_until=now + lease_length()
    )
    return CompanyWatch.objects.select_related("company__connection").get(pk=company_id) if won else None


def _renew(watch: CompanyWatch, owner: str) -> bool:
    """Extend the lease before an IPS call; False if another watcher took the company meanwhile."""
    now = timezone.now()
    return bool(CompanyWatch.objects.filter(pk=watch.pk, lease_owner=owner).update(lease_until=now + lease_length()))


def due_companies(now: dt.datetime, limit: int = 100) -> list[int]:
    return list(
        CompanyWatch.objects.filter(next_look_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_look_at")
        .values_list("pk", flat=True)[:limit]
    )


def watch_round(owner: str | None = None, now: dt.datetime | None = None, stop=None) -> list[LookResult]:
    """Look at every company that is due and free: one round of a watcher process. ``stop``: a
    threading.Event checked between looks (a stopping watcher finishes the look in hand, no more)."""
    owner = owner or default_owner()
    now = now or timezone.now()
    ensure_watches(now)
    results = []
    for company_id in due_companies(now):
        if stop is not None and stop.is_set():
            break
        watch = claim(company_id, owner, timezone.now())
        if watch is not None:
            results.append(look(watch, owner, now))
    return results


def seconds_to_next(now: dt.datetime | None = None) -> float:
    """How long a watcher process may sleep before something is due (at most a second: new work wakes it)."""
    now = now or timezone.now()
    nxt = CompanyWatch.objects.next_due()
    if nxt is None:
        return 1.0
    return max(0.0, min(1.0, (nxt - now).total_seconds()))


# ------------------------------------------------------------------------ look
@dataclass
class LookResult:
    company: Company
    asked: int = 0  # IPS calls made
    found: int = 0  # runs found in IPS that had no row: new rows
    matched: int = 0  # runs found that a press here started
    ended: int = 0  # results recorded
    missed: int = 0  # missed runs recorded (services.watch.check_missed)
    synced: bool = False
    error: str = ""
    lost_lease: bool = False
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        text = (f"company {self.company.handle}: {self.asked} IPS calls, {self.found} runs found, "
                f"{self.matched} matched to presses, {self.ended} ended")
        text += f", {self.missed} missed runs recorded" if self.missed else ""
        return text + (f"; failed: {self.error}" if self.error else "")


class _LeaseLost(Exception):
    pass


def look(watch: CompanyWatch, owner: str, now: dt.datetime | None = None) -> LookResult:
    """One look at one company (its lease held): ask IPS, record what it says, set the next look."""
    now = now or timezone.now()
    company = watch.company
    result = LookResult(company)
    busy = True
    try:
        if watch.next_sync_at is None or watch.next_sync_at <= now:
            _sync(watch, owner, result, now)
        busy = _look(watch, owner, result, now)
    except _LeaseLost:
        result.lost_lease = True
        log.warning("watch of company %s: another watcher took it over mid-look", company.handle)
        return result
    except ips.IpsError as error:
        result.error = str(error)
        log.warning("watch of company %s: IPS could not be asked: %s", company.handle, error)
    except Exception as error:  # one company's bug must not stop the others
        result.error = f"{type(error).__name__}: {error}"
        log.exception("watch of company %s failed", company.handle)
    finished = timezone.now()
    values = {
        "lease_owner": "",
        "lease_until": None,
        "last_look_at": finished,
        # A failed look, or what failed in a look that went on (one run's log).
        "last_error": result.error or "; ".join(result.notes)[:2000],
        "next_look_at": finished + interval(busy or bool(result.error)),
        "looks": F("looks") + 1,
    }
    if not result.error:
        values["last_ok_at"] = finished
    CompanyWatch.objects.filter(pk=watch.pk, lease_owner=owner).update(**values)
    if result.ended or result.found or result.error or result.missed:
        log.info("watch: %s", result)
    return result


def _sync(watch: CompanyWatch, owner: str, result: LookResult, now: dt.datetime) -> None:
    if not _renew(watch, owner):
        raise _LeaseLost()
    outcome = sync_company(watch.company)
    result.asked += 1
    result.synced = not outcome.error
    every = watch.company.connection.sync_interval
    CompanyWatch.objects.filter(pk=watch.pk, lease_owner=owner).update(next_sync_at=timezone.now() + every)


def _ask(watch, owner, result, call):
    if not _renew(watch, owner):
        raise _LeaseLost()
    result.asked += 1
    return call()


def _look(watch: CompanyWatch, owner: str, result: LookResult, now: dt.datetime) -> bool:
    """Returns whether the company is busy (something to watch closely at the next look).

    Only getActiveJobs and getJobLogs failing fail the look; one run's final log failing is that
    run's (noted, asked again next look), never the company's."""
    company = watch.company
    client = ips.client_for(company.connection)
    active = _ask(watch, owner, result, lambda: client.get_active_jobs(company.handle))
    ips_now = client.reply_date()
    local_now = timezone.now()
    offset = (ips_now - local_now) if ips_now is not None else _offset(watch)
    ips_now = ips_now or (local_now + offset)

    waiting = Execution.objects.open_runs().filter(company=company, ips_run_handle="")
    deadline = local_now - settings.IPS_FOLLOW_DEADLINE
    for row in waiting.filter(requested_at__lt=deadline):
        result.ended += _no_result(row)  # older than any run IPS could still tell of (rows from before the watcher)
    waiting = waiting.filter(requested_at__gte=deadline)
    since = _since(watch, list(waiting), offset, ips_now)
    logs, cursor, resume = [], watch.log_cursor, None
    for page_no in range(LOG_PAGES):
        page = _ask(watch, owner, result, lambda s=since: client.get_job_logs(
            company.handle, sort_by="StartDate", sort_direction="Ascending", start_date=s, num_rows=LOG_PAGE_ROWS,
        ))
        logs.extend(page)
        # Never past IPS's own now: one log dated in the future must not hide the runs that follow.
        starts = [p.start_date for p in page if p.start_date is not None and p.start_date < ips_now + DATE_RESOLUTION]
        if starts:
            cursor = max(cursor, max(starts)) if cursor else max(starts)
        if len(page) < LOG_PAGE_ROWS or not starts:
            break
        if max(starts) <= since:
            # A whole page started in one instant: that instant alone, in a bigger page, then past it
            # (getJobLogs pages only by start date; there is no offset to ask for).
            tie = _ask(watch, owner, result, lambda s=since: client.get_job_logs(
                company.handle, sort_by="StartDate", sort_direction="Ascending", start_date=s,
                end_date=s + TIE_WIDTH, num_rows=TIE_ROWS,
            ))
            logs.extend(tie)
            if len(tie) >= TIE_ROWS:
                log.warning("watch of company %s: %s runs or more started at %s; some may be missed",
                            company.handle, TIE_ROWS, since.isoformat())
            since = since + TIE_WIDTH
        else:
            since = max(starts)
        if page_no == LOG_PAGES - 1:
            resume = since  # more to read than one look reads: the next one goes on from here

    runs = _runs_seen(active, logs)
    jobs = list(Job.objects.filter(company=company))
    if not result.synced and any(_job_of(seen, jobs) is None for seen in runs.values()):
        # A run of a job the catalogue does not have yet: sync first, so it is recorded as its job's.
        _sync(watch, owner, result, now)
        jobs = list(Job.objects.filter(company=company))
    # A press whose process died is finished here (interrupted: IPS may have started its run), never
    # left 'sending' to hold its job's runs back until someone presses again.
    reconcile_stale(company=company)
    # Read after IPS was asked, presses in flight before unnamed ones: a press that was 'sending' when its
    # run showed in IPS is in one list or the other, never in neither (it is accepted in between).
    # Only a press whose executeJob may be on the wire (sent_at is written before it goes) can own a run:
    # job -> the earliest its run can have started, in IPS's clock.
    in_flight: dict[int, dt.datetime] = {}
    for press in Execution.objects.filter(
        company=company, operation="executeJob", outcome=Outcome.SENDING, sent_at__isnull=False
    ):
        at = _earliest_start(press, offset)
        in_flight[press.job_id] = min(at, in_flight.get(press.job_id, at))
    unnamed = sorted(waiting.all(), key=lambda r: (r.requested_at, r.pk))
    by_handle = {r.ips_run_handle: r for r in Execution.objects.filter(
        company=company, operation="executeJob", ips_run_handle__in=list(runs)
    ).exclude(ips_run_handle="")}  # the exclude lets PostgreSQL use execution_one_row_per_ips_run
    stops = _stopped_runs(company, [*runs, *(r.ips_run_handle for r in Execution.objects.open_runs().filter(
        company=company).exclude(ips_run_handle=""))])
    service_account = (company.connection.username or "").lower()
    deferred: list[dt.datetime] = []
    for handle, seen in sorted(runs.items(), key=lambda kv: (kv[1].start or dt.datetime.max.replace(tzinfo=dt.UTC))):
        _fence(watch, owner)
        row = by_handle.get(handle)
        found_now = False
        if row is None:
            job = _job_of(seen, jobs)
            press = _press_for(seen, job, unnamed, offset, service_account)
            if press is not None:
                row = _name(press, seen)
                unnamed.remove(press)
                if row is None:
                    continue  # the press was named with another run meanwhile: this one is decided next look
                result.matched += 1
            elif job is not None and job.pk in in_flight and (seen.start is None or seen.start >= in_flight[job.pk]):
                # A press of this job is on its way and this run may be its: decided at the next look,
                # which reads the logs from before it again.
                deferred.append(seen.start or ips_now)
                continue
            else:
                row = _new_row(company, job, seen, offset)
                if row is None:
                    continue
                result.found += 1
                found_now = True
        if not row.is_open:
            continue
        if _record(client, watch, owner, result, row, seen, handle in stops, found_now=found_now):
            result.ended += 1

    # Named runs IPS no longer lists that the log pages did not reach (long runs): their final log by handle.
    listed = {a.job_handle for a in active if a.state != "Done"}
    for row in Execution.objects.open_runs().filter(company=company).exclude(ips_run_handle=""):
        if row.ips_run_handle in runs or row.ips_run_handle in listed:
            continue
        if result.asked >= MAX_CALLS:
            break  # the rest at the next look
        final = _final_log(client, watch, owner, result, row.ips_run_handle)
        if final is _FAILED:
            continue
        if final is not None and _record(client, watch, owner, result, row, _Seen(row.ips_run_handle, log=final),
                                         row.ips_run_handle in stops):
            result.ended += 1
        elif final is None and timezone.now() >= row.requested_at + settings.IPS_FOLLOW_DEADLINE:
            result.ended += _no_result(row)

    # Presses no run was found for: past the grace in IPS's clock, IPS did not start them.
    for row in unnamed:
        if ips_now < _latest_start(row, offset) + settings.IPS_WATCH_GRACE:
            continue
        if row.outcome != Outcome.ACCEPTED:
            result.ended += _not_started(row)
        elif timezone.now() >= row.requested_at + settings.IPS_FOLLOW_DEADLINE:
            result.ended += _no_result(row)

    if resume is None and not deferred:
        # Only after a look that read every run IPS started up to now: a run not read yet is not missed.
        _fence(watch, owner)
        result.missed = check_missed(company, ips_now, busy_jobs={*in_flight, *(r.job_id for r in unnamed)},
                                     offset=offset, confirm=None if result.synced else (
                                         lambda: _sync(watch, owner, result, now) or result.synced))

    if deferred and cursor is not None:
        cursor = min(cursor, min(deferred))  # never past a run left for the next look
    fields = {"ips_offset_ms": int(offset.total_seconds() * 1000), "log_resume": resume}
    if cursor is not None and (watch.log_cursor is None or cursor > watch.log_cursor or deferred):
        fields["log_cursor"] = cursor
    CompanyWatch.objects.filter(pk=watch.pk, lease_owner=owner).update(**fields)
    still_open = Execution.objects.open_runs().filter(company=company).exists()
    return bool(listed) or still_open or bool(deferred) or bool(in_flight) or resume is not None


# ---------------------------------------------------------------- missed runs
def check_missed(company: Company, ips_now: dt.datetime, busy_jobs=(),
                 offset: dt.timedelta = dt.timedelta(0), confirm=None) -> int:
    """Clear the company's missed runs a run has come for, then record the fire times that passed,
    plus their job's grace, with no run; returns how many were recorded. All on IPS's clock.

    The fire time checked is the job's ``expected_fire_at`` (set by sync from IPS's next fire time,
    kept until accounted for here): a run of the job that started from it to its grace's end accounts
    for it; else it was missed. Either way the job then expects its next fire time as last synced, if
    later, else whatever the next sync says. IPS tells one next fire time, so a job that fires more
    often than the sync looks is checked at the fire times sync sees. ``busy_jobs``: jobs with a press
    whose run is not found yet (it may be the one), checked at a later look. A job paused here at its
    fire time (its last Pause or Resume accepted before it was a Pause) missed nothing, even when resumed
    before a look saw it paused. ``offset``: IPS's clock less the dashboard's. Two reads a look, whatever
    the number of jobs (only those due are read); writes only for what changed. ``confirm``: called once
    before the first miss is recorded, to read the catalogue from IPS now (a schedule changed, or paused
    in IPS itself, since the last sync is no miss); False: nothing is recorded at this look."""
    runs = Execution.objects.filter(operation="executeJob", ips_started_at__isnull=False)
    # 1. A run of the job that started at or after the missed fire time clears it (the earliest such).
    clearing = runs.filter(job=OuterRef("job"), ips_started_at__gte=OuterRef("fire_time")).order_by(
        "ips_started_at", "pk").values("pk")[:1]
    for missed in MissedRun.objects.filter(company=company, cleared_at__isnull=True).annotate(
        run=Subquery(clearing)
    ).exclude(run=None):
        MissedRun.objects.filter(pk=missed.pk, cleared_at__isnull=True).update(
            cleared_at=ips_now, cleared_by_execution_id=missed.run
        )
    # 2. The fire times whose grace has ended.
    recorded = 0
    grace_ended = ExpressionWrapper(F("expected_fire_at") + F("missed_grace"), output_field=DateTimeField())
    due = Job.objects.filter(company=company, expected_fire_at__isnull=False).alias(grace_ended=grace_ended).filter(
        Q(grace_ended__lte=ips_now) | Q(is_gone=True) | Q(trigger_state__in=NOT_FIRING)  # (job_expected_fire)
    ).annotate(
        ran=Exists(runs.filter(job=OuterRef("pk"), ips_started_at__gte=OuterRef("expected_fire_at"),
                               ips_started_at__lte=ExpressionWrapper(
                                   OuterRef("expected_fire_at") + OuterRef("missed_grace"),
                                   output_field=DateTimeField()))),
        # The job's last Pause or Resume accepted before its fire time (the dashboard's clock).
        paused_by=Subquery(Execution.objects.filter(
            job=OuterRef("pk"), operation__in=("pauseJob", "resumeJob"), outcome=Outcome.ACCEPTED,
            requested_at__lte=ExpressionWrapper(OuterRef("expected_fire_at") - offset, output_field=DateTimeField()),
        ).order_by("-requested_at", "-pk").values("operation")[:1]),
    )
    for job in due:
        fire = job.expected_fire_at
        if job.is_gone or not fires(job.trigger_state):
            _expect_next(job, fire, None)  # paused or gone meanwhile: nothing to miss
            continue
        if job.pk in busy_jobs or ips_now < fire + job.missed_grace:
            continue
        if not job.ran and job.paused_by != "pauseJob":
            if confirm is not None:
                # Read from IPS first, then checked again on what it says (once a look).
                return recorded + (check_missed(company, ips_now, busy_jobs, offset) if confirm() else 0)
            if _record_missed(job, fire, ips_now):
                recorded += 1
        following = job.next_fire_time if job.next_fire_time and job.next_fire_time > fire else None
        _expect_next(job, fire, following)
    return recorded


def _expect_next(job: Job, fire: dt.datetime, following: dt.datetime | None) -> None:
    # Compare-and-set: a sync (or another watcher) that moved it meanwhile wins.
    Job.objects.filter(pk=job.pk, expected_fire_at=fire).update(expected_fire_at=following)


def _record_missed(job: Job, fire: dt.datetime, ips_now: dt.datetime) -> bool:
    """One MissedRun per outage: while one of the job's is open, a later missed fire time is counted on
    it (a job due every minute, held back for an hour, is one event, not sixty). Returns whether a new
    one was recorded (and announced, after the commit)."""
    with transaction.atomic():
        open_ = MissedRun.objects.select_for_update().filter(job=job, cleared_at__isnull=True).first()
        if open_ is not None:
            if fire > open_.last_fire_time:
                MissedRun.objects.filter(pk=open_.pk).update(last_fire_time=fire, fires_missed=F("fires_missed") + 1)
            return False
        try:
            with transaction.atomic():
                missed = MissedRun.objects.create(job=job, company_id=job.company_id, fire_time=fire,
                                                  last_fire_time=fire, detected_at=ips_now)
        except IntegrityError:
            return False  # recorded already: by another watcher (missedrun_once_per_fire), or cleared since
        events.announce_run_missed(missed.pk)
    log.warning("job %r of company %s: no run in IPS for its fire time %s (missed run %s)", job.handle,
                job.company_id, fire.isoformat(), missed.pk)
    return True


def _fence(watch: CompanyWatch, owner: str) -> None:
    """Before writing: still this watcher's company (a slow look whose lease ended writes nothing more)."""
    if not _renew(watch, owner):
        raise _LeaseLost()


_FAILED = object()


def _final_log(client, watch, owner, result, handle):
    """A run's final log by its handle; _FAILED (noted on the look) when IPS could not give it this time."""
    try:
        return _ask(watch, owner, result, lambda: _log_by_handle(client, watch.company.handle, handle))
    except ips.IpsError as error:
        result.notes.append(f"the log of run {handle!r} could not be read ({error})")
        log.warning("watch of company %s: the log of run %r could not be read: %s", watch.company.handle, handle,
                    error)
        return _FAILED


def _stopped_runs(company: Company, handles) -> set[str]:
    """The runs among ``handles`` a Stop pressed here was accepted for (one query a look)."""
    handles = [h for h in set(handles) if h]
    if not handles:
        return set()
    return set(
        Execution.objects.filter(
            operation="stopJob", company=company, outcome=Outcome.ACCEPTED, ips_run_handle__in=handles
        ).values_list("ips_run_handle", flat=True)
    )


def _offset(watch: CompanyWatch) -> dt.timedelta:
    return dt.timedelta(milliseconds=watch.ips_offset_ms or 0)


def _since(watch: CompanyWatch, open_rows, offset: dt.timedelta, ips_now: dt.datetime) -> dt.datetime:
    """Where this look reads the logs from (IPS's clock): the last look's newest start, less the overlap,
    and never after the earliest press still waiting for its run."""
    overlap = settings.IPS_WATCH_LOG_OVERLAP
    if watch.log_resume is not None:
        since = watch.log_resume  # the last look stopped at its page limit: on from there
    elif watch.log_cursor is not None:
        since = watch.log_cursor - overlap
    else:
        since = ips_now - settings.IPS_WATCH_BACKFILL
    for row in open_rows:
        # A press still in its window pins the start; one past it no longer can be matched anyway.
        if not row.ips_run_handle and ips_now < _latest_start(row, offset) + settings.IPS_WATCH_GRACE:
            since = min(since, _earliest_start(row, offset) - DATE_RESOLUTION)
    return since


@dataclass
class _Seen:
    """One IPS run as this look saw it: in getActiveJobs, in the logs, or both."""

    handle: str
    active: ips.ActiveJob | None = None
    log: ips.JobLog | None = None

    @property
    def start(self) -> dt.datetime | None:
        return (self.log and self.log.start_date) or (self.active and self.active.start_date)

    @property
    def name(self) -> str:
        return (self.active and self.active.name) or (self.log and self.log.job_name) or ""

    @property
    def original(self) -> str:
        return (self.active and self.active.original_name) or (self.log and self.log.original_job_name) or ""

    @property
    def submit_user(self) -> str:
        return (self.log and self.log.submit_user_email) or (self.active and self.active.submit_user_email) or ""


def _runs_seen(active, logs) -> dict[str, _Seen]:
    runs: dict[str, _Seen] = {}
    for a in active:
        if a.job_handle:
            runs.setdefault(a.job_handle, _Seen(a.job_handle)).active = a
    for entry in logs:
        if entry.job_handle:
            seen = runs.setdefault(entry.job_handle, _Seen(entry.job_handle))
            # The overlap reads a log twice: keep the fullest (final) one.
            if seen.log is None or (entry.is_final and not seen.log.is_final):
                seen.log = entry
    return runs


def _job_of(seen: _Seen, jobs: list[Job]) -> Job | None:
    """The scheduled job a run is of: by the name IPS gives it, else by the run-name pattern
    "<job name>_<timestamp>" (logs before 4.0 carry no originalJobName); the longest name wins."""
    if seen.original:
        named = [j for j in jobs if j.name == seen.original]
        if named:
            return next((j for j in named if not j.is_gone), named[0])
    candidates = [j for j in jobs if seen.name == j.name or seen.name.startswith(f"{j.name}_")]
    return max(candidates, key=lambda j: len(j.name), default=None)


def _earliest_start(row: Execution, offset: dt.timedelta) -> dt.datetime:
    """The earliest a press's run can have started, in IPS's clock: IPS's Date before it was sent."""
    if row.ips_clock_at is not None:
        # The Date comes from IPS's front server, run starts from its job server: the slack covers both.
        return row.ips_clock_at - settings.IPS_WATCH_CLOCK_SLACK
    sent = row.sent_at or row.requested_at
    return sent + offset - DATE_RESOLUTION - settings.IPS_WATCH_CLOCK_SLACK


def _latest_start(row: Execution, offset: dt.timedelta) -> dt.datetime:
    """The latest it can have started: when IPS answered, or, with no answer, the end of the call's deadline."""
    start = _earliest_start(row, offset)
    sent = row.sent_at or row.requested_at
    if row.finished_at is not None:
        took = row.finished_at - sent
    else:
        took = dt.timedelta(seconds=settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT)
    return start + max(took, dt.timedelta(0)) + DATE_RESOLUTION + settings.IPS_WATCH_CLOCK_SLACK


def _press_for(seen: _Seen, job: Job | None, unnamed: list[Execution], offset: dt.timedelta,
               service_account: str = "") -> Execution | None:
    """The press here that started this run, if any: of its job, sent before it began and answered after
    (IPS's clock); never a run that began before the press was sent. A press of unknown fate may have
    been acted on by IPS long after it gave up: a run of the dashboard's own account after it is its."""
    if job is None or seen.start is None:
        return None
    ours = bool(service_account) and seen.submit_user.lower() == service_account
    for row in unnamed:
        if row.job_id != job.pk or row.sent_at is None:
            continue
        if seen.start < _earliest_start(row, offset):
            continue
        if seen.start <= _latest_start(row, offset) or (ours and row.outcome != Outcome.ACCEPTED):
            return row
    return None


def _name(row: Execution, seen: _Seen) -> Execution | None:
    """Name the press's row with its run (once; the row lock makes one writer win). None: the row is
    named with another run (a slower watcher got there first), so this run is not its."""
    with transaction.atomic():
        locked = Execution.objects.select_for_update().get(pk=row.pk)
        if not locked.ips_run_handle and locked.is_open:
            locked.ips_run_handle = seen.handle
            locked.ips_run_name = seen.name
            locked.ips_started_at = seen.start
            locked.save(update_fields=["ips_run_handle", "ips_run_name", "ips_started_at"])
    return locked if locked.ips_run_handle == seen.handle else None


def _new_row(company: Company, job: Job | None, seen: _Seen, offset: dt.timedelta) -> Execution | None:
    """A run nobody pressed here: a row of its own, born from what IPS says of it."""
    submit = seen.submit_user or ""
    by = StartedBy.SCHEDULE if job is not None and submit.lower() == (job.submit_user_email or "").lower() \
        else StartedBy.OTHER
    row = Execution(
        operation="executeJob",
        started_by=by,
        job=job,
        company=company,
        company_handle=company.handle,
        job_handle=job.handle if job is not None else "",
        job_name=job.name if job is not None else (seen.original or seen.name),
        username=fit(Execution, "username", submit),
        outcome=Outcome.ACCEPTED,
        requested_at=timezone.now(),
        request_id="",
        ips_run_handle=seen.handle,
        ips_run_name=seen.name,
        ips_started_at=seen.start,
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        return None  # another watcher recorded it first (execution_one_row_per_ips_run)
    return row


def _log_by_handle(client: ips.IpsClient, company_handle: str, run_handle: str) -> ips.JobLog | None:
    """A run's log as getJobLogDetails has it (endDate in every version), or None."""
    paging = {"records_per_page": 1} if client.declares("getJobLogDetails", "recordsPerPage") else {}
    try:
        found = client.get_job_log_details(company_handle, job_handle=run_handle, **paging)
    except ips.IpsApiFault as fault:
        if fault.code != 30001:
            raise  # IPS failed: the look failed, and the next one asks again
        # IPS no longer knows the handle (30001 INVALID_PARAMETER): this run has no log to read,
        # the company's others do.
        log.warning("watch: IPS has no log for run %r (%s)", run_handle, fault)
        return None
    for detailed in found:
        if detailed.job_handle == run_handle:
            return detailed
    return None


def _record(client, watch, owner, result, row: Execution, seen: _Seen, stopped: bool = False,
            found_now: bool = False) -> bool:
    """Write what IPS says of the run; its result once it is over. Returns True when it ended now.
    ``found_now``: its row was made by this look (a run IPS started, first seen now)."""
    a, log_ = seen.active, seen.log
    running = a is not None and a.state != "Done"
    if not running and (log_ is None or not log_.is_final) and result.asked < MAX_CALLS:
        # Not listed as running, and its log has no end yet (before 4.0 getJobLogs never fills it).
        final = _final_log(client, watch, owner, result, seen.handle)
        if final is not _FAILED:
            log_ = final or log_
    finished = not running and log_ is not None and log_.is_final
    _fence(watch, owner)
    ended = _write(row, a, log_, finished, stopped)
    if ended and log_.end_date and (not found_now or _ended_since_last_look(watch, log_.end_date)):
        ips_now = client.ips_now()
        if ips_now is not None:  # the follow's lag, both ends on IPS's clock (jobs/metrics.py)
            metrics.safely(metrics.observe_follow_lag, (ips_now - log_.end_date).total_seconds())
    return ended


def _ended_since_last_look(watch: CompanyWatch, end: dt.datetime) -> bool:
    """A run first seen by this look counts in the follow lag only if it ended after the company's last look
    that went through (on IPS's clock): one the watcher could have seen end. The runs a first look reads back
    (IPS_WATCH_BACKFILL_HOURS: a company just added, a first deploy) ended hours before anyone watched."""
    return watch.last_ok_at is not None and end > watch.last_ok_at + _offset(watch)


def _write(row: Execution, a, log_, finished: bool, stopped: bool = False) -> bool:
    with transaction.atomic():
        row = Execution.objects.select_for_update().get(pk=row.pk)
        if not row.is_open:
            return False
        if a is not None:
            row.ips_state = fit(Execution, "ips_state", a.state or "")
            row.ips_progress = a.progress
            row.ips_started_at = row.ips_started_at or a.start_date
        if log_ is not None:
            row.ips_log_type = fit(Execution, "ips_log_type", log_.log_type or "")
            row.ips_success_count = log_.file_success_count
            row.ips_warning_count = log_.file_warning_count
            row.ips_error_count = log_.file_error_count
            row.ips_duplicate_count = log_.file_duplicate_count
            row.ips_update_count = log_.file_update_count
            row.ips_total_count = log_.total_file_count
            row.ips_fatal = log_.fatal_error
            row.ips_started_at = log_.start_date or row.ips_started_at
        if finished:
            row.ips_ended_at = log_.end_date
            row.ips_state = "Done"
            row.ips_progress = 100 if not row.ips_fatal else row.ips_progress
            if row.ips_started_at and row.ips_ended_at:
                row.ips_runtime_ms = max(0, int((row.ips_ended_at - row.ips_started_at).total_seconds() * 1000))
            row.ips_result = _result_of(log_, stopped or _stopping(row, a))
            row.ips_result_at = timezone.now()
            events.announce_run_ended(row.pk, row.ips_result)
        row.save(update_fields=sorted(Execution.IPS_FIELDS))
    if finished:
        log.info("run %r of %r (execution %s, %s) ended in IPS: %s", row.ips_run_handle, row.job_handle, row.pk,
                 row.started_by, english(lambda: row.ips_result_label))
    return finished


def _stopping(row: Execution, a) -> bool:
    return (a is not None and a.state == "Stopping") or row.ips_state == "Stopping"


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


def _settle(row: Execution, result: str, unnamed_only: bool = False) -> int:
    """Record that IPS will say no more of this run (``result``), once; returns how many were settled.
    ``unnamed_only``: only while no run of IPS's is on the row (a press found no run)."""
    with transaction.atomic():
        row = Execution.objects.select_for_update().get(pk=row.pk)
        if not row.is_open or (unnamed_only and row.ips_run_handle):
            return 0
        row.ips_result = result
        row.ips_result_at = timezone.now()
        row.save(update_fields=sorted(Execution.IPS_FIELDS))
        events.announce_run_ended(row.pk, row.ips_result)
    log.warning("run of %r (execution %s, %s): %s", row.job_handle, row.pk, row.outcome,
                english(lambda: row.ips_result_label))
    return 1


def _not_started(row: Execution) -> int:
    """A press of unknown fate with no run in IPS past the grace: IPS did not start it."""
    return _settle(row, IpsResult.NOT_STARTED, unnamed_only=True)


def _no_result(row: Execution) -> int:
    """Past the follow's deadline, IPS having said nothing of the run's end."""
    return _settle(row, IpsResult.NO_RESULT)
