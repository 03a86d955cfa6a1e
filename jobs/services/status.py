"""What the dashboard knows of one run now: as the watcher last recorded it (services.watch).

The browser's polls read this, never IPS: IPS's load grows with companies, not with tabs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import get_language, gettext_lazy as _

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


# --- One status per run: what is true now, the press's own outcome after it -------------------------

#: Each badge's tone: its CSS class (run-status-<tone>). Green ("ok") only for a run IPS finished cleanly,
#: or an action (pause, resume, stop) IPS accepted: never for a run whose end is bad or not known.
TONES = ("ok", "warn", "bad", "running", "waiting", "neutral")

_RESULT_TONES = {"ok": "ok", "warnings": "warn", "errors": "bad", "fatal": "bad", "no_result": "bad",
                 "stopped": "neutral", "not_started": "warn"}
_OUTCOME_TONES = {"accepted": "ok", "sending": "waiting", "already_running": "warn", "job_gone": "warn",
                  "not_running": "warn"}


@dataclass(frozen=True)
class Badge:
    """A run's one status: ``tone`` (run-status-<tone>), its words, and the press's outcome after it
    (``press``, "" when the words are the press's own or nobody pressed anything here)."""

    tone: str
    text: str
    press: str = ""


@lru_cache(maxsize=16)
def _labels(field: str, language: str | None) -> dict:
    # A table per language: the jobs page has a badge in every row, and Django hashes each lazy choice per call.
    return {value: str(label) for value, label in Execution._meta.get_field(field).flatchoices}


def _choice(execution: Execution, field: str) -> str:
    value = getattr(execution, field)
    return _labels(field, get_language()).get(value, value)


def run_badge(execution: Execution) -> Badge:
    """The status every page shows for ``execution`` (the rule in one place).

    IPS's result once it is known (fatal is red, whatever the press said); while a run IPS accepted
    goes on, how far IPS has got; else the press's own outcome (refused, unreachable, sending, …)."""
    ex = execution
    here = ex.started_by == Execution.StartedBy.HERE
    press = _choice(ex, "outcome") if here else ""
    if ex.ips_result:
        if ex.ips_result in ("warnings", "errors", "no_result"):
            text = ex.ips_result_label  # with its count, or the deadline
        else:
            text = _choice(ex, "ips_result")
        return Badge(_RESULT_TONES.get(ex.ips_result, "neutral"), text, press)
    # A press of unknown fate the watcher matched to its run (its handle) is followed like an accepted one.
    if ex.is_following or (ex.is_open and ex.ips_run_handle):
        if ex.ips_state == "Done":
            return Badge("running", str(_("IPS ended it; waiting for its log")), press)
        if ex.ips_state:
            text = _("IPS: %(state)s") % {"state": ex.ips_state}
            if ex.ips_progress is not None:
                text = _("IPS: %(state)s, %(progress)s%%") % {"state": ex.ips_state, "progress": ex.ips_progress}
            return Badge("running", str(text), press)
        return Badge("waiting", str(_("sent, waiting for IPS")), press)
    # The press is all there is to say: refused here or by IPS, not sent, or of unknown fate.
    return Badge(_OUTCOME_TONES.get(ex.outcome, "bad"), _choice(ex, "outcome"))
