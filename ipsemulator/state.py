"""In-memory state of the IPS emulator: demo data, roles, job lifecycle, faults.

Plain Python, no Django, and nothing from ``jobs/``: this is the other side of
the wire. ``app.py`` turns SOAP requests into :meth:`EmulatorState.dispatch`
calls and the returned plain values (dicts in the WSDL's sequence order, lists
for arrays) back into XML.

Everything is guarded by one lock. The job lifecycle needs no thread: a run's
state is computed from the time elapsed on ``state.clock`` (``time.monotonic``
unless a test swaps it) each time the state is looked at.

Choices where the IPS reference leaves room (also in README.md):

* Authorization order: a ``companyHandle`` that names no company at all is
  ``20000 INVALID_COMPANY``; a company that exists but where the caller has no
  active membership (none, or ``isActive`` false) is ``20006 ILLEGAL_COMPANY``;
  then the caller's role there is checked (``20003 NO_OPERATION_PERMISSION``).
  A user whose ``defaultRole`` is IpsAdmin acts as IpsAdmin in every existing
  company, member or not.
* Operations without a company (checkLogin, getUserInfo,
  getCompanyMembership, and getActiveJobs/getJobLogs without
  ``companyHandle``) are authorized by the caller's ``defaultRole``; the two
  list operations then return only companies where the caller's role is
  authorized for the operation (every company for IpsAdmin).
* executeJob on a job that has an unfinished run (New, Running, Stopping):
  ``30001 INVALID_PARAMETER``, reason "... is already running ...".
* Unknown job handles are ``30001``; a job handle of another company too.
"""

from __future__ import annotations

import copy
import threading
import time
import tomllib
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent / "demo.toml"

# --------------------------------------------------------------------- roles
ROLES = (
    "IpsAdmin",
    "IpsCompanyAdmin",
    "IpsUser",
    "WebServiceUser",
    "TrialSiteAdmin",
    "TrialSiteUser",
    "ImagePortalAdmin",
    "ImagePortalUser",
    "ImagePortalContrib",
    "ImagePortalContribUser",
)


# Authorized user types per operation: the table of shared/ips-api.md, copied
# verbatim (a multi-operation row names each of its operations).
_AUTHORIZATION_TABLE = """
| operation | IpsAdmin | IpsCompanyAdmin | IpsUser | WebServiceUser | TrialSiteAdmin | TrialSiteUser | ImagePortalAdmin | ImagePortalUser | ImagePortalContrib | ImagePortalContribUser |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| executeJob | ✓ | | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| submitJob | ✓ | | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getScheduledJobs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getActiveJobs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| pauseJob, resumeJob, stopJob, deleteJob | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getJobLogs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getJobLogDetails | ✓ | ✓ | ✓ | | | ✓ | ✓ | ✓ | ✓ | ✓ |
| checkLogin, getUserInfo | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getCompanyMembership | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getCompanyInfo | ✓ | | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
"""


def _parse_authorization_table(text: str) -> dict[str, frozenset[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.strip().splitlines()]
    header, body = rows[0], rows[2:]
    if tuple(header[1:]) != ROLES:
        raise ValueError(f"authorization table header {header!r}")
    table: dict[str, frozenset[str]] = {}
    for cells in body:
        if len(cells) != len(header):
            raise ValueError(f"authorization table row {cells!r}")
        allowed = frozenset(role for role, mark in zip(ROLES, cells[1:]) if mark == "✓")
        for operation in cells[0].split(","):
            table[operation.strip()] = allowed
    return table


AUTHORIZED: dict[str, frozenset[str]] = _parse_authorization_table(_AUTHORIZATION_TABLE)

# Operations the emulator implements (submitJob is not).
OPERATIONS = (
    "executeJob",
    "getScheduledJobs",
    "getActiveJobs",
    "getJobLogs",
    "getJobLogDetails",
    "pauseJob",
    "resumeJob",
    "stopJob",
    "deleteJob",
    "checkLogin",
    "getCompanyInfo",
    "getUserInfo",
    "getCompanyMembership",
)

REQUIRED: dict[str, tuple[str, ...]] = {
    "executeJob": ("companyHandle", "jobHandle"),
    "getScheduledJobs": ("companyHandle",),
    "getJobLogDetails": ("companyHandle",),
    "pauseJob": ("companyHandle", "jobHandle"),
    "resumeJob": ("companyHandle", "jobHandle"),
    "stopJob": ("companyHandle", "jobHandle"),
    "deleteJob": ("companyHandle", "jobHandle"),
    "checkLogin": ("email", "password"),
}

# Parameters that are arrays (``items`` children); every other one is text.
ARRAY_PARAMS = frozenset({"logTypeArray"})

JOB_TYPES = {
    # type: (log type family, asset type, default asset extension)
    "ImageServingPublish": ("ImageServingPublish", "Image", "jpg"),
    "ImageRenderingPublish": ("ImageRenderingPublish", "Image", "tif"),
    "ServerDirectoryPublish": ("ServerDirectoryPublish", "Image", "jpg"),
    "ServerDirectoryPublishWithTemplate": ("ServerDirectoryPublish", "Image", "jpg"),
    "VideoPublish": ("VideoPublish", "Video", "mp4"),
    "UploadFromServerDirectory": ("Upload", "Image", "jpg"),
    "UrlUpload": ("Upload", "Image", "png"),
    "MetadataUpload": ("Upload", "Image", "jpg"),
    "ImageOptimization": ("ImageOptimization", "Image", "jpg"),
    "Cleanup": ("Cleanup", "Image", "jpg"),
}
TRIGGER_STATES = ("Blocked", "Complete", "Error", "None", "Normal", "Paused")
OUTCOMES = ("success", "warnings", "errors", "fatal")
INJECTION_KINDS = (
    "latency",
    "soap_fault",
    "http_500_html",
    "malformed_xml",
    "empty_body",
    "drop_connection",
)
FAULT_NAMES = {
    10000: "NO_CREDENTIALS",
    10001: "INVALID_CREDENTIALS",
    10002: "INVALID_USER",
    20000: "INVALID_COMPANY",
    20001: "INVALID_REQUEST_USERNAME",
    20002: "INVALID_REQUEST_USER",
    20003: "NO_OPERATION_PERMISSION",
    20004: "NO_IMPERSONATION_PERMISSION",
    20005: "ILLEGAL_PARAMETER_VALUE",
    20006: "ILLEGAL_COMPANY",
    20007: "ILLEGAL_REQUEST_USER",
    20008: "ILLEGAL_ACCESS_GROUP",
    20009: "MISSING_PERMISSION",
    30000: "EXCEPTION",
    30001: "INVALID_PARAMETER",
    30002: "MISSING_PARAMETER",
    30003: "INVALID_REQUEST_XML",
}
_FAMILIES = {
    "authenticationFault": "AuthenticationException",
    "authorizationFault": "AuthorizationException",
    "ipsApiFault": "IpsApiException",
}
_FAMILY_ALIASES = {
    "authentication": "authenticationFault",
    "authenticationfault": "authenticationFault",
    "authorization": "authorizationFault",
    "authorizationfault": "authorizationFault",
    "ipsapi": "ipsApiFault",
    "ipsapifault": "ipsApiFault",
    "ips": "ipsApiFault",
}

# Fractions of a run's duration: New during the first tenth; Stopping lasts a
# tenth; a finished run stays visible as Done for a quarter (at least 0.2 s).
_NEW_FRACTION = 0.1
_STOP_FRACTION = 0.1
_DONE_FRACTION = 0.25
_DONE_MIN_SECONDS = 0.2


class IpsFault(Exception):
    """A SOAP fault with an IPS fault element (family), code and reason."""

    def __init__(self, code: int, reason: str, *, family: str | None = None,
                 faultcode: str | None = None, faultstring: str | None = None):
        super().__init__(f"{code} {reason}")
        self.code = int(code)
        self.reason = reason
        if family is None:
            family = {1: "authenticationFault", 2: "authorizationFault"}.get(
                self.code // 10000, "ipsApiFault")
        self.family = family
        self.faultcode = faultcode or ("Server" if self.code == 30000 else "Client")
        self.faultstring = faultstring or _FAMILIES.get(family, "IpsApiException")


def fault_family(value: str | None) -> str | None:
    """Normalise a fault family name ("authorization", "ipsApiFault", ...)."""
    if value is None:
        return None
    if value in _FAMILIES:
        return value
    try:
        return _FAMILY_ALIASES[value.replace("_", "").lower()]
    except KeyError:
        raise ValueError(f"unknown fault family {value!r}; use one of {sorted(_FAMILIES)}") from None


# ---------------------------------------------------------------- data types
@dataclass
class Company:
    handle: str
    name: str
    root_path: str = ""
    expires: datetime | None = None

    def wire(self) -> dict:
        return {"companyHandle": self.handle, "name": self.name,
                "rootPath": self.root_path, "expires": self.expires}


@dataclass
class Membership:
    company: str
    role: str
    active: bool = True


@dataclass
class User:
    handle: str
    email: str
    password: str
    first_name: str
    last_name: str
    default_role: str
    memberships: dict[str, Membership] = field(default_factory=dict)
    is_valid: bool = True
    password_expires: datetime | None = None

    def wire(self) -> dict:
        return {"userHandle": self.handle, "firstName": self.first_name,
                "lastName": self.last_name, "email": self.email,
                "defaultRole": self.default_role, "isValid": self.is_valid,
                "passwordExpires": self.password_expires}


@dataclass
class Job:
    company: str
    handle: str
    name: str
    type: str
    submit_user_email: str = ""
    locale: str = "en_US"
    description: str = ""
    exec_schedule: str = ""
    next_fire_time: datetime | None = None
    time_zone: str = ""
    trigger_state: str = "Normal"
    outcome: str = "success"
    files: int = 5
    assets: list[str] = field(default_factory=list)

    def wire(self) -> dict:
        return {"companyHandle": self.company, "jobHandle": self.handle,
                "name": self.name, "originalName": self.name, "type": self.type,
                "submitUserEmail": self.submit_user_email, "locale": self.locale,
                "description": self.description, "execSchedule": self.exec_schedule,
                "nextFireTime": self.next_fire_time, "timeZone": self.time_zone,
                "triggerState": self.trigger_state}

    def asset_names(self) -> list[str]:
        ext = JOB_TYPES[self.type][2]
        names = list(self.assets)
        while len(names) < self.files:
            names.append(f"asset-{len(names) + 1:03d}.{ext}")
        return names[: self.files]


@dataclass
class JobLog:
    company: str
    handle: str
    job_name: str
    original_job_name: str
    scheduled_handle: str
    submit_user_email: str
    log_type: str
    job_sub_type: str
    start: datetime
    end: datetime
    description: str
    counts: dict[str, int]
    fatal: bool
    details: list[dict]

    def wire(self, details: list[dict] | None = None, total: int | None = None) -> dict:
        c = self.counts
        out = {"companyHandle": self.company, "jobHandle": self.handle,
               "jobName": self.job_name, "originalJobName": self.original_job_name,
               "submitUserEmail": self.submit_user_email, "logType": self.log_type,
               "jobSubType": self.job_sub_type, "startDate": self.start,
               "endDate": self.end, "description": self.description,
               "fileSuccessCount": c["success"], "fileErrorCount": c["error"],
               "fileWarningCount": c["warning"], "fileDuplicateCount": 0,
               "fileUpdateCount": 0, "totalFileCount": c["total"],
               "transferSuccessCount": c["success"], "transferErrorCount": c["error"],
               "transferWarningCount": c["warning"], "fatalError": self.fatal,
               "detailTotalRows": len(self.details) if total is None else total}
        if details is not None:
            out["detailArray"] = [
                {k: d[k] for k in ("logMessage", "logType", "assetName",
                                   "assetType", "assetHandle", "auxArray")}
                for d in details]
        return out


@dataclass
class Run:
    handle: str
    name: str
    job: Job  # a snapshot taken when the run started
    submit_user_email: str
    start_mono: float
    start_wall: datetime
    duration: float
    stop_mono: float | None = None
    stopped_by: str | None = None
    log: JobLog | None = None

    @property
    def finish_mono(self) -> float:
        if self.stop_mono is not None:
            return min(self.stop_mono + _STOP_FRACTION * self.duration,
                       self.start_mono + self.duration)
        return self.start_mono + self.duration

    @property
    def gone_mono(self) -> float:
        return self.finish_mono + max(_DONE_FRACTION * self.duration, _DONE_MIN_SECONDS)

    def progress_at(self, t: float) -> int:
        if self.stop_mono is not None:
            t = min(t, self.stop_mono)
        elapsed = t - self.start_mono
        if self.duration <= 0 or elapsed >= self.duration:
            return 100
        if elapsed < _NEW_FRACTION * self.duration:
            return 0
        return max(1, min(99, int(100 * elapsed / self.duration)))

    def state_at(self, t: float) -> str:
        if t >= self.finish_mono:
            return "Done"
        if self.stop_mono is not None:
            return "Stopping"
        if t - self.start_mono < _NEW_FRACTION * self.duration:
            return "New"
        return "Running"

    @property
    def unfinished(self) -> bool:
        return self.log is None


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
        params["seconds"] = float(params["seconds"])
        if params["seconds"] < 0:
            raise ValueError("seconds must not be negative")
    if kind == "soap_fault":
        if "code" not in params:
            raise ValueError("soap_fault needs code")
        params["code"] = int(params["code"])
        params["fault"] = fault_family(params.get("fault") or params.get("family"))
        params.pop("family", None)
        params.setdefault("reason", f"Injected fault {FAULT_NAMES.get(params['code'], '')}".strip())
    return Injection(kind, operation, job_handle, times, params)


def _dt(value) -> datetime | None:
    """A TOML date-time or ISO string -> aware datetime (UTC if naive)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def _offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


# -------------------------------------------------------------------- state
class EmulatorState:
    """The emulator's live data. Thread-safe (one lock)."""

    def __init__(self, data_path: str | Path | None = None, job_duration: float = 3.0):
        self.data_path = Path(data_path) if data_path else DEFAULT_DATA
        self._initial_job_duration = float(job_duration)
        self.job_duration = float(job_duration)
        self.clock = time.monotonic
        self._lock = threading.RLock()
        self._calls: list[dict] = []
        self._injections: list[Injection] = []
        #: Bumped by reset(), so a call that slept through one can tell.
        self.generation = 0
        self._load()

    # ------------------------------------------------------------ loading
    def _load(self) -> None:
        with open(self.data_path, "rb") as fh:
            data = tomllib.load(fh)
        emu = data.get("emulator", {})
        self.server_name = emu.get("server_name", "ips-emulator")
        self.tz = _offset(emu.get("utc_offset", "+00:00"))
        self.companies: dict[str, Company] = {}
        for c in data.get("companies", []):
            company = Company(str(c["handle"]), c["name"], c.get("root_path", ""),
                              _dt(c.get("expires")))
            self.companies[company.handle] = company
        self.jobs: dict[str, Job] = {}
        self._data_injections: list[Injection] = []
        past: list[tuple[Job, datetime]] = []
        for j in data.get("jobs", []):
            company = str(j["company"])
            if company not in self.companies:
                raise ValueError(f"job {j['name']!r}: unknown company {company!r}")
            if j["type"] not in JOB_TYPES:
                raise ValueError(f"job {j['name']!r}: unknown type {j['type']!r}")
            outcome = j.get("outcome", "success")
            if outcome not in OUTCOMES:
                raise ValueError(f"job {j['name']!r}: unknown outcome {outcome!r}")
            job = Job(
                company=company,
                handle=j.get("handle", f"{company}|{j['name']}|"),
                name=j["name"], type=j["type"],
                submit_user_email=j.get("submit_user_email", ""),
                locale=j.get("locale", "en_US"),
                description=j.get("description", ""),
                exec_schedule=j.get("exec_schedule", ""),
                next_fire_time=_dt(j.get("next_fire_time")),
                time_zone=j.get("time_zone", ""),
                trigger_state=j.get("trigger_state", "Normal"),
                outcome=outcome, files=int(j.get("files", 5)),
                assets=list(j.get("assets", [])),
            )
            self.jobs[job.handle] = job
            injects = j.get("inject", [])
            for spec in [injects] if isinstance(injects, dict) else injects:
                spec = dict(spec)
                spec.setdefault("times", None)
                self._data_injections.append(
                    make_injection(spec.pop("kind"), job_handle=job.handle, **spec))
            for start in j.get("past_runs", []):
                past.append((job, _dt(start)))
        self.users: dict[str, User] = {}
        for n, u in enumerate(data.get("users", []), start=1):
            if u["default_role"] not in ROLES:
                raise ValueError(f"user {u['email']!r}: unknown role {u['default_role']!r}")
            user = User(
                handle=u.get("handle", f"{100 + n}|{u['email']}"),
                email=u["email"], password=u["password"],
                first_name=u.get("first_name", ""), last_name=u.get("last_name", ""),
                default_role=u["default_role"], is_valid=u.get("is_valid", True),
                password_expires=_dt(u.get("password_expires")),
            )
            for m in u.get("memberships", []):
                if m["role"] not in ROLES:
                    raise ValueError(f"user {user.email!r}: unknown role {m['role']!r}")
                if str(m["company"]) not in self.companies:
                    raise ValueError(f"user {user.email!r}: unknown company {m['company']!r}")
                user.memberships[str(m["company"])] = Membership(
                    str(m["company"]), m["role"], m.get("active", True))
            self.users[user.email.lower()] = user
        self.runs: list[Run] = []
        self.logs: list[JobLog] = []
        for job, start in sorted(past, key=lambda p: p[1]):
            handle, name = self._run_handle(job, start)
            run = Run(handle, name, copy.deepcopy(job), job.submit_user_email, 0.0, start, 42.0)
            self.logs.append(self._make_log(run, start + timedelta(seconds=42)))

    # ------------------------------------------------------- test helpers
    def reset(self) -> None:
        """Reload the data file; clear injections and calls; restore the clock
        and the job duration the state was created with."""
        with self._lock:
            self.generation += 1
            self._calls.clear()
            self._injections.clear()
            self.clock = time.monotonic
            self.job_duration = self._initial_job_duration
            self._load()

    def inject(self, kind: str, *, operation: str | None = None,
               job_handle: str | None = None, times: int | None = 1, **params) -> Injection:
        """Make matching calls misbehave. ``times=None`` means forever.

        kinds: latency (``seconds``), soap_fault (``code``, ``reason``,
        optional ``fault`` family), http_500_html, malformed_xml, empty_body,
        drop_connection."""
        injection = make_injection(kind, operation=operation, job_handle=job_handle,
                                   times=times, **params)
        with self._lock:
            self._injections.append(injection)
        return injection

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    @property
    def injections(self) -> list[dict]:
        with self._lock:
            return [i.describe() for i in self._injections + self._data_injections]

    @property
    def calls(self) -> list[dict]:
        """Received SOAP calls: operation, user, company_handle, job_handle,
        time (ISO), namespace, injected (kind or None)."""
        with self._lock:
            return [dict(c) for c in self._calls]

    def record_call(self, operation: str, user: str | None, company_handle: str | None,
                    job_handle: str | None, namespace: str | None = None,
                    injected: str | None = None) -> None:
        with self._lock:
            self._calls.append({
                "operation": operation, "user": user, "company_handle": company_handle,
                "job_handle": job_handle, "time": self._wall().isoformat(timespec="milliseconds"),
                "namespace": namespace, "injected": injected,
            })

    def take_injection(self, operation: str, job_handle: str | None) -> Injection | None:
        """Find the first injection matching this call and consume one use.
        Injections made at run time are checked before those of the data file."""
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
        """Runs still listed by getActiveJobs, optionally of one scheduled job
        (or with that run handle): handle, job_handle, state, progress."""
        with self._lock:
            self._tick()
            now = self.clock()
            return [{"handle": r.handle, "job_handle": r.job.handle,
                     "state": r.state_at(now), "progress": r.progress_at(now)}
                    for r in self.runs
                    if job_handle is None or job_handle in (r.handle, r.job.handle)]

    def job_logs(self, job_handle: str | None = None) -> list[JobLog]:
        with self._lock:
            self._tick()
            return [log for log in self.logs
                    if job_handle is None or job_handle in (log.handle, log.scheduled_handle)]

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

    # ------------------------------------------------------------ helpers
    def _wall(self) -> datetime:
        return datetime.now(self.tz)

    def _scheduled_handle_of(self, handle: str | None) -> str | None:
        if handle is None:
            return None
        if handle in self.jobs:
            return handle
        for r in self.runs:
            if r.handle == handle:
                return r.job.handle
        for log in self.logs:
            if log.handle == handle:
                return log.scheduled_handle
        return None

    def _run_handle(self, job: Job, start: datetime) -> tuple[str, str]:
        base = f"{job.name}_{start:%Y-%m-%d-%H:%M:%S}"
        taken = {r.handle for r in self.runs} | {log.handle for log in self.logs}
        name, n = base, 1
        while f"{job.company}||{name}" in taken:
            n += 1
            name = f"{base}-{n}"
        return f"{job.company}||{name}", name

    def _tick(self) -> None:
        """Finish runs whose time is up (write their log) and drop runs that
        have been Done long enough."""
        now = self.clock()
        for run in list(self.runs):
            if run.log is None and now >= run.finish_mono:
                end = run.start_wall + timedelta(seconds=run.finish_mono - run.start_mono)
                run.log = self._make_log(run, end)
                self.logs.append(run.log)
            if now >= run.gone_mono:
                self.runs.remove(run)

    def _make_log(self, run: Run, end: datetime) -> JobLog:
        job = run.job
        family, asset_type, _ = JOB_TYPES[job.type]
        assets = job.asset_names()
        n = len(assets)
        stopped = run.stop_mono is not None
        details: list[dict] = []
        step = (end - run.start_wall) / (n + 2)
        t = run.start_wall

        def add(message, log_type, asset=None, aux=None):
            nonlocal t
            details.append({"time": t, "logMessage": message, "logType": log_type,
                            "assetName": asset, "assetType": asset_type if asset else None,
                            "assetHandle": f"a|{job.company}|{zlib.crc32(f'{job.handle}{asset}'.encode())}"
                            if asset else None,
                            "auxArray": aux})
            t = t + step

        add(f"Job '{job.name}' started by {run.submit_user_email}", f"Begin{family}")
        add(job.name, "OriginalJobName")
        counts = {"success": 0, "warning": 0, "error": 0, "total": n}
        if job.outcome == "fatal":
            add("Fatal error: the storage volume is not reachable; job aborted", "FatalError")
            log_type, description = "FatalError", "Job failed with a fatal error"
        else:
            processed = assets
            if stopped:
                processed = assets[: n * run.progress_at(run.stop_mono) // 100]
            bad = max(1, n // 3) if job.outcome in ("warnings", "errors") else 0
            for i, asset in enumerate(processed):
                path = f"{job.company}/{asset}"
                if i >= len(assets) - bad and job.outcome == "errors":
                    counts["error"] += 1
                    add(f"Could not process '{asset}': unsupported file format",
                        f"{family}Error", asset, [path])
                elif i >= len(assets) - bad and job.outcome == "warnings":
                    counts["warning"] += 1
                    add(f"Processed '{asset}' with warnings: color profile replaced",
                        f"{family}Warning", asset, [path])
                else:
                    counts["success"] += 1
                    add(f"Processed '{asset}'", f"{family}Success", asset, [path])
            if stopped:
                log_type = f"End{family}"
                description = f"Stopped by {run.stopped_by}"
            else:
                log_type = {"success": f"{family}Success", "warnings": f"{family}Warning",
                            "errors": f"{family}Error"}[job.outcome]
                description = job.description
        if stopped:
            add(f"Job stopped by {run.stopped_by}", f"End{family}")
        else:
            add(f"Job finished: {counts['success']} succeeded, {counts['warning']} "
                f"with warnings, {counts['error']} failed", f"End{family}")
        return JobLog(
            company=job.company, handle=run.handle, job_name=run.name,
            original_job_name=job.name, scheduled_handle=job.handle,
            submit_user_email=run.submit_user_email, log_type=log_type,
            job_sub_type=job.type, start=run.start_wall, end=end,
            description=description, counts=counts, fatal=job.outcome == "fatal",
            details=details)

    # ---------------------------------------------------------- dispatch
    def dispatch(self, operation: str, params: dict, credentials: tuple[str, str] | None):
        """Run one operation: authenticate, validate, authorize, execute.
        Returns the ``<op>Return`` content (dict or None); raises IpsFault."""
        with self._lock:
            self._tick()
            user = self._authenticate(credentials)
            for name, value in params.items():
                if isinstance(value, list) and name not in ARRAY_PARAMS:
                    raise IpsFault(30001, f"Parameter '{name}' must be a simple value")
            for name in REQUIRED.get(operation, ()):
                if not params.get(name):
                    raise IpsFault(30002, f"Missing required parameter '{name}' for {operation}")
            return getattr(self, f"_op_{operation}")(user, params)

    def _authenticate(self, credentials) -> User:
        if not credentials or not credentials[0]:
            raise IpsFault(10000, "No credentials: send an authHeader with user and password")
        email, password = credentials
        user = self.users.get(email.lower())
        if user is None or not user.is_valid:
            raise IpsFault(10002, f"Invalid user '{email}'")
        if password != user.password:
            raise IpsFault(10001, f"Invalid credentials for user '{email}'")
        return user

    def _company(self, handle: str) -> Company:
        company = self.companies.get(handle)
        if company is None:
            raise IpsFault(20000, f"Invalid company handle '{handle}'")
        return company

    def _role_in(self, user: User, company_handle: str) -> str:
        self._company(company_handle)
        if user.default_role == "IpsAdmin":
            return "IpsAdmin"
        m = user.memberships.get(company_handle)
        if m is None or not m.active:
            raise IpsFault(20006, f"User '{user.email}' is not an active member of "
                                  f"company '{company_handle}'")
        return m.role

    def _authorize(self, user: User, operation: str, company_handle: str | None) -> str:
        role = user.default_role if company_handle is None else self._role_in(user, company_handle)
        if role not in AUTHORIZED[operation]:
            raise IpsFault(20003, f"User type '{role}' has no permission for operation "
                                  f"'{operation}'")
        return role

    def _visible_companies(self, user: User, operation: str, company_handle: str | None) -> set[str]:
        if company_handle:
            self._authorize(user, operation, company_handle)
            return {company_handle}
        self._authorize(user, operation, None)
        if user.default_role == "IpsAdmin":
            return set(self.companies)
        return {h for h, m in user.memberships.items()
                if m.active and m.role in AUTHORIZED[operation]}

    def _job(self, company_handle: str, handle: str) -> Job:
        job = self.jobs.get(handle)
        if job is None or job.company != company_handle:
            raise IpsFault(30001, f"Invalid job handle '{handle}' for company '{company_handle}'")
        return job

    def _unfinished_run(self, job_handle: str) -> Run | None:
        for r in self.runs:
            if r.unfinished and job_handle in (r.handle, r.job.handle):
                return r
        return None

    def _target_user(self, caller: User, role: str, params: dict) -> User:
        handle, email = params.get("userHandle"), params.get("email")
        if not handle and not email:
            return caller
        if handle:
            target = next((u for u in self.users.values() if u.handle == handle), None)
        else:
            target = self.users.get(email.lower())
        if target is None:
            raise IpsFault(20002, f"Invalid request user '{handle or email}'")
        if target is not caller and role != "IpsAdmin":
            raise IpsFault(20007, f"User '{caller.email}' may not request another user")
        return target

    @staticmethod
    def _int(params: dict, name: str, default: int | None) -> int | None:
        value = params.get(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise IpsFault(30001, f"Parameter '{name}' must be an integer, not '{value}'") from None

    @staticmethod
    def _date(params: dict, name: str) -> datetime | None:
        value = params.get(name)
        if not value:
            return None
        try:
            return _dt(value)
        except ValueError:
            raise IpsFault(30001, f"Parameter '{name}' must be a dateTime, not '{value}'") from None

    @staticmethod
    def _direction(params: dict, default: str) -> bool:
        value = params.get("sortDirection") or default
        if value not in ("Ascending", "Descending"):
            raise IpsFault(30001, f"Invalid sortDirection '{value}'")
        return value == "Descending"

    # --------------------------------------------------------- operations
    def _op_executeJob(self, user: User, p: dict):
        self._authorize(user, "executeJob", p["companyHandle"])
        job = self._job(p["companyHandle"], p["jobHandle"])
        running = self._unfinished_run(job.handle)
        if running is not None:
            raise IpsFault(30001, f"Job '{job.name}' is already running "
                                  f"(active job '{running.handle}')")
        start = self._wall()
        handle, name = self._run_handle(job, start)
        self.runs.append(Run(handle, name, copy.deepcopy(job), user.email,
                             self.clock(), start, max(0.0, float(self.job_duration))))
        return None

    def _op_getScheduledJobs(self, user: User, p: dict):
        self._authorize(user, "getScheduledJobs", p["companyHandle"])
        jobs = [j for j in self.jobs.values()
                if j.company == p["companyHandle"]
                and (not p.get("jobHandle") or j.handle == p["jobHandle"])
                and (not p.get("originalName") or j.name == p["originalName"])]
        return {"jobArray": [j.wire() for j in jobs]}

    def _op_getActiveJobs(self, user: User, p: dict):
        companies = self._visible_companies(user, "getActiveJobs", p.get("companyHandle"))
        now = self.clock()
        out = []
        for r in self.runs:
            if r.job.company not in companies:
                continue
            if p.get("jobHandle") and p["jobHandle"] not in (r.handle, r.job.handle):
                continue
            if p.get("originalName") and p["originalName"] != r.job.name:
                continue
            state, progress = r.state_at(now), r.progress_at(now)
            n = len(r.job.asset_names())
            message = {
                "New": "Waiting to start",
                "Running": f"Processing file {max(1, n * progress // 100)} of {n}",
                "Stopping": f"Stopping (requested by {r.stopped_by})",
                "Done": "Stopped" if r.stop_mono is not None else "Completed",
            }[state]
            updated = r.start_wall + timedelta(seconds=max(0.0, min(now, r.finish_mono) - r.start_mono))
            out.append({
                "companyHandle": r.job.company, "jobHandle": r.handle, "name": r.name,
                "originalName": r.job.name, "type": r.job.type, "state": state,
                "submitUserEmail": r.submit_user_email, "locale": r.job.locale,
                "description": r.job.description, "serverName": self.server_name,
                "startDate": r.start_wall, "totalSize": n * 1_048_576,
                "progress": progress, "progressMessage": message,
                "lastProgressUpdate": updated,
                "taskProgressArray": [{"taskName": r.job.type, "progress": progress,
                                       "progressMessage": message}],
            })
        return {"jobArray": out}

    _LOG_SORT = {
        "JobName": lambda s, log: log.job_name,
        "LogType": lambda s, log: log.log_type,
        "StartDate": lambda s, log: log.start,
        "CompanyName": lambda s, log: s.companies[log.company].name if log.company in s.companies else "",
        "UserId": lambda s, log: s.users[log.submit_user_email.lower()].handle
        if log.submit_user_email.lower() in s.users else "",
        "Email": lambda s, log: log.submit_user_email,
        "FileErrorCount": lambda s, log: log.counts["error"],
        "FileWarningCount": lambda s, log: log.counts["warning"],
        "FileSuccessCount": lambda s, log: log.counts["success"],
    }

    def _op_getJobLogs(self, user: User, p: dict):
        companies = self._visible_companies(user, "getJobLogs", p.get("companyHandle"))
        email = None
        if p.get("userHandle"):
            target = next((u for u in self.users.values() if u.handle == p["userHandle"]), None)
            if target is None:
                raise IpsFault(20002, f"Invalid request user '{p['userHandle']}'")
            email = target.email.lower()
        sort_by = p.get("sortBy") or "StartDate"
        if sort_by not in self._LOG_SORT:
            raise IpsFault(30001, f"Invalid sortBy '{sort_by}'")
        descending = self._direction(p, "Descending")
        start, end = self._date(p, "startDate"), self._date(p, "endDate")
        num_rows = self._int(p, "numRows", None)
        logs = [log for log in self.logs
                if log.company in companies
                and (email is None or log.submit_user_email.lower() == email)
                and (start is None or log.start >= start)
                and (end is None or log.start <= end)]
        logs.sort(key=lambda log: self._LOG_SORT[sort_by](self, log), reverse=descending)
        if num_rows is not None and num_rows > 0:
            logs = logs[:num_rows]
        return {"jobLogArray": [log.wire() for log in logs]}

    def _op_getJobLogDetails(self, user: User, p: dict):
        company = p["companyHandle"]
        self._authorize(user, "getJobLogDetails", company)
        per_page = self._int(p, "recordsPerPage", 1000)
        page = self._int(p, "resultsPage", 1)
        if per_page < 1 or page < 1:
            raise IpsFault(30001, "recordsPerPage and resultsPage must be at least 1")
        per_page = min(per_page, 1000)
        sort_by = p.get("sortBy") or "Date"
        if sort_by not in ("Date", "LogType"):
            raise IpsFault(30001, f"Invalid sortBy '{sort_by}'")
        descending = self._direction(p, "Ascending")
        types = p.get("logTypeArray") or []
        if isinstance(types, str):
            types = [types]
        types = set(types)
        handle = p.get("jobHandle")
        logs = [log for log in self.logs if log.company == company
                and (not handle or handle in (log.handle, log.scheduled_handle))
                and (not p.get("originalName") or log.original_job_name == p["originalName"])]
        if handle and not logs and self._company_of(handle) != company:
            raise IpsFault(30001, f"Invalid job handle '{handle}' for company '{company}'")
        logs.sort(key=lambda log: log.start, reverse=True)
        out = []
        for log in logs:
            details = [d for d in log.details if not types or d["logType"] in types]
            details.sort(key=(lambda d: d["time"]) if sort_by == "Date"
                         else (lambda d: (d["logType"], d["time"])), reverse=descending)
            out.append(log.wire(details[(page - 1) * per_page: page * per_page], len(details)))
        return {"jobLogArray": out}

    def _company_of(self, handle: str) -> str | None:
        """The company of a scheduled job, run or log handle (None: unknown)."""
        if handle in self.jobs:
            return self.jobs[handle].company
        for r in self.runs:
            if handle in (r.handle, r.job.handle):
                return r.job.company
        for log in self.logs:
            if handle in (log.handle, log.scheduled_handle):
                return log.company
        return None

    def _set_trigger(self, user: User, p: dict, operation: str, state: str):
        self._authorize(user, operation, p["companyHandle"])
        self._job(p["companyHandle"], p["jobHandle"]).trigger_state = state
        return None

    def _op_pauseJob(self, user: User, p: dict):
        return self._set_trigger(user, p, "pauseJob", "Paused")

    def _op_resumeJob(self, user: User, p: dict):
        return self._set_trigger(user, p, "resumeJob", "Normal")

    def _op_stopJob(self, user: User, p: dict):
        company, handle = p["companyHandle"], p["jobHandle"]
        self._authorize(user, "stopJob", company)
        run = self._unfinished_run(handle)
        if run is None or run.job.company != company:
            if self._company_of(handle) != company:
                raise IpsFault(30001, f"Invalid job handle '{handle}' for company '{company}'")
            raise IpsFault(30001, f"Job '{handle}' is not running")
        if run.stop_mono is None:
            run.stop_mono = self.clock()
            run.stopped_by = user.email
        return None

    def _op_deleteJob(self, user: User, p: dict):
        self._authorize(user, "deleteJob", p["companyHandle"])
        job = self._job(p["companyHandle"], p["jobHandle"])
        del self.jobs[job.handle]
        return None

    def _op_checkLogin(self, user: User, p: dict):
        self._authorize(user, "checkLogin", None)
        target = self.users.get(p["email"].lower())
        valid = target is not None and target.is_valid and target.password == p["password"]
        company = p.get("companyHandle")
        if valid and company:
            m = target.memberships.get(company)
            valid = company in self.companies and (
                target.default_role == "IpsAdmin" or (m is not None and m.active))
        return {"status": "ValidLogin" if valid else "InvalidLogin"}

    def _op_getCompanyInfo(self, user: User, p: dict):
        handle, name = p.get("companyHandle"), p.get("companyName")
        if not handle and not name:
            raise IpsFault(30002, "Missing required parameter 'companyHandle' or 'companyName' "
                                  "for getCompanyInfo")
        if not handle:
            company = next((c for c in self.companies.values() if c.name == name), None)
            if company is None:
                raise IpsFault(20000, f"Invalid company name '{name}'")
            handle = company.handle
        self._authorize(user, "getCompanyInfo", handle)
        return {"companyInfo": self.companies[handle].wire()}

    def _op_getUserInfo(self, user: User, p: dict):
        role = self._authorize(user, "getUserInfo", None)
        return {"userInfo": self._target_user(user, role, p).wire()}

    def _op_getCompanyMembership(self, user: User, p: dict):
        role = self._authorize(user, "getCompanyMembership", None)
        target = self._target_user(user, role, p)
        if target.default_role == "IpsAdmin":
            items = [{"company": c.wire(), "role": "IpsAdmin", "isActive": True}
                     for c in self.companies.values()]
        else:
            items = [{"company": self.companies[m.company].wire(), "role": m.role,
                      "isActive": m.active}
                     for m in target.memberships.values() if m.company in self.companies]
        return {"membershipArray": items}
