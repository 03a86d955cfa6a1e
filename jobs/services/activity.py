"""What IPS is running in a company (getActiveJobs), and a run's log details (getJobLogDetails)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips
from ..models import Company, Execution, Job


@dataclass(frozen=True)
class ActiveRun:
    """A run IPS lists as active in a company, with the dashboard's job of it (if known)."""

    run: ips.ActiveJob
    job: Job | None


def active_runs(company: Company) -> tuple[list[ActiveRun], str | Promise]:
    """getActiveJobs for the company, whoever started the runs: (runs, error, lazy: only shown)."""
    try:
        listed = ips.client_for(company.connection).get_active_jobs(company.handle)
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
#: getJobLogDetails' filter, paging and sorting: declared from 4.0 on. Where a version lacks
#: them (the unversioned request has only companyHandle, jobHandle, originalName), every
#: row comes and the filter and the page are the dashboard's.
SERVER_SIDE_PARAMS = ("logTypeArray", "recordsPerPage", "resultsPage", "sortBy", "sortDirection")


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
        client = ips.client_for(execution.company.connection)
        server_side = all(client.declares("getJobLogDetails", p) for p in SERVER_SIDE_PARAMS)
        if server_side:
            logs = client.get_job_log_details(
                execution.company_handle,
                job_handle=handle,
                log_types=PROBLEM_LOG_TYPES if problems_only else None,
                records_per_page=DETAILS_PER_PAGE,
                results_page=page,
                sort_by="Date",
                sort_direction="Ascending",
            )
        else:
            logs = client.get_job_log_details(execution.company_handle, job_handle=handle)
    except ips.IpsError as error:
        return LogDetails(
            page=page, error=format_lazy(_("IPS could not give the log details ({error})."), error=str(error))
        )
    log_ = next((entry for entry in logs if entry.job_handle == handle), None)
    if log_ is None:
        return LogDetails(page=page, error=_("IPS has no log for this run yet."))
    if not server_side:
        # In IPS's order; counted here, as detailTotalRows would have (the rows matching, all pages).
        rows = [d for d in log_.details if not problems_only or d.log_type in PROBLEM_LOG_TYPES]
        start = (page - 1) * DETAILS_PER_PAGE
        log_ = dataclasses.replace(
            log_, details=rows[start : start + DETAILS_PER_PAGE], detail_total_rows=len(rows)
        )
    if log_.detail_total_rows is not None:
        pages = max(1, -(-log_.detail_total_rows // DETAILS_PER_PAGE))
    else:  # IPS paged but did not say how many rows there are: a full page may have a next one
        pages = page + 1 if len(log_.details) == DETAILS_PER_PAGE else page
    return LogDetails(log=log_, page=page, pages=pages)

