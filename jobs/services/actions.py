"""The job actions, as one table: what each names in IPS, how it is sent, and its words.

In the spirit of healthchecks' TRANSPORTS: a row names its IPS operation (so
the user types that may press it, from roles.AUTHORIZED), its send function,
its button, confirm and messages. One press view (views.press) and one press
path (press.press) serve every row; the templates loop over the rows. Adding
an action (pause, resume) is a row, its send function, and its tests.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips, roles
from ..models import Execution, Job
from .base import RequestInfo
from .follow import start_follow
from .press import RunResult, mark_sent, press

log = logging.getLogger(__name__)
Outcome = Execution.Outcome


@dataclass(frozen=True)
class Action:
    """A button that calls one IPS operation on a job, and what to tell the user of it.

    The words are lazy: a message built from them reads in one language, the one it is shown in."""

    name: str  # its URL and key: /jobs/<pk>/<name>
    operation: str  # the IPS operation: who may press it is roles.AUTHORIZED[operation]
    #: send(execution, job) -> (outcome, message, IpsError or None), after the audit row is written.
    send: Callable
    label: Promise  # the button: "Run"
    #: The confirm question, with %(job)s, %(handle)s and %(company)s.
    confirm: Promise
    verb: Promise  # "run the job"
    done: Promise  # what nothing-sent means: "Nothing was started"
    uncertain: Promise  # when IPS may or may not have acted
    #: "idle": offered on a job IPS is not running (Run); "active": on a run IPS is running (Stop).
    offered: str = "idle"
    #: The answer replaces the job's row (Run); else it is only a message (Stop).
    swaps_row: bool = False
    button_class: str = ""
    #: The page's main action: its enabled button stands out.
    primary: bool = False
    #: The button's label while a press of the job is on its way.
    busy_label: Promise | None = None
    #: Called with the audit row when IPS accepted: Run follows the run to its result.
    on_accepted: Callable[[Execution], object] | None = None


def describe_error(error: ips.IpsError, job: Job, action: Action, acted: bool = True) -> tuple[str, Promise]:
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


def send_run(execution: Execution, job: Job):
    acted = False
    try:
        # Inside the try: fetching a remote WSDL can fail like any IPS call.
        client = ips.client_for(job.company.connection)
        listed = listed_runs(client, job)
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
        mark_sent(execution)
        client.execute_job(job.company.handle, job.handle)
        identify_run(client, job, execution, before={a.job_handle for a in listed})
        return Outcome.ACCEPTED, format_lazy(_("IPS accepted “{job}” and is running it now."), job=job.name), None
    except ips.IpsError as exc:
        return *describe_error(exc, job, ACTIONS["run"], acted), exc


def send_stop(execution: Execution, job: Job):
    acted = False
    try:
        client = ips.client_for(job.company.connection)
        active = [a for a in listed_runs(client, job) if a.state != "Done"]
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
        mark_sent(execution)
        # The scheduled job's handle, as the reference's stopJob example sends it (47|My Test Job|);
        # whether IPS takes a run's handle there is not documented. The row keeps the run's.
        try:
            client.stop_job(job.company.handle, job.handle)
        except ips.IpsApiFault as error:
            # 30001 INVALID_PARAMETER: the handle was refused, nothing stopped; an IPS that takes
            # only run handles gets the run's, once.
            if error.code != 30001 or not run.job_handle or run.job_handle == job.handle:
                raise
            log.info("stopJob refused the job handle %r (30001): retrying with the run's", job.handle)
            client.stop_job(job.company.handle, run.job_handle)
        return Outcome.ACCEPTED, format_lazy(
            _("IPS is stopping “{job}” (run {run})."), job=job.name, run=run.name
        ), None
    except ips.IpsError as exc:
        return *describe_error(exc, job, ACTIONS["stop"], acted), exc


def identify_run(client: ips.IpsClient, job: Job, execution: Execution, before: set[str]) -> None:
    """Name the run executeJob started: the job's run getActiveJobs lists now and did not before.

    Best effort: the run is accepted whatever this says. Without a name, the
    run is later matched to its log by the job's name and the time it was sent.
    """
    try:
        new = [a for a in listed_runs(client, job) if a.job_handle not in before]
    except ips.IpsError as error:
        log.warning("run of %r accepted, but IPS could not name it: %s", job.handle, error)
        return
    if new:
        run = max(new, key=lambda a: (a.start_date is not None, a.start_date or dt.datetime.min))
        execution.ips_run_handle = run.job_handle or ""
        execution.ips_run_name = run.name or ""


def listed_runs(client: ips.IpsClient, job: Job) -> list[ips.ActiveJob]:
    """The job's runs getActiveJobs lists, Done ones included (they linger there)."""
    return [
        a for a in client.get_active_jobs(job.company.handle, original_name=job.name) if a.original_name == job.name
    ]


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "run",
            "executeJob",
            send_run,
            label=_("Run"),
            confirm=_("Run “%(job)s” in company %(handle)s (%(company)s) now?"),
            verb=_("run the job"),
            done=_("Nothing was started"),
            uncertain=_("The job may or may not have started: check the job's state before running it again."),
            swaps_row=True,
            button_class="run",
            primary=True,
            busy_label=_("Starting…"),
            on_accepted=start_follow,
        ),
        Action(
            "stop",
            "stopJob",
            send_stop,
            label=_("Stop"),
            confirm=_("Stop the run of “%(job)s” in company %(handle)s (%(company)s) now?"),
            verb=_("stop the run"),
            done=_("Nothing was stopped"),
            uncertain=_("The run may or may not be stopping: check Active in IPS before trying again."),
            offered="active",
            button_class="danger",
        ),
    )
}


def run_job(job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Run ``job`` now (executeJob); an accepted run is followed to its IPS result."""
    return press(ACTIONS["run"], job, access, user, info)


def stop_job(job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Stop the run IPS is running of ``job`` (stopJob), whoever started it; audited like a Run."""
    return press(ACTIONS["stop"], job, access, user, info)
