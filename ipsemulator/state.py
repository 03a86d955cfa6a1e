"""The emulator's live state: one lock around the data, dispatch, fault
injection and the clock.

Plain Python, no Django and nothing from ``jobs/``: this is the other side of
the wire. The data comes from ``loader.py``, the lifecycle from
``records.py``, the operations from ``operations.py``; this core only ties
them together under one lock, so that every request sees one consistent
moment. Nothing runs in the background: a run's state is computed from
``state.clock`` whenever it is looked at, and IPS's own scheduler
(``fire_due``) catches up at the start of each call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import operations
from .clock import ManualClock, Timeline
from .loader import DEFAULT_DATA, load, read_settings
from .schedule import next_after, next_or_none
from .records import Company, Job, JobLog, Membership, Run, User  # noqa: F401  (public names)
from .tables import (ARRAY_PARAMS, INJECTION_KINDS, JOB_TYPES, OPERATIONS, REQUIRED, ROLES,  # noqa: F401
                     FAULT_NAMES, IpsFault, fault_family)


class StaleCall(Exception):
    """A call that started before a reset(): the test that sent it is over."""


#: Trigger states IPS's scheduler fires in (Quartz's: Paused waits for resumeJob; Complete,
#: Error and None have no trigger that fires).
FIRING_TRIGGER_STATES = ("Normal", "Blocked")


# ----------------------------------------------------------------- injection
@dataclass
class Injection:
    kind: str
    operation: str | None = None
    job_handle: str | None = None
    times: int | None = 1  # None: forever
    params: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"kind": self.kind, "operation": self.operation,
                "job_handle": self.job_handle, "times": self.times, **self.params}


def _seconds(params: dict, name: str) -> None:
    params[name] = float(params[name])
    if params[name] < 0:
        raise ValueError(f"{name} must not be negative")


def make_injection(kind: str, *, operation: str | None = None,
                   job_handle: str | None = None, times: int | None = 1,
                   **params) -> Injection:
    """Validate and build an :class:`Injection` (raises ValueError)."""
    if kind not in INJECTION_KINDS:
        raise ValueError(f"unknown injection kind {kind!r}; use one of {INJECTION_KINDS}")
    if operation is not None and operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if times is not None:
        times = int(times)
        if times < 1:
            raise ValueError("times must be a positive integer or None (forever)")
    if kind == "latency":
        if "seconds" not in params:
            raise ValueError("latency needs seconds")
        _seconds(params, "seconds")
    if kind == "trickle":
        params.setdefault("interval", 1.0)
        _seconds(params, "interval")
    if kind == "gzip_bomb":
        # A hostile reply: small on the wire, ``inflated`` bytes once decompressed (default 1.5 GB).
        params["inflated"] = int(params.get("inflated", 1_500_000_000))
        if params["inflated"] < 0:
            raise ValueError("inflated must not be negative")
    if kind == "soap_fault":
        if "code" not in params:
            raise ValueError("soap_fault needs code")
        params["code"] = int(params["code"])
        params["fault"] = fault_family(params.get("fault") or params.get("family"))
        params.pop("family", None)
        params.setdefault("reason", f"Injected fault {FAULT_NAMES.get(params['code'], '')}".strip())
    return Injection(kind, operation, job_handle, times, params)


# --------------------------------------------------------------------- state
class EmulatorState:
    """The emulator's live data. Thread-safe (one lock)."""

    def __init__(self, data_path: str | Path | None = None, job_duration: float = 3.0,
                 scheduler: bool = False):
        self.data_path = Path(data_path) if data_path else DEFAULT_DATA
        self._initial_job_duration = float(job_duration)
        self.job_duration = float(job_duration)
        # Off by default: a test must not get a run because the wall clock crossed a fire time.
        self._initial_scheduler = bool(scheduler)
        self._scheduler = bool(scheduler)
        #: Void operations (executeJob, stopJob, ...) answer an empty SOAP Body ("Response: None").
        self.void_empty_body = False
        #: stopJob takes only a run's handle, refusing the scheduled job's (30001): the other reading
        #: of the reference, for the dashboard's fallback.
        self.stop_takes_run_handles_only = False
        self._lock = threading.RLock()
        self._calls: list[dict] = []
        self._call_times: list[datetime] = []  # each call's exact time, for since/until
        self._injections: list[Injection] = []
        #: Bumped by reset(), so a call that slept (or streams) through one can tell.
        self.generation = 0
        self._load()

    def _load(self) -> None:
        raw, tz = read_settings(self.data_path)
        self._timeline = Timeline(tz)
        data = load(raw, tz, self._timeline.now(), scheduler=self._scheduler)
        self.server_name = data.server_name
        self.tz = tz
        self.companies: dict[str, Company] = data.companies
        self.jobs: dict[str, Job] = data.jobs
        self.users: dict[str, User] = data.users
        #: Every run, from the data file's history on; a run is also its log.
        self.runs: list[Run] = data.runs
        self._data_injections = [make_injection(spec.pop("kind"), **spec)
                                 for spec in data.injections]
        #: Handles of the jobs held back: their fire times pass without a run.
        self._held: set[str] = set()
        if self._scheduler:
            self._roll_forward()

    # --------------------------------------------------------------- time
    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock the lifecycle follows (``time.monotonic``, or a
        :class:`~ipsemulator.clock.ManualClock` in tests). Swapping it keeps
        the emulator's wall time continuous."""
        return self._timeline.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        with self._lock:
            self._timeline.clock = clock

    def now(self) -> datetime:
        """The emulator's wall time: start wall time + elapsed on ``clock``."""
        return self._timeline.now()

    def advance(self, seconds: float) -> datetime:
        """Advance a manual clock (switching to one on first use); returns now()."""
        with self._lock:
            if not isinstance(self.clock, ManualClock):
                self.clock = ManualClock(self.clock())
            self.clock.advance(seconds)
            return self.now()

    def shift(self, seconds: float) -> datetime:
        """Set IPS's wall clock ``seconds`` later (or earlier, if negative), as an administrator
        would set the server's clock: a skew for clients to notice (the Date header). Runs are
        timed on the wall time, so shifting back makes a running run younger."""
        with self._lock:
            self._timeline.shift(float(seconds))
            return self.now()

    # ---------------------------------------------------------- scheduler
    @property
    def scheduler(self) -> bool:
        """Whether IPS's own scheduler fires jobs at their next fire times (see fire_due)."""
        return self._scheduler

    @scheduler.setter
    def scheduler(self, on: bool) -> None:
        with self._lock:
            if on and not self._scheduler:
                # Fire times that passed while it was off are skipped, not fired all at once.
                self._roll_forward()
            self._scheduler = bool(on)

    def _roll_forward(self) -> None:
        now = self.now()
        for job in self.jobs.values():
            if job.next_fire_time is None or job.next_fire_time <= now:
                job.next_fire_time = next_or_none(job.exec_schedule, now, self.tz) or job.next_fire_time

    def fire_due(self) -> list[str]:
        """IPS's scheduler, evaluated lazily (nothing runs in the background): every job in a
        firing trigger state whose next fire time has come starts a run, timed at that fire time,
        by its submit user; then its next fire time moves to the first match after now. Missed
        fire times in between are skipped (Quartz's "fire once now" misfire policy). No run when
        the job is still running then, or held back; a schedule that is not understood never
        fires. Called at the start of every SOAP dispatch and control call. Returns the new
        runs' handles."""
        started = []
        with self._lock:
            if not self._scheduler:
                return started
            now = self.now()
            for job in list(self.jobs.values()):
                fire_at = job.next_fire_time
                if job.trigger_state not in FIRING_TRIGGER_STATES or fire_at is None or fire_at > now:
                    continue
                try:
                    following = next_after(job.exec_schedule, now, self.tz)
                except ValueError:
                    continue
                fire_at = fire_at.astimezone(self.tz)  # the run's name in the server's zone
                running = operations.unfinished_run(self, job.handle, fire_at)
                if job.handle not in self._held and running is None:
                    started.append(operations.start_run(self, job, job.submit_user_email, fire_at).handle)
                job.next_fire_time = following
        return started

    def hold(self, job_handle: str, held: bool = True) -> None:
        """Hold a job back (or let it go): while held, its fire times pass without a run, as
        when IPS silently misses one; its next fire time moves on all the same."""
        with self._lock:
            self.fire_due()
            if job_handle not in self.jobs:
                raise ValueError(f"unknown job {job_handle!r}")
            if held:
                self._held.add(job_handle)
            else:
                self._held.discard(job_handle)

    @property
    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    # ------------------------------------------------------- test helpers
    def reset(self) -> None:
        """Reload the data file; clear injections and calls; restore the real
        clock and the job duration the state was created with."""
        with self._lock:
            self.generation += 1
            self._calls.clear()
            self._call_times.clear()
            self._injections.clear()
            self.job_duration = self._initial_job_duration
            self.void_empty_body = False
            self.stop_takes_run_handles_only = False
            self._scheduler = self._initial_scheduler
            self._load()

    def inject(self, kind: str, *, operation: str | None = None,
               job_handle: str | None = None, times: int | None = 1, **params) -> Injection:
        """Make matching calls misbehave. ``times=None`` means forever.

        kinds: latency (``seconds``), soap_fault (``code``, ``reason``,
        optional ``fault`` family), http_500_html, malformed_xml, empty_body,
        drop_connection, trickle (``interval``, default 1.0), gzip_bomb
        (``inflated`` bytes, default 1.5 GB)."""
        injection = make_injection(kind, operation=operation, job_handle=job_handle,
                                   times=times, **params)
        with self._lock:
            self._injections.append(injection)
        return injection

    @property
    def injections(self) -> list[dict]:
        with self._lock:
            return [i.describe() for i in self._injections + self._data_injections]

    @property
    def calls(self) -> list[dict]:
        """Received SOAP calls: operation, user, company_handle, job_handle,
        time (ISO), namespace, injected (kind or None), soap_version ("1.1" or "1.2")."""
        with self._lock:
            return [dict(c) for c in self._calls]

    def calls_matching(self, operation: str | None = None, company_handle: str | None = None,
                       user: str | None = None, since: datetime | None = None,
                       until: datetime | None = None) -> list[dict]:
        """The calls (as ``calls``) of that operation, company and user (case-insensitive),
        received at or after ``since`` and before ``until``; None matches anything."""
        user = user.lower() if user else None
        with self._lock:
            out = []
            for c, at in zip(self._calls, self._call_times):
                if ((operation and c["operation"] != operation)
                        or (company_handle and c["company_handle"] != company_handle)
                        or (user and (c["user"] or "").lower() != user)):
                    continue
                if (since and at < since) or (until and at >= until):
                    continue
                out.append(dict(c))
            return out

    def record_call(self, operation: str, user: str | None, company_handle: str | None,
                    job_handle: str | None, namespace: str | None = None,
                    injected: str | None = None, soap_version: str = "1.1") -> None:
        with self._lock:
            now = self.now()
            self._call_times.append(now)
            self._calls.append({
                "operation": operation, "user": user, "company_handle": company_handle,
                "job_handle": job_handle, "time": now.isoformat(timespec="milliseconds"),
                "namespace": namespace, "injected": injected, "soap_version": soap_version,
            })

    def take_injection(self, operation: str, job_handle: str | None) -> Injection | None:
        """Find the first injection matching this call and consume one use.
        Injections made at run time are checked before those of the data file.
        A run handle also matches its scheduled job's handle."""
        with self._lock:
            handles = {job_handle, self._scheduled_handle_of(job_handle)} - {None}
            for pool in (self._injections, self._data_injections):
                for inj in pool:
                    if inj.operation is not None and inj.operation != operation:
                        continue
                    if inj.job_handle is not None and inj.job_handle not in handles:
                        continue
                    if inj.times is not None:
                        inj.times -= 1
                        if inj.times <= 0:
                            pool.remove(inj)
                    return inj
        return None

    def active_runs(self, job_handle: str | None = None) -> list[dict]:
        """Runs listed by getActiveJobs now, optionally of one scheduled job
        (or with that run handle): handle, job_handle, state, progress."""
        with self._lock:
            self.fire_due()
            now = self.now()
            out = []
            for r in self.runs:
                if r.listed(now) and (job_handle is None or job_handle in (r.handle, r.job.handle)):
                    e = r.elapsed(now)
                    out.append({"handle": r.handle, "job_handle": r.job.handle,
                                "state": r.state(e), "progress": r.progress(e)})
            return out

    def job_logs(self, job_handle: str | None = None) -> list[JobLog]:
        """The logs as they stand now (unfinished runs' too), oldest first."""
        with self._lock:
            self.fire_due()
            now = self.now()
            return [r.log(now, operations.root_of(self, r.job.company), self.server_name)
                    for r in self.runs if job_handle is None or job_handle in (r.handle, r.job.handle)]

    def add_user(self, email: str, password: str, default_role: str,
                 memberships: dict[str, str | tuple[str, bool]] | None = None) -> User:
        """Add a user; memberships maps company handle -> role or (role, active)."""
        if default_role not in ROLES:
            raise ValueError(default_role)
        with self._lock:
            user = User(f"{100 + len(self.users) + 1}|{email}", email, password,
                        email.split("@")[0], "Test", default_role)
            for company, spec in (memberships or {}).items():
                role, active = (spec, True) if isinstance(spec, str) else spec
                user.memberships[company] = Membership(company, role, active)
            self.users[email.lower()] = user
            return user

    def change_user(self, email: str, *, default_role: str | None = None,
                    memberships: dict | None = None, password_expires=..., is_valid: bool | None = None,
                    password: str | None = None) -> User:
        """Change a user as an IPS administrator would: its default role, its memberships
        (company handle -> role, (role, active), or None to remove), password expiry, validity."""
        with self._lock:
            user = self.users.get(email.lower())
            if user is None:
                raise ValueError(f"unknown user {email!r}")
            if default_role is not None:
                if default_role not in ROLES:
                    raise ValueError(f"unknown role {default_role!r}")
                user.default_role = default_role
            for company, spec in (memberships or {}).items():
                if company not in self.companies:
                    raise ValueError(f"unknown company {company!r}")
                if spec is None:
                    user.memberships.pop(company, None)
                    continue
                role, active = (spec, True) if isinstance(spec, str) else spec
                if role not in ROLES:
                    raise ValueError(f"unknown role {role!r}")
                user.memberships[company] = Membership(company, role, bool(active))
            if password_expires is not ...:
                user.password_expires = password_expires
            if is_valid is not None:
                user.is_valid = is_valid
            if password is not None:
                user.password = password
            return user

    def fire_schedule(self, job_handle: str) -> str:
        """IPS's own scheduler starts a run of the job (no executeJob, no dashboard):
        its submit user is the job's. Returns the run's handle."""
        with self._lock:
            self.fire_due()
            job = self.jobs.get(job_handle)
            if job is None:
                raise ValueError(f"unknown job {job_handle!r}")
            now = self.now()
            running = operations.unfinished_run(self, job.handle, now)
            if running is not None:
                raise ValueError(f"job {job.name!r} is already running ({running.handle})")
            return operations.start_run(self, job, job.submit_user_email, now).handle

    def add_job(self, company: str, name: str, type: str = "ImageServingPublish", **values) -> Job:
        """Add a scheduled job (handle ``<company>|<name>|``); ``values`` as in demo.toml."""
        if company not in self.companies:
            raise ValueError(f"unknown company {company!r}")
        if type not in JOB_TYPES:
            raise ValueError(f"unknown job type {type!r}")
        with self._lock:
            job = Job(company=company, handle=values.pop("handle", f"{company}|{name}|"), name=name,
                      type=type, **values)
            self.jobs[job.handle] = job
            if self._scheduler and job.next_fire_time is None:
                job.next_fire_time = next_or_none(job.exec_schedule, self.now(), self.tz)
            return job

    def remove_job(self, job_handle: str) -> None:
        """The job is gone from IPS (as deleted there): no longer scheduled or listed by
        getScheduledJobs. Its runs and their logs stay (each run keeps its own copy of the job)."""
        with self._lock:
            self.fire_due()
            if self.jobs.pop(job_handle, None) is None:
                raise ValueError(f"unknown job {job_handle!r}")
            self._held.discard(job_handle)

    def _scheduled_handle_of(self, handle: str | None) -> str | None:
        if handle is None:
            return None
        if handle in self.jobs:
            return handle
        for r in self.runs:
            if r.handle == handle:
                return r.job.handle
        return None

    # ------------------------------------------------------------ dispatch
    def dispatch(self, operation: str, params: dict, credentials: tuple[str, str] | None,
                 generation: int | None = None):
        """Run one operation: authenticate, validate, authorize, execute.
        Returns the ``<op>Return`` content (a dict with the fields of every
        API version, or None); raises IpsFault. With ``generation``, a call
        that slept through a reset() raises StaleCall instead of acting."""
        with self._lock:
            if generation is not None and generation != self.generation:
                raise StaleCall(operation)
            # Before anything else, so that the call sees the runs the schedule started by now.
            self.fire_due()
            user = operations.authenticate(self, credentials)
            for name, value in params.items():
                if isinstance(value, list) and name not in ARRAY_PARAMS:
                    raise IpsFault(30001, f"Parameter '{name}' must be a simple value")
            for name in REQUIRED.get(operation, ()):
                if not params.get(name):
                    raise IpsFault(30002, f"Missing required parameter '{name}' for {operation}")
            return operations.HANDLERS[operation](self, user, params)
