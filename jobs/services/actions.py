"""The job actions, as one table: what each names in IPS, how it is sent, and its words.

In the spirit of healthchecks' TRANSPORTS: a row names its IPS operation (so
the user types that may press it, from roles.AUTHORIZED), its send function,
its button, confirm and messages. One press view (views.press) and one press
path (press.press) serve every row; the templates loop over the rows. Adding
an action is a row, its send function, and its tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips, roles
from ..models import Execution, Job
from .base import RequestInfo, fit
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
    #: On which jobs the button is offered (templates/jobs/job_list.html's action-cell):
    #: "idle": a job IPS is not running (Run); "active": a run IPS is running (Stop);
    #: "unpaused": a job whose trigger state is not "Paused" (Pause); "paused": one whose is (Resume).
    offered: str = "idle"
    #: The answer replaces the job's row (Run, Pause, Resume); else it is only a message (Stop).
    swaps_row: bool = False
    button_class: str = ""
    #: The page's main action: its enabled button stands out.
    primary: bool = False
    #: The button's label while a press of the job is on its way.
    busy_label: Promise | None = None


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
        # IPS's time as it answered the look: the run this press starts cannot have begun before it
        # (the watcher names the run from IPS's own logs, in IPS's clock).
        mark_sent(execution, ips_clock_at=client.reply_date())
        client.execute_job(job.company.handle, job.handle)
        return Outcome.ACCEPTED, format_lazy(_("IPS accepted “{job}” and is running it now."), job=job.name), None
    except ips.IpsError as exc:
        if acted and not exc.request_sent:
            # Nothing reached IPS: no run to look for, and no reason to hold the next press back.
            execution.sent_at = execution.ips_clock_at = None
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


def send_pause(execution: Execution, job: Job):
    return _change_schedule(execution, job, ACTIONS["pause"], ips.IpsClient.pause_job)


def send_resume(execution: Execution, job: Job):
    return _change_schedule(execution, job, ACTIONS["resume"], ips.IpsClient.resume_job)


def _change_schedule(execution: Execution, job: Job, action: Action, call: Callable):
    """pauseJob or resumeJob, then the job's trigger state as IPS reports it, stored on the job.

    No look before, unlike Run and Stop: the read-back after says what IPS made
    of it, whatever the state was."""
    try:
        client = ips.client_for(job.company.connection)
        mark_sent(execution)
        call(client, job.company.handle, job.handle)
    except ips.IpsError as exc:
        return *describe_error(exc, job, action), exc
    pausing = action.operation == "pauseJob"
    try:
        scheduled = read_back_schedule(client, job)
    except ips.IpsError as error:
        # IPS accepted the change: a failed look afterwards does not undo it, nor is it the row's fault.
        log.warning("%s of %r accepted, but its trigger state could not be read back: %s",
                    action.operation, job.handle, error)
        text = (
            _("IPS accepted pausing “{job}”, but its trigger state could not be read back ({error}): "
              "sync from IPS to see it.")
            if pausing else
            _("IPS accepted resuming “{job}”, but its trigger state could not be read back ({error}): "
              "sync from IPS to see it.")
        )
        return Outcome.ACCEPTED, format_lazy(text, job=job.name, error=str(error)), None
    state = job.trigger_state or "—"
    if pausing:
        return Outcome.ACCEPTED, format_lazy(
            _("IPS accepted pausing “{job}” and now reports its trigger state as {state}."),
            job=job.name, state=state,
        ), None
    if scheduled.next_fire_time is None:
        return Outcome.ACCEPTED, format_lazy(
            _("IPS accepted resuming “{job}” and now reports its trigger state as {state}, with no next fire time."),
            job=job.name, state=state,
        ), None
    return Outcome.ACCEPTED, format_lazy(
        _("IPS accepted resuming “{job}” and now reports its trigger state as {state}, next fire time {time}."),
        job=job.name, state=state, time=f"{timezone.localtime(scheduled.next_fire_time):%Y-%m-%d %H:%M %Z}",
    ), None


class NotListed(ips.IpsError):
    """getScheduledJobs answered without the job."""


def read_back_schedule(client: ips.IpsClient, job: Job) -> ips.ScheduledJob:
    """The job as getScheduledJobs lists it now; its trigger state and next fire time are stored on ``job``."""
    listed = [s for s in client.get_scheduled_jobs(job.company.handle, job_handle=job.handle)
              if s.job_handle == job.handle]
    if not listed:
        raise NotListed("getScheduledJobs did not list the job")
    scheduled = listed[0]
    job.trigger_state = fit(Job, "trigger_state", scheduled.trigger_state or "")
    job.next_fire_time = scheduled.next_fire_time
    # update(): only these, whatever a sync running now writes to the rest; read from IPS now, so an
    # open jobs page's next poll sends this job's buttons again (views.jobs.active_runs).
    job.last_synced_at = timezone.now()
    Job.objects.filter(pk=job.pk).update(trigger_state=job.trigger_state, next_fire_time=job.next_fire_time,
                                         last_synced_at=job.last_synced_at)
    return scheduled


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
        # Pause and Resume act on the schedule, not on a run: offered whatever IPS is running.
        # Their answer swaps the row, so the button flips with the trigger state read back.
        Action(
            "pause",
            "pauseJob",
            send_pause,
            label=_("Pause"),
            confirm=_(
                "Pause the schedule of “%(job)s” in company %(handle)s (%(company)s)? "
                "IPS will not start it at its fire times until it is resumed."
            ),
            verb=_("pause the job"),
            done=_("Nothing was paused"),
            uncertain=_(
                "The job may or may not be paused: sync from IPS to see its trigger state before trying again."
            ),
            offered="unpaused",
            swaps_row=True,
            button_class="pause",
        ),
        Action(
            "resume",
            "resumeJob",
            send_resume,
            label=_("Resume"),
            confirm=_(
                "Resume the schedule of “%(job)s” in company %(handle)s (%(company)s)? "
                "IPS will start it again from its next fire time."
            ),
            verb=_("resume the job"),
            done=_("Nothing was resumed"),
            uncertain=_(
                "The job may or may not be resumed: sync from IPS to see its trigger state before trying again."
            ),
            offered="paused",
            swaps_row=True,
            button_class="resume",
        ),
    )
}


def run_job(job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Run ``job`` now (executeJob); an accepted run is followed to its IPS result."""
    return press(ACTIONS["run"], job, access, user, info)


def stop_job(job: Job, access: roles.Access, user, info: RequestInfo) -> RunResult:
    """Stop the run IPS is running of ``job`` (stopJob), whoever started it; audited like a Run."""
    return press(ACTIONS["stop"], job, access, user, info)
