"""Read the demo data file (``demo.toml``) into records.

Validated strictly, so that a typo in the data fails at start-up rather than
as a strange reply. A job's ``history`` table generates many past runs (the
busy company) here instead of as hundreds of lines of TOML; it is cheap
because the logs are computed when asked for, which keeps reset() fast.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .records import Company, Job, Membership, Run, User, run_name
from .tables import JOB_TYPES, OUTCOMES, ROLES, TRIGGER_STATES

DEFAULT_DATA = Path(__file__).resolve().parent / "demo.toml"
# How long a run from the data file's history took.
HISTORY_RUN_SECONDS = 42.0


@dataclass
class Data:
    server_name: str
    tz: timezone
    companies: dict[str, Company] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)  # by email, lowercased
    runs: list[Run] = field(default_factory=list)
    injections: list[dict] = field(default_factory=list)  # kwargs of make_injection


def to_datetime(value) -> datetime | None:
    """A TOML date-time or ISO string -> aware datetime (UTC if naive)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def parse_offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


def read_settings(path: Path) -> tuple[dict, timezone]:
    """The parsed file and its time zone (needed before the timeline exists)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return data, parse_offset(data.get("emulator", {}).get("utc_offset", "+00:00"))


def load(data: dict, tz: timezone, now: datetime, scheduler: bool = False) -> Data:
    """Build the records; ``now`` is the wall time of the start (for history). A job with
    ``only_with_scheduler = true`` is left out unless ``scheduler`` (IPS's own scheduler on)."""
    emu = data.get("emulator", {})
    out = Data(server_name=emu.get("server_name", "ips-emulator"), tz=tz)
    for c in data.get("companies", []):
        company = Company(str(c["handle"]), c["name"], c.get("root_path", ""),
                          to_datetime(c.get("expires")))
        out.companies[company.handle] = company
    past: list[tuple[Job, datetime]] = []
    for j in data.get("jobs", []):
        only_with_scheduler = j.get("only_with_scheduler", False)
        if not isinstance(only_with_scheduler, bool):
            raise ValueError(f"job {j['name']!r}: only_with_scheduler must be true or false")
        job = _job(j, out.companies)
        if only_with_scheduler and not scheduler:
            continue
        if job.handle in out.jobs:
            raise ValueError(f"job {job.name!r}: duplicate handle {job.handle!r}")
        out.jobs[job.handle] = job
        injects = j.get("inject", [])
        for spec in [injects] if isinstance(injects, dict) else injects:
            spec = dict(spec)
            spec.setdefault("times", None)
            out.injections.append({**spec, "job_handle": job.handle})
        for start in j.get("past_runs", []):
            past.append((job, to_datetime(start)))
        past.extend((job, start) for start in _history(j, now))
    for n, u in enumerate(data.get("users", []), start=1):
        user = _user(u, n, out.companies)
        out.users[user.email.lower()] = user
    taken: set[str] = set()
    for job, start in sorted(past, key=lambda p: p[1]):
        handle, name = run_name(job, start, taken)
        taken.add(handle)
        out.runs.append(Run(handle, name, copy.deepcopy(job), job.submit_user_email,
                            start, HISTORY_RUN_SECONDS, history=True))
    return out


def _job(j: dict, companies: dict[str, Company]) -> Job:
    company = str(j["company"])
    if company not in companies:
        raise ValueError(f"job {j['name']!r}: unknown company {company!r}")
    if j["type"] not in JOB_TYPES:
        raise ValueError(f"job {j['name']!r}: unknown type {j['type']!r}")
    outcome = j.get("outcome", "success")
    if outcome not in OUTCOMES:
        raise ValueError(f"job {j['name']!r}: unknown outcome {outcome!r}")
    trigger = j.get("trigger_state", "Normal")
    if trigger not in TRIGGER_STATES:
        raise ValueError(f"job {j['name']!r}: unknown trigger_state {trigger!r}")
    detail = j.get("detail", {})
    if not isinstance(detail, dict):
        raise ValueError(f"job {j['name']!r}: detail must be a table")
    if detail and JOB_TYPES[j["type"]].detail is None:
        raise ValueError(f"job {j['name']!r}: a {j['type']} job has no job-detail element")
    return Job(
        company=company,
        handle=j.get("handle", f"{company}|{j['name']}|"),
        name=j["name"], type=j["type"],
        submit_user_email=j.get("submit_user_email", ""),
        locale=j.get("locale", "en_US"),
        description=j.get("description", ""),
        exec_schedule=j.get("exec_schedule", ""),
        next_fire_time=to_datetime(j.get("next_fire_time")),
        time_zone=j.get("time_zone", ""),
        trigger_state=trigger,
        outcome=outcome, files=int(j.get("files", 5)),
        assets=list(j.get("assets", [])),
        detail=copy.deepcopy(detail),
    )


def _history(j: dict, now: datetime) -> list[datetime]:
    """``history = { runs = N, every_minutes = M, last_minutes_ago = L }``:
    N past runs, M minutes apart, the newest L minutes (default M) before the
    start, on whole minutes."""
    spec = j.get("history")
    if not spec:
        return []
    runs, every = int(spec["runs"]), float(spec["every_minutes"])
    last = float(spec.get("last_minutes_ago", every))
    if runs < 0 or every <= 0 or last < 0:
        raise ValueError(f"job {j['name']!r}: invalid history {spec!r}")
    anchor = now.replace(second=0, microsecond=0)
    return [anchor - timedelta(minutes=last + i * every) for i in range(runs)]


def _user(u: dict, n: int, companies: dict[str, Company]) -> User:
    if u["default_role"] not in ROLES:
        raise ValueError(f"user {u['email']!r}: unknown role {u['default_role']!r}")
    user = User(
        handle=u.get("handle", f"{100 + n}|{u['email']}"),
        email=u["email"], password=u["password"],
        first_name=u.get("first_name", ""), last_name=u.get("last_name", ""),
        default_role=u["default_role"], is_valid=u.get("is_valid", True),
        password_expires=to_datetime(u.get("password_expires")),
    )
    for m in u.get("memberships", []):
        if m["role"] not in ROLES:
            raise ValueError(f"user {user.email!r}: unknown role {m['role']!r}")
        if str(m["company"]) not in companies:
            raise ValueError(f"user {user.email!r}: unknown company {m['company']!r}")
        user.memberships[str(m["company"])] = Membership(
            str(m["company"]), m["role"], m.get("active", True))
    return user
