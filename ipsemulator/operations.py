"""The IPS operations: authentication, authorization and one handler each.

A handler takes the live state (companies, jobs, users, runs, ``now()``),
the authenticated user and the request's parameters, and returns the
``<op>Return`` content as a plain dict that may hold more fields than a
given API version has; it never looks at the namespace. The caller holds
the state's lock.

Choices where the IPS reference leaves room (also in README.md):

* A ``companyHandle`` that names no company is ``20000 INVALID_COMPANY``; an
  existing company without an active membership is ``20006 ILLEGAL_COMPANY``;
  then the role there is checked (``20003``). A user whose ``defaultRole``
  is IpsAdmin acts as IpsAdmin in every existing company.
* Operations without a company (checkLogin, getUserInfo,
  getCompanyMembership, getActiveJobs/getJobLogs without ``companyHandle``)
  are authorized by the caller's ``defaultRole``; the two list operations
  then cover the companies where the caller's role is authorized.
* executeJob on a job with an unfinished run: ``30001``, "... is already
  running ...". Unknown job handles, or another company's, are ``30001``.
* stopJob takes the scheduled job's handle (the reference's example); a run's
  handle is ``30001`` there (``state.stop_takes_run_handles_only``: the other way
  round). getActiveJobs and getJobLogDetails take either.
* A parameter the request's version does not declare never gets here: it is
  ``30003`` when the request is parsed (``schema.check_params``).
* resumeJob moves the job's next fire time to the first schedule match after
  now: fire times that passed while it was paused are not made up for.
"""

from __future__ import annotations

import copy
from datetime import datetime

from .loader import to_datetime
from .records import Company, Job, Run, User, run_name
from .schedule import next_or_none
from .tables import AUTHORIZED, IpsFault


# ------------------------------------------------------------ authentication
def authenticate(st, credentials) -> User:
    if not credentials or not credentials[0]:
        raise IpsFault(10000, "No credentials: send an authHeader with user and password")
    email, password = credentials
    user = st.users.get(email.lower())
    if user is None or not user.is_valid:
        raise IpsFault(10002, f"Invalid user '{email}'")
    if password != user.password:
        raise IpsFault(10001, f"Invalid credentials for user '{email}'")
    return user


def _company(st, handle: str) -> Company:
    company = st.companies.get(handle)
    if company is None:
        raise IpsFault(20000, f"Invalid company handle '{handle}'")
    return company


def _role_in(st, user: User, company_handle: str) -> str:
    _company(st, company_handle)
    if user.default_role == "IpsAdmin":
        return "IpsAdmin"
    m = user.memberships.get(company_handle)
    if m is None or not m.active:
        raise IpsFault(20006, f"User '{user.email}' is not an active member of "
                              f"company '{company_handle}'")
    return m.role


def authorize(st, user: User, operation: str, company_handle: str | None) -> str:
    role = user.default_role if company_handle is None else _role_in(st, user, company_handle)
    if role not in AUTHORIZED[operation]:
        raise IpsFault(20003, f"User type '{role}' has no permission for operation '{operation}'")
    return role


def _visible_companies(st, user: User, operation: str, company_handle: str | None) -> set[str]:
    if company_handle:
        authorize(st, user, operation, company_handle)
        return {company_handle}
    authorize(st, user, operation, None)
    if user.default_role == "IpsAdmin":
        return set(st.companies)
    return {h for h, m in user.memberships.items()
            if m.active and m.role in AUTHORIZED[operation]}


# ------------------------------------------------------------------- helpers
def _job(st, company_handle: str, handle: str) -> Job:
    job = st.jobs.get(handle)
    if job is None or job.company != company_handle:
        raise IpsFault(30001, f"Invalid job handle '{handle}' for company '{company_handle}'")
    return job


def unfinished_run(st, job_handle: str, now: datetime) -> Run | None:
    for r in st.runs:
        if job_handle in (r.handle, r.job.handle) and not r.finished(now):
            return r
    return None


def company_of(st, handle: str) -> str | None:
    """The company of a scheduled job or run handle (None: unknown)."""
    if handle in st.jobs:
        return st.jobs[handle].company
    for r in st.runs:
        if handle in (r.handle, r.job.handle):
            return r.job.company
    return None


def root_of(st, company: str) -> str:
    """The root path of a company ("" when unknown)."""
    c = st.companies.get(company)
    return c.root_path if c else ""


def _target_user(st, caller: User, role: str, params: dict) -> User:
    handle, email = params.get("userHandle"), params.get("email")
    if not handle and not email:
        return caller
    if handle:
        target = next((u for u in st.users.values() if u.handle == handle), None)
    else:
        target = st.users.get(email.lower())
    if target is None:
        raise IpsFault(20002, f"Invalid request user '{handle or email}'")
    if target is not caller and role != "IpsAdmin":
        raise IpsFault(20007, f"User '{caller.email}' may not request another user")
    return target


def _int(params: dict, name: str, default: int | None) -> int | None:
    value = params.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise IpsFault(30001, f"Parameter '{name}' must be an integer, not '{value}'") from None


def _date(params: dict, name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return to_datetime(value)
    except ValueError:
        raise IpsFault(30001, f"Parameter '{name}' must be a dateTime, not '{value}'") from None


def _descending(params: dict, default: str) -> bool:
    value = params.get("sortDirection") or default
    if value not in ("Ascending", "Descending"):
        raise IpsFault(30001, f"Invalid sortDirection '{value}'")
    return value == "Descending"


# ---------------------------------------------------------------- operations
def executeJob(st, user: User, p: dict):
    authorize(st, user, "executeJob", p["companyHandle"])
    job = _job(st, p["companyHandle"], p["jobHandle"])
    now = st.now()
    running = unfinished_run(st, job.handle, now)
    if running is not None:
        raise IpsFault(30001, f"Job '{job.name}' is already running (active job '{running.handle}')")
    start_run(st, job, user.email, now)
    return None


def start_run(st, job: Job, submit_user_email: str, start: datetime) -> Run:
    """A new run of ``job`` that started at ``start`` (its handle and name say so): by
    executeJob (now), or by IPS's own scheduler (the fire time, which may be a moment ago)."""
    handle, name = run_name(job, start, {r.handle for r in st.runs})
    run = Run(handle, name, copy.deepcopy(job), submit_user_email, start, max(0.0, float(st.job_duration)))
    st.runs.append(run)
    return run


def getScheduledJobs(st, user: User, p: dict):
    company = p["companyHandle"]
    authorize(st, user, "getScheduledJobs", company)
    jobs = [j for j in st.jobs.values()
            if j.company == company
            and (not p.get("jobHandle") or j.handle == p["jobHandle"])
            and (not p.get("originalName") or j.name == p["originalName"])]
    return {"jobArray": [j.wire(root_of(st, company)) for j in jobs]}


def getActiveJobs(st, user: User, p: dict):
    companies = _visible_companies(st, user, "getActiveJobs", p.get("companyHandle"))
    now = st.now()
    out = []
    for r in st.runs:
        if r.job.company not in companies or not r.listed(now):
            continue
        if p.get("jobHandle") and p["jobHandle"] not in (r.handle, r.job.handle):
            continue
        if p.get("originalName") and p["originalName"] != r.job.name:
            continue
        out.append(r.active_job(now, st.server_name, root_of(st, r.job.company)))
    return {"jobArray": out}


_LOG_SORT = {
    "JobName": lambda st, log: log.job_name,
    "LogType": lambda st, log: log.log_type,
    "StartDate": lambda st, log: log.start,
    "CompanyName": lambda st, log: st.companies[log.company].name if log.company in st.companies else "",
    "UserId": lambda st, log: st.users[log.submit_user_email.lower()].handle
    if log.submit_user_email.lower() in st.users else "",
    "Email": lambda st, log: log.submit_user_email,
    "FileErrorCount": lambda st, log: log.counts["error"],
    "FileWarningCount": lambda st, log: log.counts["warning"],
    "FileSuccessCount": lambda st, log: log.counts["success"],
}


def getJobLogs(st, user: User, p: dict):
    companies = _visible_companies(st, user, "getJobLogs", p.get("companyHandle"))
    email = None
    if p.get("userHandle"):
        target = next((u for u in st.users.values() if u.handle == p["userHandle"]), None)
        if target is None:
            raise IpsFault(20002, f"Invalid request user '{p['userHandle']}'")
        email = target.email.lower()
    sort_by = p.get("sortBy") or "StartDate"
    if sort_by not in _LOG_SORT:
        raise IpsFault(30001, f"Invalid sortBy '{sort_by}'")
    descending = _descending(p, "Descending")
    start, end = _date(p, "startDate"), _date(p, "endDate")
    num_rows = _int(p, "numRows", None)
    now = st.now()
    # A log exists from its run's start (executeJob) on.
    runs = [r for r in st.runs
            if r.job.company in companies
            and (email is None or r.submit_user_email.lower() == email)
            and (start is None or r.start >= start)
            and (end is None or r.start <= end)]
    logs = [r.log(now, root_of(st, r.job.company), st.server_name) for r in runs]
    logs.sort(key=lambda log: _LOG_SORT[sort_by](st, log), reverse=descending)
    if num_rows is not None and num_rows > 0:
        logs = logs[:num_rows]
    return {"jobLogArray": [log.wire() for log in logs]}


def getJobLogDetails(st, user: User, p: dict):
    company = p["companyHandle"]
    authorize(st, user, "getJobLogDetails", company)
    per_page = _int(p, "recordsPerPage", 1000)
    page = _int(p, "resultsPage", 1)
    if per_page < 1 or page < 1:
        raise IpsFault(30001, "recordsPerPage and resultsPage must be at least 1")
    per_page = min(per_page, 1000)
    sort_by = p.get("sortBy") or "Date"
    if sort_by not in ("Date", "LogType"):
        raise IpsFault(30001, f"Invalid sortBy '{sort_by}'")
    descending = _descending(p, "Ascending")
    types = p.get("logTypeArray") or []
    if isinstance(types, str):
        types = [types]
    types = set(types)
    handle = p.get("jobHandle")
    now = st.now()
    runs = [r for r in st.runs if r.job.company == company
            and (not handle or handle in (r.handle, r.job.handle))
            and (not p.get("originalName") or r.job.name == p["originalName"])]
    if handle and not runs and company_of(st, handle) != company:
        raise IpsFault(30001, f"Invalid job handle '{handle}' for company '{company}'")
    logs = sorted((r.log(now, root_of(st, company), st.server_name) for r in runs),
                  key=lambda log: log.start, reverse=True)
    out = []
    for log in logs:
        details = [d for d in log.details if not types or d["logType"] in types]
        details.sort(key=(lambda d: (d["time"], d["seq"])) if sort_by == "Date"
                     else (lambda d: (d["logType"], d["time"], d["seq"])), reverse=descending)
        out.append(log.wire(details[(page - 1) * per_page: page * per_page], len(details)))
    return {"jobLogArray": out}


def _set_trigger(st, user: User, p: dict, operation: str, state: str):
    authorize(st, user, operation, p["companyHandle"])
    _job(st, p["companyHandle"], p["jobHandle"]).trigger_state = state
    return None


def pauseJob(st, user: User, p: dict):
    return _set_trigger(st, user, p, "pauseJob", "Paused")


def resumeJob(st, user: User, p: dict):
    _set_trigger(st, user, p, "resumeJob", "Normal")
    # Fire times that passed while paused are not made up for: the next is after now.
    job = st.jobs[p["jobHandle"]]
    job.next_fire_time = next_or_none(job.exec_schedule, st.now(), st.tz) or job.next_fire_time
    return None


def stopJob(st, user: User, p: dict):
    company, handle = p["companyHandle"], p["jobHandle"]
    authorize(st, user, "stopJob", company)
    # The scheduled job's handle, as the reference's example sends it (47|My Test Job|): a
    # run's handle there is not documented, so it is refused like any other unknown handle.
    now = st.now()
    if st.stop_takes_run_handles_only:
        run = next((r for r in st.runs if r.handle == handle and r.job.company == company), None)
        if run is None:
            raise IpsFault(30001, f"Invalid active job handle '{handle}' for company '{company}'")
        if run.finished(now):
            run = None
    else:
        job = _job(st, company, handle)
        run = unfinished_run(st, job.handle, now)
    if run is None:
        raise IpsFault(30001, f"Job '{handle}' is not running")
    if run.stopped_after is None:
        run.stopped_after = run.elapsed(now)
        run.stopped_by = user.email
    return None


def deleteJob(st, user: User, p: dict):
    authorize(st, user, "deleteJob", p["companyHandle"])
    job = _job(st, p["companyHandle"], p["jobHandle"])
    del st.jobs[job.handle]
    return None


def checkLogin(st, user: User, p: dict):
    authorize(st, user, "checkLogin", None)
    target = st.users.get(p["email"].lower())
    valid = target is not None and target.is_valid and target.password == p["password"]
    company = p.get("companyHandle")
    if valid and company:
        m = target.memberships.get(company)
        valid = company in st.companies and (
            target.default_role == "IpsAdmin" or (m is not None and m.active))
    return {"status": "ValidLogin" if valid else "InvalidLogin"}


def getCompanyInfo(st, user: User, p: dict):
    handle, name = p.get("companyHandle"), p.get("companyName")
    if not handle and not name:
        raise IpsFault(30002, "Missing required parameter 'companyHandle' or 'companyName' "
                              "for getCompanyInfo")
    if not handle:
        company = next((c for c in st.companies.values() if c.name == name), None)
        if company is None:
            raise IpsFault(20000, f"Invalid company name '{name}'")
        handle = company.handle
    authorize(st, user, "getCompanyInfo", handle)
    return {"companyInfo": st.companies[handle].wire()}


def getUserInfo(st, user: User, p: dict):
    role = authorize(st, user, "getUserInfo", None)
    return {"userInfo": _target_user(st, user, role, p).wire()}


def getCompanyMembership(st, user: User, p: dict):
    role = authorize(st, user, "getCompanyMembership", None)
    target = _target_user(st, user, role, p)
    if target.default_role == "IpsAdmin":
        rows = [(c, "IpsAdmin", True) for c in st.companies.values()]
    else:
        rows = [(st.companies[m.company], m.role, m.active)
                for m in target.memberships.values() if m.company in st.companies]
    # Before 6.0: companyArray of Company; from 6.0: membershipArray of
    # CompanyMembership. The WSDL of the request's namespace picks one. A
    # Company has no isActive: before 6.0 only the companies the user may
    # work in are listed.
    return {"companyArray": [c.wire() for c, _, active in rows if active],
            "membershipArray": [{"company": c.wire(), "role": r, "isActive": a} for c, r, a in rows]}


HANDLERS = {
    "executeJob": executeJob,
    "getScheduledJobs": getScheduledJobs,
    "getActiveJobs": getActiveJobs,
    "getJobLogs": getJobLogs,
    "getJobLogDetails": getJobLogDetails,
    "pauseJob": pauseJob,
    "resumeJob": resumeJob,
    "stopJob": stopJob,
    "deleteJob": deleteJob,
    "checkLogin": checkLogin,
    "getCompanyInfo": getCompanyInfo,
    "getUserInfo": getUserInfo,
    "getCompanyMembership": getCompanyMembership,
}
