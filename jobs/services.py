"""The use cases: run a job, sync jobs, test a connection, reconcile runs.

Views, admin actions and management commands call these and hold no
business logic themselves. This is the only writer of Execution outcomes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import ips, roles
from .models import (
    Chore,
    Company,
    Connection,
    Execution,
    HistoryExport,
    IpsIdentity,
    Job,
    Membership,
    MembershipChange,
    Profile,
    RunFollow,
)

log = logging.getLogger(__name__)
Outcome = Execution.Outcome


@dataclass(frozen=True)
class RequestInfo:
    """Who asked, from where: stored on the audit row."""

    request_id: str
    client_ip: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class RunResult:
    """What a press of Run did, and what the user may be told of it."""

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


def _english(text) -> str:
    """Log lines read the same whatever language the request that wrote them spoke."""
    with translation.override("en"):
        return str(text())


def _interrupted_message(operation: str = "executeJob") -> Promise:
    # Whole sentences: the verb's place differs between languages.
    if operation == "stopJob":
        return _(
            "The server handling this press stopped before IPS answered. "
            "IPS may or may not have stopped the run: check its state before trying again."
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
    execution.duration_ms = max(0, int((execution.finished_at - start).total_seconds() * 1000))
    if execution.pk is None:
        execution.save()
        return True
    with transaction.atomic():
        stored = (
            Execution.objects.select_for_update().filter(pk=execution.pk).values_list("outcome", flat=True).first()
        )
        if stored != Outcome.SENDING:
            log.error(
                "run of %r (request %s) ended %s after its audit row %s was marked %s, which the row keeps",
                execution.job_handle,
                execution.request_id,
                outcome,
                execution.pk,
                stored,
            )
            return False
        execution.save()
    return True


def reconcile_stale(job: Job | None = None) -> int:
    """Mark 'sending' rows of dead processes 'interrupted'; returns how many."""
    rows = Execution.objects.stale()
    if job is not None:
        rows = rows.filter(job=job)
    count = 0
    for execution in rows:
        if finish(execution, Outcome.INTERRUPTED, _interrupted_message(execution.operation)):
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


@dataclass(frozen=True)
class Action:
    """A button that calls one IPS operation on a job: what to tell the user of it.

    The words are lazy: a message built from them reads in one language, the one it is shown in."""

    operation: str
    verb: Promise  # "run the job"
    done: Promise  # what nothing-sent means: "Nothing was started"
    uncertain: Promise  # when IPS may or may not have acted


RUN = Action(
    "executeJob",
    _("run the job"),
    _("Nothing was started"),
    _("The job may or may not have started: check the job's state before running it again."),
)
STOP = Action(
    "stopJob",
    _("stop the run"),
    _("Nothing was stopped"),
    _("The run may or may not be stopping: check Active in IPS before trying again."),
)


def describe_error(error: ips.IpsError, job: Job, action: Action = RUN, acted: bool = True) -> tuple[str, Promise]:
    """(outcome, message in plain words) for an IPS failure; the message is lazy.

    ``acted``: the failing call was the action itself (executeJob, stopJob),
    not the look at getActiveJobs before it, so IPS may have acted."""
    company = job.company.handle
    if isinstance(error, ips.IpsFault) and not acted:
        # The look at getActiveJobs was refused, not the action.
        return Outcome.REFUSED, format_lazy(
            _(
                "IPS refused to say whether “{job}” is running ({operation}: {fault} — {reason}). {done}. "
                "This is about the dashboard's IPS service account or the set-up of company {company}: "
                "ask an administrator to check the connection."
            ),
            job=job.name, operation=error.operation, fault=error.code_label, reason=error.reason,
            done=action.done, company=company,
        )
    if isinstance(error, ips.IpsAuthorizationFault):
        return Outcome.REFUSED, format_lazy(
            _(
                "IPS refused to {action}: {fault} — {reason}. This is about the dashboard's IPS service "
                "account or the set-up of company {company}, not your own role: ask an administrator to "
                "check the connection."
            ),
            action=action.verb, fault=error.code_label, reason=error.reason, company=company,
        )
    if isinstance(error, ips.IpsAuthenticationFault):
        return Outcome.REFUSED, format_lazy(
            _(
                "IPS did not accept the dashboard's service account: {fault} — {reason}. "
                "Ask an administrator to check the connection's email and password."
            ),
            fault=error.code_label, reason=error.reason,
        )
    if isinstance(error, ips.IpsFault):
        return Outcome.REFUSED, format_lazy(
            _("IPS refused to {action}: {fault} — {reason}."),
            action=action.verb, fault=error.code_label, reason=error.reason,
        )
    if isinstance(error, ips.IpsTimeout) and not error.request_sent:
        return Outcome.TIMED_OUT, format_lazy(
            _("IPS did not accept a connection within {seconds} s. Nothing was sent; try again later."),
            seconds=f"{settings.IPS_CONNECT_TIMEOUT:g}",
        )
    if not isinstance(error, (ips.IpsTimeout, ips.IpsMalformedReply, ips.IpsUnavailable)):
        # Not IPS's doing: a connection the dashboard cannot use as configured.
        return Outcome.ERROR, format_lazy(
            _("The dashboard could not call IPS: {error}. Nothing was sent; tell an administrator."),
            error=str(error),
        )
    if isinstance(error, ips.IpsTimeout):
        outcome = Outcome.TIMED_OUT
        if error.whole_reply:
            total = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
            what = format_lazy(
                _("IPS started answering but did not finish within {seconds} s, the deadline for a whole reply"),
                seconds=f"{total:g}",
            )
        else:
            what = format_lazy(_("IPS did not answer within {seconds} s"), seconds=f"{settings.IPS_READ_TIMEOUT:g}")
    elif isinstance(error, ips.IpsMalformedReply):
        outcome = Outcome.BAD_REPLY
        what = format_lazy(_("IPS answered with a reply that could not be read ({error})"), error=str(error))
    elif isinstance(error, ips.IpsHttpError):
        outcome = Outcome.IPS_ERROR
        what = format_lazy(_("IPS answered with an HTTP {status} error page instead of SOAP"), status=error.status)
    elif error.request_sent:
        outcome, what = Outcome.UNREACHABLE, format_lazy(_("IPS failed while answering ({error})"), error=str(error))
    else:
        return Outcome.UNREACHABLE, format_lazy(
            _("IPS could not be reached ({error}). Nothing was sent; try again later."), error=str(error)
        )
    if not acted:
        return outcome, format_lazy(
            _("{what}, when asked whether “{job}” is running. {done}: try again later."),
            what=what, job=job.name, done=action.done,
        )
    # Nothing of its own to translate: both pieces are.
    return outcome, format_lazy("{what}. {uncertain}", what=what, uncertain=action.uncertain)


def run_job(job: Job, access: roles.Access, user, info: RequestInfo, schedule=None) -> RunResult:
    """Run ``job`` now on behalf of ``user``, whose ``access`` the caller resolved.

    Every press leaves one audit row, whatever happens; the result says what
    the user may be told. An accepted run is followed to its IPS result by
    ``schedule``d follow steps (see start_follow)."""
    result = _press(job, access, user, info, RUN, _send_run)
    if schedule is not None and result.outcome == Outcome.ACCEPTED:
        start_follow(result.execution, schedule)
    return result


def stop_job(job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Stop the run IPS is running of ``job`` (stopJob), whoever started it; audited like a Run."""
    return _press(job, access, user, info, STOP, _send_stop)


def _press(job: Job, access: roles.Access, user, info: RequestInfo, action: Action, send) -> RunResult:
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
    reconcile_stale(job)
    execution.outcome = Outcome.SENDING
    try:
        with transaction.atomic():
            execution.save()
    except IntegrityError:
        # The partial unique index: another press of this job is in flight.
        execution = _new_execution(job, user, access, info, operation=action.operation)
        return _refused_here(execution, Outcome.ALREADY_RUNNING, _in_flight_message(job), visible)
    try:
        outcome, message, error = send(execution, job)
        _finish_sent(execution, outcome, message, error)
    except _Superseded:
        # Taken for dead before it acted: nothing was sent, the row says so already.
        execution.refresh_from_db()
        log.warning("%s of %r (request %s) was taken for dead before it acted: nothing sent",
                    action.operation, execution.job_handle, execution.request_id)
        # reconcile_stale()'s words, in the user's language when the row holds them.
        interrupted = _interrupted_message(action.operation)
        said = interrupted if execution.message == _english(lambda: interrupted) else None
        return RunResult(execution, visible, said=said)
    except BaseException:
        # A bug, a database that failed the finish, or gunicorn's worker timeout
        # (SystemExit): never leave our own row 'sending' (as stored, whatever the
        # instance says), and never claim to know what IPS did.
        if execution._stored.get("outcome") == Outcome.SENDING:
            execution.outcome = Outcome.SENDING
            with contextlib.suppress(Exception):
                finish(execution, Outcome.INTERRUPTED, _interrupted_message(action.operation))
        raise
    _log_outcome(execution, error)
    return RunResult(execution, visible, where=error.url if error is not None else "", said=message)


def _refused_here(execution: Execution, outcome: str, message: Promise, visible: bool) -> RunResult:
    """A press that ends before anything is sent to IPS."""
    finish(execution, outcome, message)
    _log_outcome(execution)
    return RunResult(execution, visible, said=message)


def _in_flight_message(job: Job) -> Promise:
    other = Execution.objects.filter(job=job, outcome=Outcome.SENDING).first()
    if other is None:
        return format_lazy(
            _("“{job}” is already being started or stopped. Nothing was sent: wait for that to finish."), job=job.name
        )
    # Whole sentences: the verb's place differs between languages.
    if other.operation == STOP.operation:
        text = _(
            "“{job}” is already being stopped by {user} (since {since}). Nothing was sent. "
            "If that server stopped before IPS answered, Run and Stop are offered again from {again}."
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


class _Superseded(Exception):
    """The press's row was finished by another process (taken for dead) before it acted."""


def _mark_sent(execution: Execution) -> None:
    """The action itself (not the look at getActiveJobs before it) goes to IPS now, unless
    another process already took this press for dead and finished its row."""
    with transaction.atomic():
        stored = (
            Execution.objects.select_for_update().filter(pk=execution.pk).values_list("outcome", flat=True).first()
        )
        if stored != Outcome.SENDING:
            raise _Superseded()
        execution.sent_at = timezone.now()
        execution.save(update_fields=["sent_at"])


def _send_run(execution: Execution, job: Job):
    acted = False
    try:
        # Inside the try: fetching a remote WSDL can fail like any IPS call.
        client = job.company.connection.client()
        listed = _listed_runs(client, job)
        active = [a for a in listed if a.state != "Done"]
        if active:
            a = active[0]
            progress = f", {a.progress}%" if a.progress is not None else ""
            return Outcome.ALREADY_RUNNING, format_lazy(
                _(
                    "IPS reports “{job}” already running (state {state}{progress}). "
                    "Wait for it to finish before running it again."
                ),
                job=job.name, state=a.state, progress=progress,
            ), None
        acted = True
        _mark_sent(execution)
        client.execute_job(job.company.handle, job.handle)
        _identify_run(client, job, execution, before={a.job_handle for a in listed})
        return Outcome.ACCEPTED, format_lazy(_("IPS accepted “{job}” and is running it now."), job=job.name), None
    except ips.IpsError as exc:
        return *describe_error(exc, job, RUN, acted), exc


def _send_stop(execution: Execution, job: Job):
    acted = False
    try:
        client = job.company.connection.client()
        active = [a for a in _listed_runs(client, job) if a.state != "Done"]
        if not active:
            return Outcome.NOT_RUNNING, format_lazy(
                _("IPS reports no run of “{job}” to stop. Nothing was sent."), job=job.name
            ), None
        run = active[0]
        execution.ips_run_handle, execution.ips_run_name = run.job_handle or "", run.name or ""
        if run.state == "Stopping":
            return Outcome.NOT_RUNNING, format_lazy(
                _("IPS is already stopping “{job}” ({run})."), job=job.name, run=run.name
            ), None
        acted = True
        _mark_sent(execution)
        client.stop_job(job.company.handle, run.job_handle)
        return Outcome.ACCEPTED, format_lazy(
            _("IPS is stopping “{job}” (run {run})."), job=job.name, run=run.name
        ), None
    except ips.IpsError as exc:
        return *describe_error(exc, job, STOP, acted), exc


def _identify_run(client: ips.IpsClient, job: Job, execution: Execution, before: set[str]) -> None:
    """Name the run executeJob started: the job's run getActiveJobs lists now and did not before.

    Best effort: the run is accepted whatever this says. Without a name, the
    run is later matched to its log by the job's name and the time it was sent.
    """
    try:
        new = [a for a in _listed_runs(client, job) if a.job_handle not in before]
    except ips.IpsError as error:
        log.warning("run of %r accepted, but IPS could not name it: %s", job.handle, error)
        return
    if new:
        run = max(new, key=lambda a: (a.start_date is not None, a.start_date or dt.datetime.min))
        execution.ips_run_handle = run.job_handle or ""
        execution.ips_run_name = run.name or ""


def _listed_runs(client: ips.IpsClient, job: Job) -> list[ips.ActiveJob]:
    """The job's runs getActiveJobs lists, Done ones included (they linger there)."""
    return [
        a for a in client.get_active_jobs(job.company.handle, original_name=job.name) if a.original_name == job.name
    ]


# --- Sync -------------------------------------------------------------------


@dataclass
class SyncResult:
    company: Company
    created: int = 0
    updated: int = 0
    gone: int = 0
    error: str | Promise = ""
    #: "field of job …" (lazy) for each value cut to fit its column.
    cut: list = field(default_factory=list)

    def __str__(self):
        # Said in the language active when shown; the log line asks for English (_english).
        if self.error:
            return f"{self.company}: {self.error}"
        text = gettext("{company}: {created} new, {updated} updated, {gone} gone from IPS").format(
            company=self.company, created=self.created, updated=self.updated, gone=self.gone
        )
        if self.cut:
            shown = "; ".join(str(c) for c in self.cut[:3])
            if len(self.cut) > 3:
                shown = gettext("{shown}; and {count} more").format(shown=shown, count=len(self.cut) - 3)
            cut = ngettext(
                "{count} value too long for the dashboard, shortened (the jobs still run): {shown}",
                "{count} values too long for the dashboard, shortened (the jobs still run): {shown}",
                len(self.cut),
            ).format(count=len(self.cut), shown=shown)
            text = f"{text}. {cut}"
        return text


def _fit(values: dict, handle: str, cut: list) -> dict:
    """Cut text to its column's size, so one odd job never fails a company's sync."""
    for name, value in values.items():
        limit = getattr(Job._meta.get_field(name), "max_length", None)
        if limit and isinstance(value, str) and len(value) > limit:
            values[name] = value[: limit - 1] + "…"
            cut.append(format_lazy(
                _("{field} of {job} ({count} characters)"),
                field=name, job=f"{handle[:60]}{'…' if len(handle) > 60 else ''}", count=len(value),
            ))
    return values


_SYNC_FIELDS = [
    "name",
    "original_name",
    "type",
    "description",
    "submit_user_email",
    "exec_schedule",
    "next_fire_time",
    "time_zone",
    "trigger_state",
]


def sync_company(company: Company) -> SyncResult:
    """Upsert the company's jobs from getScheduledJobs; mark missing ones gone."""
    result = SyncResult(company)
    try:
        scheduled = company.connection.client().get_scheduled_jobs(company.handle)
    except ips.IpsError as error:
        result.error = format_lazy(_("sync failed: {error}"), error=str(error))
        log.warning("sync of company %s failed: %s", company.handle, error)
        return result
    now = timezone.now()
    with transaction.atomic():
        # The company row serializes concurrent syncs of it (new jobs have no row to lock yet).
        Company.objects.select_for_update().filter(pk=company.pk).exists()
        existing = {j.handle: j for j in Job.objects.select_for_update().filter(company=company)}
        seen = set()
        for s in scheduled:
            seen.add(s.job_handle)
            values = {
                "name": s.name or s.job_handle,
                "original_name": s.original_name or "",
                "type": s.type or "",
                "description": s.description or "",
                "submit_user_email": s.submit_user_email or "",
                "exec_schedule": s.exec_schedule or "",
                "next_fire_time": s.next_fire_time,
                "time_zone": s.time_zone or "",
                "trigger_state": s.trigger_state or "",
            }
            _fit(values, s.job_handle, result.cut)
            job = existing.get(s.job_handle)
            if job is None:
                existing[s.job_handle] = Job.objects.create(
                    company=company, handle=s.job_handle, last_synced_at=now, **values
                )
                result.created += 1
                continue
            for k, v in values.items():
                setattr(job, k, v)
            job.is_gone, job.gone_at, job.last_synced_at = False, None, now
            job.save(update_fields=[*_SYNC_FIELDS, "is_gone", "gone_at", "last_synced_at"])
            result.updated += 1
        for handle, job in existing.items():
            if handle not in seen and not job.is_gone:
                job.is_gone, job.gone_at = True, now
                job.save(update_fields=["is_gone", "gone_at"])
                result.gone += 1
    log.info("sync: %s", _english(lambda: result))
    return result


def sync_companies(companies) -> list[SyncResult]:
    return [sync_company(c) for c in companies]


# --- Connections --------------------------------------------------------------

# The service account's own IPS type must be allowed everything we call.
SERVICE_ACCOUNT_TYPES = {roles.UserType.IPS_ADMIN, roles.UserType.IPS_USER}


def check_connection(connection: Connection) -> tuple[bool, str]:
    """checkLogin, getUserInfo, getCompanyMembership: (ok, message in plain words).

    The service account's IPS type must allow what the dashboard calls, in
    every company of the connection, or Runs there end in 20003.
    """
    try:
        client = connection.client()
        if not client.check_login(connection.username, connection.get_password()):
            return False, f"{connection}: IPS says the login of {connection.username} is invalid."
        info = client.get_user_info()
        memberships = client.get_company_membership()
    except ips.IpsAuthorizationFault as error:
        # Real IPS's reason need not name the user type: say what to fix.
        return False, (
            f"{connection}: IPS refused {error.operation} to the service account {connection.username} "
            f"({error.code_label} — {error.reason}). Its IPS type must be IpsUser or IpsAdmin to run jobs; "
            "a WebServiceUser may call none of checkLogin, getScheduledJobs or executeJob."
        )
    except ips.IpsError as error:
        return False, f"{connection}: {error}"
    default = info.default_role if info else None
    if default not in SERVICE_ACCOUNT_TYPES:
        return False, (
            f"{connection}: login works, but the service account's IPS type is {default or 'unknown'}; "
            "it must be IpsUser or IpsAdmin to run jobs (executeJob)."
        )
    problems = []
    if default != roles.UserType.IPS_ADMIN:  # IpsAdmin overrides per-company roles
        # Before 6.0 a membership has no role of its own: the user's one role applies.
        in_ips = {m.company.company_handle: m.role or default for m in memberships if m.company and m.is_active}
        for company in connection.companies.all():
            role = in_ips.get(company.handle)
            if role is None:
                problems.append(f"not an active member of company {company.handle}")
            elif role not in SERVICE_ACCOUNT_TYPES:
                problems.append(f"{role} in company {company.handle}, which may not run jobs")
    listed = _listing(connection, info, memberships)
    if problems:
        return False, (
            f"{connection}: login works as {info.email} ({default}), but the service account is "
            f"{'; '.join(problems)}. It must be IpsUser or IpsAdmin in every company of the connection.{listed}"
        )
    return True, f"{connection}: login works as {info.email} ({default}).{listed}"


def _listing(connection: Connection, info, memberships) -> str:
    """What IPS lists for the service account, in words for the admin."""
    rows = _service_account_companies(connection, info, memberships)
    if not rows:
        return " IPS lists no company for it."
    return " IPS lists for it: " + "; ".join(
        f"{handle} {name} as {role}{'' if known else ' (not added here yet)'}" for handle, name, role, known in rows
    ) + "."


# --- A run's state in IPS -----------------------------------------------------

#: Clock skew allowed between the dashboard and IPS when finding a run's log.
LOG_WINDOW_SKEW = dt.timedelta(minutes=5)
#: getJobLogs rows asked for at once, and how many such pages one poll reads.
LOG_PAGE_ROWS = 100
LOG_PAGES = 5


@dataclass(frozen=True)
class RunStatus:
    """What IPS says of one accepted run: still active, and its log so far."""

    active: ips.ActiveJob | None = None
    log: ips.JobLog | None = None
    #: This poll failed; the next one tries again. Never taken for the end. Lazy: shown
    #: to the user in their language, kept on the follow in English (follow_step).
    error: str | Promise = ""

    @property
    def finished(self) -> bool:
        """Over: IPS no longer works on it (or lists it Done) and its log is final."""
        if self.error or self.log is None or not self.log.is_final:
            return False
        return self.active is None or self.active.state == "Done"


def _is_the_run(execution: Execution, handle: str | None, name: str | None, original: str | None) -> bool:
    if execution.ips_run_handle:
        return handle == execution.ips_run_handle or (bool(execution.ips_run_name) and name == execution.ips_run_name)
    # Not named at press time: the job's run, by its own name or the run-name
    # pattern "<job name>_<timestamp>" (before 4.0 logs have no originalJobName).
    job_name = execution.job_name
    return original == job_name or (name or "").startswith(f"{job_name}_") or name == job_name


def run_status(execution: Execution, log_pages: int | None = None) -> RunStatus:
    """getActiveJobs for the run, then its own log (found by handle in a date window)."""
    job = execution.job
    if job is None:
        return RunStatus(error=_("The job of this run was deleted from the dashboard."))
    try:
        client = job.company.connection.client()
        listed = [
            a
            for a in client.get_active_jobs(job.company.handle, original_name=job.name)
            if _is_the_run(execution, a.job_handle, a.name, a.original_name)
            and (execution.ips_run_handle or _started_since(a.start_date, execution))
        ]
        active = next((a for a in listed if a.state != "Done"), listed[0] if listed else None)
        if execution.ips_run_handle:
            # Named: its log by its own handle, with endDate in every version (before 4.0
            # getJobLogs never fills it), whatever else started at the same second.
            log_ = _log_by_handle(client, execution.company_handle, execution.ips_run_handle)
        else:
            log_ = _run_log(client, execution, log_pages or LOG_PAGES)
            if log_ is not None and not log_.is_final and (active is None or active.state == "Done"):
                log_ = _log_by_handle(client, execution.company_handle, log_.job_handle) or log_
    except ips.IpsError as error:
        return RunStatus(error=format_lazy(
            _("IPS could not say how the run is doing this time ({error}); asking again."), error=str(error)
        ))
    return RunStatus(active=active, log=log_)


def _log_by_handle(client: ips.IpsClient, company_handle: str, run_handle: str) -> ips.JobLog | None:
    """A run's log as getJobLogDetails has it (one detail row asked for), or None."""
    for detailed in client.get_job_log_details(company_handle, job_handle=run_handle, records_per_page=1):
        if detailed.job_handle == run_handle:
            return detailed
    return None


def _started_since(when, execution: Execution) -> bool:
    sent = execution.sent_at or execution.requested_at
    return when is None or when >= sent - LOG_WINDOW_SKEW


def _run_log(client: ips.IpsClient, execution: Execution, pages: int = LOG_PAGES) -> ips.JobLog | None:
    """The run's own log: earliest first from the time it was sent, page by page by start date.

    Never the company's newest logs: a busy company has more runs than one
    page, and earlier runs of the same job have logs too.
    """
    since = (execution.sent_at or execution.requested_at) - LOG_WINDOW_SKEW
    for _ in range(pages):
        logs = client.get_job_logs(
            execution.company_handle,
            sort_by="StartDate",
            sort_direction="Ascending",
            start_date=since,
            num_rows=LOG_PAGE_ROWS,
        )
        for candidate in logs:
            if _is_the_run(execution, candidate.job_handle, candidate.job_name, candidate.original_job_name) and (
                execution.ips_run_handle or _started_since(candidate.start_date, execution)
            ):
                return candidate
        if len(logs) < LOG_PAGE_ROWS or logs[-1].start_date is None or logs[-1].start_date <= since:
            return None
        since = logs[-1].start_date
    return None


# --- Following a run to its result --------------------------------------------
#
# Every accepted run is followed until IPS says how it ended, by background
# tasks (jobs/tasks.py) and by the browser's polls alike: both call IPS
# through run_status() and write what they learn with record_status(), the
# final result once (first writer wins). A follow step is handed a
# ``schedule(execution_id, token, when)`` callable: services.py never knows
# which task backend runs it.

IpsResult = Execution.IpsResult


def _new_token() -> str:
    return secrets.token_hex(16)


def follow_lease() -> dt.timedelta:
    """How long one poll may hold a run: every IPS call of run_status() at its deadline, plus the margin."""
    per_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
    return dt.timedelta(seconds=(2 + LOG_PAGES) * per_call + settings.IPS_STALE_MARGIN)


def follow_interval(poll: int) -> dt.timedelta:
    """The wait before poll number ``poll`` (from 1): 1.5 times longer each time, up to the maximum."""
    seconds = settings.IPS_FOLLOW_FIRST_POLL * (1.5 ** max(0, poll - 1))
    return dt.timedelta(seconds=min(seconds, settings.IPS_FOLLOW_MAX_INTERVAL))


def start_follow(execution: Execution, schedule) -> RunFollow | None:
    """Follow an accepted run in the background, from the first poll on."""
    if not execution.is_following:
        return None
    now = timezone.now()
    follow, created = RunFollow.objects.get_or_create(
        execution=execution,
        defaults={
            "deadline": now + settings.IPS_FOLLOW_DEADLINE,
            "next_poll_at": now + follow_interval(1),
            "token": _new_token(),
        },
    )
    if created:
        _schedule_after_commit(schedule, follow)
    return follow


def follow_step(execution_id: int, token: str, schedule, now: dt.datetime | None = None) -> str:
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
        follow.token = _new_token()
        if follow.lease_until is not None and follow.lease_until > now:
            # Another worker is polling this run right now: come back after it, or sooner
            # (a live poll ends long before its lease; a dead one's lease is what it takes).
            follow.next_poll_at = min(follow.lease_until, now + follow_interval(follow.polls + 1))
            follow.save(update_fields=["token", "next_poll_at"])
            _schedule_after_commit(schedule, follow)
            return "leased"
        follow.polls += 1
        follow.lease_until = now + follow_lease()
        follow.next_poll_at = now + follow_interval(follow.polls + 1)
        follow.save(update_fields=["token", "polls", "lease_until", "next_poll_at"])
        _schedule_after_commit(schedule, follow)
    execution = Execution.objects.select_related("job__company__connection").get(pk=execution_id)
    if execution.is_following:
        if now >= follow.deadline:
            record_no_result(execution)
            error = ""
        else:
            began = dt.datetime.now(dt.timezone.utc)
            status = run_status(execution)
            record_status(execution, status)
            error = _english(lambda: status.error)
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


def _schedule_after_commit(schedule, follow: RunFollow) -> None:
    execution_id, token, when = follow.pk, follow.token, follow.next_poll_at

    def enqueue():
        try:
            schedule(execution_id, token, when)
        except Exception:
            # The run stands; its follow waits for `manage.py resume_follows`.
            log.exception("could not schedule the follow of execution %s", execution_id)

    transaction.on_commit(enqueue)


def resume_follows(schedule) -> int:
    """Start again every follow whose chain was lost (a broker flushed, a backend swapped)."""
    count = 0
    for follow in RunFollow.objects.filter(done_at__isnull=True):
        with transaction.atomic():
            follow = RunFollow.objects.select_for_update().get(pk=follow.pk)
            if follow.done_at is not None:
                continue
            follow.token = _new_token()
            follow.save(update_fields=["token"])
            _schedule_after_commit(schedule, follow)
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
            row.ips_state = a.state or ""
            row.ips_progress = a.progress
            if not row.ips_run_handle and a.job_handle:
                row.ips_run_handle, row.ips_run_name = a.job_handle, a.name or ""
            row.ips_started_at = row.ips_started_at or a.start_date
        if log_ is not None:
            if not row.ips_run_handle and log_.job_handle:
                row.ips_run_handle, row.ips_run_name = log_.job_handle, log_.job_name or ""
            row.ips_log_type = (log_.log_type or "")[:64]
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
        row.save(update_fields=sorted(Execution.IPS_FIELDS))
    if status.finished:
        log.info(
            "run of %r (execution %s, request %s) ended in IPS: %s",
            row.job_handle,
            row.pk,
            row.request_id,
            _english(lambda: row.ips_result_label),
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
    log.warning("run of %r (execution %s): %s", row.job_handle, row.pk, _english(lambda: row.ips_result_label))
    execution.refresh_from_db()
    return True


# --- What IPS is running, and a run's log details -------------------------------


@dataclass(frozen=True)
class ActiveRun:
    """A run IPS lists as active in a company, with the dashboard's job of it (if known)."""

    run: ips.ActiveJob
    job: Job | None


def active_runs(company: Company) -> tuple[list[ActiveRun], str | Promise]:
    """getActiveJobs for the company, whoever started the runs: (runs, error, lazy: only shown)."""
    try:
        listed = company.connection.client().get_active_jobs(company.handle)
    except ips.IpsError as error:
        return [], format_lazy(
            _("IPS could not say what it is running this time ({error}); asking again."), error=str(error)
        )
    names = {a.original_name for a in listed}
    by_name = {j.name: j for j in Job.objects.filter(company=company, name__in=names).select_related("company")}
    return [ActiveRun(a, by_name.get(a.original_name)) for a in listed], ""


#: The warning and error log types of the reference (string-constants/r-job-log-types.md).
PROBLEM_LOG_TYPES = (
    "FatalError",
    "ImageRenderingPublishError",
    "ImageServingPublishError",
    "ImageServingPublishWarning",
    "PdfRipError",
    "PublishToCmError",
    "ServerDirectoryPublishError",
    "ServerDirectoryPublishWarning",
    "TemplateMergeError",
    "TrashWarning",
    "UploadError",
    "UploadWarning",
    "VideoPublishError",
    "VideoPublishWarning",
)
DETAILS_PER_PAGE = 50


@dataclass(frozen=True)
class LogDetails:
    """One page of a run's log details from getJobLogDetails."""

    log: ips.JobLog | None = None
    page: int = 1
    pages: int = 1
    error: str | Promise = ""  # lazy: only shown

    @property
    def rows(self) -> list[ips.JobLogDetail]:
        return self.log.details if self.log else []


def log_details(execution: Execution, page: int = 1, problems_only: bool = False) -> LogDetails:
    """The run's log details, a page at a time, optionally only its warnings and errors."""
    handle = execution.ips_run_handle
    if not handle:
        return LogDetails(error=_("IPS has not named this run, so its log details cannot be asked for."))
    if execution.company is None:
        return LogDetails(error=_("The company of this run was deleted from the dashboard."))
    try:
        logs = execution.company.connection.client().get_job_log_details(
            execution.company_handle,
            job_handle=handle,
            log_types=PROBLEM_LOG_TYPES if problems_only else None,
            records_per_page=DETAILS_PER_PAGE,
            results_page=page,
            sort_by="Date",
            sort_direction="Ascending",
        )
    except ips.IpsError as error:
        return LogDetails(
            page=page, error=format_lazy(_("IPS could not give the log details ({error})."), error=str(error))
        )
    log_ = next((entry for entry in logs if entry.job_handle == handle), None)
    if log_ is None:
        return LogDetails(page=page, error=_("IPS has no log for this run yet."))
    if log_.detail_total_rows is not None:
        pages = max(1, -(-log_.detail_total_rows // DETAILS_PER_PAGE))
    else:  # before 4.0 IPS does not say how many there are: a full page may have a next one
        pages = page + 1 if len(log_.details) == DETAILS_PER_PAGE else page
    return LogDetails(log=log_, page=page, pages=pages)


# --- Memberships ------------------------------------------------------------------


def change_membership(actor, user, company: Company, role: str | None, source: str) -> MembershipChange | None:
    """Give ``user`` the IPS user type ``role`` in ``company`` (None: take it away), recorded.

    The one way memberships change (the admin, load_demo, sign-in with IPS):
    each change is a MembershipChange row with who, when, before and after.
    Nobody changes their own membership by hand."""
    if source == MembershipChange.Source.ADMIN and actor is not None and actor.pk == user.pk:
        raise PermissionError("Nobody changes their own IPS user type: ask another administrator.")
    with transaction.atomic():
        current = Membership.objects.select_for_update().filter(user=user, company=company).first()
        before = current.role if current else ""
        after = role or ""
        if before == after:
            return None
        from_ips = source in (MembershipChange.Source.IPS_SIGN_IN, MembershipChange.Source.IPS_REFRESH)
        read_at = timezone.now() if from_ips else None
        if role is None:
            current.delete()
        elif current is None:
            Membership.objects.create(user=user, company=company, role=role, from_ips=from_ips, read_at=read_at)
        else:
            current.role, current.from_ips, current.read_at = role, from_ips, read_at
            current.save(update_fields=["role", "from_ips", "read_at"])
        change = MembershipChange.objects.create(
            source=source,
            actor=actor,
            actor_name=actor.get_username() if actor is not None else "",
            user=user,
            username=user.get_username(),
            company=company,
            company_handle=company.handle,
            role_before=before,
            role_after=after,
        )
    log.info("membership changed: %s", _english(lambda: str(change)))
    return change



# --- Sign in with IPS, and IPS's view of people -------------------------------------


class SignInRefused(Exception):
    """The dashboard will not sign this person in: the message (lazy, for the login form) says why.

    ``final``: about the person (no other connection may sign them in either);
    else about this connection only (it does not speak HTTPS)."""

    def __init__(self, message: str | Promise, *, final: bool = True):
        super().__init__(message)
        self.final = final


def is_local_account(username: str) -> bool:
    """A dashboard account of that name that does not sign in with IPS: its password stays here."""
    User = get_user_model()
    return User.objects.filter(username=username.strip().lower(), ips_identity__isnull=True).exists() or (
        User.objects.filter(username=username.strip(), ips_identity__isnull=True).exists()
    )


_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def password_may_go_to(connection: Connection) -> bool:
    """A person's IPS password only ever travels over HTTPS (the local emulator excepted)."""
    url = urlsplit(connection.resolved_service_url())
    return url.scheme == "https" or (url.scheme == "http" and (url.hostname or "") in _LOOPBACK)


def sign_in_with_ips(connection: Connection, email: str, password: str):
    """The Django user for an IPS login, its memberships read from IPS as that person.

    None: IPS says the email and password are not a valid login. Raises
    SignInRefused when IPS accepts them but the dashboard will not (expired
    password, a local account of that name) and ips.IpsError when IPS could
    not be asked. The password is used for these calls and never stored.
    """
    if not password_may_go_to(connection):
        raise SignInRefused(
            format_lazy(
                _("Sign-in with IPS needs an HTTPS connection; “{connection}” is not."), connection=str(connection)
            ),
            final=False,
        )
    service = connection.client()
    if not service.check_login(email, password):
        return None
    # A client of its own, not kept: the person's password lives only as long as this call.
    person = ips.IpsClient(dataclasses.replace(connection.endpoint(), user=email, password=password))
    try:
        info = person.get_user_info()
        memberships = person.get_company_membership()
    except ips.IpsAuthorizationFault:
        # A WebServiceUser may not read even its own user info: no rights here.
        info, memberships = None, []
    finally:
        person.close()
    now = timezone.now()
    if info is not None and info.password_expires is not None and info.password_expires <= now:
        raise SignInRefused(format_lazy(
            _("Your IPS password expired on {date}: change it in IPS, then sign in again."),
            date=f"{timezone.localtime(info.password_expires):%Y-%m-%d}",
        ))
    if info is not None and info.is_valid is False:
        raise SignInRefused(_("IPS says your IPS account is not valid any more."))
    User = get_user_model()
    username = email.strip().lower()
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=username).first()
        if user is None:
            user = User(username=username, email=email)
            user.set_unusable_password()
            user.save()
        else:
            identity = IpsIdentity.objects.filter(user=user).first()
            if identity is None:
                raise SignInRefused(_(
                    "A local dashboard account already has this name: log in with its own password, "
                    "or ask an administrator."
                ))
            if identity.connection_id != connection.pk:
                # The same email on another IPS is another person as far as we know.
                raise SignInRefused(format_lazy(
                    _("This email signs in with IPS through “{other}”, not “{connection}”: ask an administrator."),
                    other=str(identity.connection), connection=str(connection),
                ))
        if not user.is_active:
            raise SignInRefused(_("Your dashboard account is switched off: ask an administrator."))
        if info is not None:
            user.first_name, user.last_name = (info.first_name or "")[:150], (info.last_name or "")[:150]
            user.save(update_fields=["first_name", "last_name"])
        IpsIdentity.objects.update_or_create(
            user=user,
            defaults={
                "connection": connection,
                "email": email,
                "user_handle": (info.user_handle if info else "") or "",
                "default_role": (info.default_role if info else "") or "",
                "password_expires": info.password_expires if info else None,
                "read_at": now,
            },
        )
        apply_ips_memberships(user, connection, info, memberships, MembershipChange.Source.IPS_SIGN_IN, now)
    log.info("signed in with IPS: %s on %s", username, connection)
    return user


def ips_roles(connection: Connection, info: ips.UserInfo | None, memberships) -> dict[str, str]:
    """{company handle: IPS user type} as IPS gives them, for the connection's companies."""
    default = info.default_role if info is not None else None
    handles = set(connection.companies.values_list("handle", flat=True))
    if default == roles.UserType.IPS_ADMIN:  # IpsAdmin overrides per-company roles
        return dict.fromkeys(handles, roles.UserType.IPS_ADMIN)
    out = {}
    for m in memberships:
        handle = m.company.company_handle if m.company else None
        # Before 6.0 a membership has no role of its own: the user's one role applies.
        role = m.role or default
        if handle in handles and m.is_active is not False and role in roles.UserType.values:
            out[handle] = role
    return out


def apply_ips_memberships(user, connection: Connection, info, memberships, source: str, now=None) -> int:
    """Make the user's memberships in the connection's companies exactly IPS's; returns the changes."""
    now = now or timezone.now()
    wanted = ips_roles(connection, info, memberships)
    changes = 0
    for company in connection.companies.all():
        role = wanted.get(company.handle)
        if change_membership(None, user, company, role, source):
            changes += 1
        if role is not None:
            Membership.objects.filter(user=user, company=company).update(from_ips=True, read_at=now)
    return changes


def refresh_ips_memberships(connection: Connection) -> tuple[int, str]:
    """Read every signed-in person's memberships from IPS again: (people refreshed, why not if none).

    Only a service account of type IpsAdmin may read other users; otherwise
    people are refreshed at their next sign-in, and their memberships age out.
    """
    try:
        service = connection.client()
        me = service.get_user_info()
    except ips.IpsError as error:
        return 0, f"{connection}: IPS could not be asked ({error})."
    if me is None or me.default_role != roles.UserType.IPS_ADMIN:
        return 0, (
            f"{connection}: the service account is not an IpsAdmin, so it may not read other people; "
            "their memberships are refreshed when they sign in."
        )
    refreshed = 0
    for identity in IpsIdentity.objects.filter(connection=connection).select_related("user"):
        try:
            info = service.get_user_info(identity.user_handle or None, email=None if identity.user_handle else identity.email)
            memberships = service.get_company_membership(info.user_handle if info else identity.user_handle)
        except ips.IpsFault as error:
            if error.code in (20002, 10002):  # IPS no longer knows the person
                info, memberships = None, []
            else:
                log.warning("refresh of %s failed: %s", identity.email, error)
                continue
        except ips.IpsError as error:
            log.warning("refresh of %s failed: %s", identity.email, error)
            continue
        if info is not None and info.is_valid is False:
            info, memberships = None, []
        with transaction.atomic():
            apply_ips_memberships(identity.user, connection, info, memberships, MembershipChange.Source.IPS_REFRESH)
            identity.read_at = timezone.now()
            if info is not None:
                identity.default_role = info.default_role or ""
                identity.password_expires = info.password_expires
            identity.save(update_fields=["read_at", "default_role", "password_expires"])
        refreshed += 1
    return refreshed, ""


def service_account_companies(connection: Connection) -> list[tuple[str, str, str, bool]]:
    """(handle, name, the service account's role, known here) of each company IPS lists for it."""
    client = connection.client()
    return _service_account_companies(connection, client.get_user_info(), client.get_company_membership())


def _service_account_companies(connection: Connection, info, memberships) -> list[tuple[str, str, str, bool]]:
    known = set(connection.companies.values_list("handle", flat=True))
    out = []
    for m in memberships:
        if m.company is None or m.is_active is False:
            continue
        role = m.role or (info.default_role if info else "") or ""
        out.append((m.company.company_handle, m.company.name or "", role, m.company.company_handle in known))
    return out


def add_service_account_companies(connection: Connection) -> list[Company]:
    """Create the Companies IPS lists for the service account that the dashboard lacks."""
    added = []
    for handle, name, _, known in service_account_companies(connection):
        if not known:
            added.append(Company.objects.create(connection=connection, handle=handle, name=name or handle))
    return added


# --- Recurring chores -------------------------------------------------------------

REFRESH_MEMBERSHIPS = "refresh_ips_memberships"


def start_chore(name: str, schedule, when: dt.datetime | None = None) -> Chore:
    """(Re)start the one chain of a chore: any older chain's next run finds its token stale."""
    when = when or timezone.now()
    with transaction.atomic():
        chore, _ = Chore.objects.select_for_update().get_or_create(
            name=name, defaults={"token": _new_token(), "next_run_at": when}
        )
        chore.token, chore.next_run_at = _new_token(), when
        chore.save(update_fields=["token", "next_run_at"])
        token = chore.token
        transaction.on_commit(lambda: _call_schedule(schedule, name, token, when))
    return chore


def _call_schedule(schedule, name, token, when) -> None:
    try:
        schedule(name, token, when)
    except Exception:
        log.exception("could not schedule chore %s", name)


def refresh_memberships_chore(token: str, schedule) -> str:
    """One run of the membership refresh: every sign-in connection, then the next run."""
    with transaction.atomic():
        chore = Chore.objects.select_for_update().filter(name=REFRESH_MEMBERSHIPS).first()
        if chore is None or chore.token != token:
            return "stale"
        chore.token = _new_token()
        chore.next_run_at = timezone.now() + settings.IPS_MEMBERSHIP_REFRESH
        chore.save(update_fields=["token", "next_run_at"])
        next_token, when = chore.token, chore.next_run_at
        transaction.on_commit(lambda: _call_schedule(schedule, REFRESH_MEMBERSHIPS, next_token, when))
    results = []
    for connection in Connection.objects.filter(ips_sign_in=True):
        count, why = refresh_ips_memberships(connection)
        results.append(why or f"{connection}: {count} people refreshed from IPS")
    Chore.objects.filter(name=REFRESH_MEMBERSHIPS).update(last_run_at=timezone.now(), last_result="\n".join(results))
    return "; ".join(results) or "no connection signs in with IPS"


# --- History exports and user settings ----------------------------------------------


def start_export(user, filters: dict, info: RequestInfo) -> HistoryExport:
    """Record a CSV export of history as it starts: who, which filters, from where."""
    export = HistoryExport(
        user=user,
        username=user.get_username(),
        filters=filters,
        request_id=info.request_id,
        client_ip=info.client_ip,
    )
    export.save()
    log.info("history export %s by %s started (filters %s)", export.pk, export.username, filters)
    return export


def finish_export(export: HistoryExport, rows: int, completed: bool) -> None:
    """Complete the record, once: how many rows went out, and whether all did."""
    export.row_count = rows
    export.completed = completed
    export.finished_at = timezone.now()
    export.save()
    log.info("history export %s by %s %s after %d rows", export.pk, export.username,
             "completed" if completed else "broke off", rows)


def set_time_zone(user, zone: str) -> None:
    """The user's own choice of time zone ("" for the browser's)."""
    Profile.objects.update_or_create(user=user, defaults={"time_zone": zone})

