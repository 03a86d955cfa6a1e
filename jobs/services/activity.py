"""What IPS is running in a company (as the watcher recorded it), and a run's log details (getJobLogDetails)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import ips
from ..models import Company, CompanyWatch, Execution, Job


@dataclass(frozen=True)
class RunNow:
    """A run as the watcher last saw it in IPS (the attributes of getActiveJobs' ActiveJob the pages show)."""

    name: str
    original_name: str
    state: str
    progress: int | None
    start_date: object
    #: Who started it: the person who pressed it here, else IPS's submit user and how.
    by: str
    started_by: str
    execution: Execution
    progress_message: str = ""


@dataclass(frozen=True)
class ActiveRun:
    """A run IPS is running in a company, with the dashboard's job of it (if known)."""

    run: RunNow
    job: Job | None


def run_now(execution: Execution) -> RunNow:
    by = execution.username
    if execution.started_by != Execution.StartedBy.HERE:
        by = format_lazy("{user} ({how})", user=execution.username or "—", how=execution.get_started_by_display())
    return RunNow(
        name=execution.ips_run_name or execution.job_name,
        original_name=execution.job_name,
        state=execution.ips_state or "New",
        progress=execution.ips_progress,
        start_date=execution.ips_started_at,
        by=by,
        started_by=execution.started_by,
        execution=execution,
    )


def _running():
    """The runs IPS is running as the watcher last saw them: accepted, or a press of unknown fate
    whose run the watcher found running; not yet seen done."""
    return (
        Execution.objects.open_runs()
        .filter(Q(outcome=Execution.Outcome.ACCEPTED) | ~Q(ips_run_handle=""))
        .exclude(ips_state="Done")
    )


def running_per_company(company_ids) -> dict[int, int]:
    """{company id: how many runs IPS is running there now} (as active_runs lists them), in one query."""
    rows = _running().filter(company_id__in=list(company_ids)).order_by().values("company_id").annotate(n=Count("id"))
    return {row["company_id"]: row["n"] for row in rows}


def active_runs(company: Company) -> tuple[list[ActiveRun], str | Promise]:
    """What IPS is running in the company as the watcher last saw it, whoever started the runs:
    (runs, a lazy note when the watcher's last look failed). Read from the database, never from IPS."""
    rows = (
        _running()
        .filter(company=company)
        .select_related("job__company")
        .order_by("ips_started_at", "requested_at", "pk")
    )
    runs = [ActiveRun(run_now(r), r.job) for r in rows]
    watch = CompanyWatch.objects.filter(pk=company.pk).first()
    error = ""
    if watch is not None and watch.last_error:
        error = format_lazy(
            _("The last look at IPS failed ({error}); shown as of {time}. The watcher asks again."),
            error=watch.last_error,
            time=f"{timezone.localtime(watch.last_ok_at):%Y-%m-%d %H:%M:%S}" if watch.last_ok_at else "—",
        )
    return runs, error


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

