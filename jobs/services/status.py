"""What the dashboard knows of one run now: as the watcher last recorded it (services.watch).

The browser's polls read this, never IPS: IPS's load grows with companies, not with tabs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from ..models import CompanyWatch, Execution


@dataclass(frozen=True)
class RunState:
    """The run in IPS, as last seen: the attributes of getActiveJobs' ActiveJob the pages show."""

    state: str
    progress: int | None
    progress_message: str = ""


@dataclass(frozen=True)
class RunCounts:
    """Its log's counts so far (or final), as getJobLogs gave them."""

    file_success_count: int | None
    file_error_count: int | None
    file_warning_count: int | None
    fatal_error: bool | None
    end_date: dt.datetime | None


@dataclass(frozen=True)
class RunStatus:
    """What the dashboard knows of one run: still active, its log so far, or why it cannot say."""

    active: RunState | None = None
    log: RunCounts | None = None
    #: The watcher's last look at the company failed: shown (lazy), never taken for the end.
    error: str | Promise = ""
    finished: bool = False


def run_status(execution: Execution) -> RunStatus:
    """The run as its audit row has it (the watcher writes it); the watcher's failure, if its last look failed."""
    active = log_ = None
    if execution.ips_state and execution.ips_state != "Done":
        active = RunState(execution.ips_state, execution.ips_progress)
    if execution.ips_log_type or execution.ips_total_count is not None or execution.ips_success_count is not None:
        log_ = RunCounts(execution.ips_success_count, execution.ips_error_count, execution.ips_warning_count,
                         execution.ips_fatal, execution.ips_ended_at)
    error = ""
    if execution.is_open and execution.company_id is not None:
        watch = CompanyWatch.objects.filter(pk=execution.company_id).only("last_error").first()
        if watch is not None and watch.last_error:
            error = format_lazy(
                _("IPS could not say how the run is doing this time ({error}); asking again."), error=watch.last_error
            )
    if active is None and log_ is None and not error:
        active = RunState("New", None)  # accepted; the watcher has not seen the run yet
    return RunStatus(active=active, log=log_, error=error, finished=bool(execution.ips_result))
