"""What IPS says of one accepted run: still active, and its own log (found by its handle or name).

The follow (``follow``) and the browser's poll both ask through run_status().
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips
from ..models import Execution

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


def is_the_run(execution: Execution, handle: str | None, name: str | None, original: str | None) -> bool:
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
        client = ips.client_for(job.company.connection)
        listed = [
            a
            for a in client.get_active_jobs(job.company.handle, original_name=job.name)
            if is_the_run(execution, a.job_handle, a.name, a.original_name)
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
    """A run's log as getJobLogDetails has it, or None.

    One detail row is asked for where the version pages details; before 4.0 the request
    declares no paging (only companyHandle, jobHandle, originalName), so all rows come."""
    paging = {"records_per_page": 1} if client.declares("getJobLogDetails", "recordsPerPage") else {}
    for detailed in client.get_job_log_details(company_handle, job_handle=run_handle, **paging):
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
    for _page in range(pages):
        logs = client.get_job_logs(
            execution.company_handle,
            sort_by="StartDate",
            sort_direction="Ascending",
            start_date=since,
            num_rows=LOG_PAGE_ROWS,
        )
        for candidate in logs:
            if is_the_run(execution, candidate.job_handle, candidate.job_name, candidate.original_job_name) and (
                execution.ips_run_handle or _started_since(candidate.start_date, execution)
            ):
                return candidate
        if len(logs) < LOG_PAGE_ROWS or logs[-1].start_date is None or logs[-1].start_date <= since:
            return None
        since = logs[-1].start_date
    return None

