"""One run: the audit facts, IPS's result, and its log details (getJobLogDetails)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from .. import roles
from ..models import Execution
from ..services import actions, activity
from .common import NOT_FOUND, login_required_htmx


def _get_execution_for_user(request, pk, operation: str) -> tuple[Execution, roles.Access]:
    """An audit row and what the user may do in its company; 404 without a role there.

    A superuser also sees rows whose company was deleted since."""
    execution = get_object_or_404(Execution.objects.select_related("company__connection", "job"), pk=pk)
    if execution.company is None:
        access = roles.Access("IpsAdmin" if request.user.is_superuser else None, operation, execution.company_handle)
    else:
        access = execution.company.access(request.user, operation)
    if not access.visible:
        raise Http404(NOT_FOUND)
    return execution, access


@require_GET
@login_required_htmx
def run_detail(request, pk):
    """One execution: the audit facts, IPS's result, and the run's log details (getJobLogDetails).

    The same for a run pressed here and one IPS started by itself (found by the watcher: no user, no
    request id): the row in the company's history (getJobLogs), its details by getJobLogDetails."""
    execution, access = _get_execution_for_user(request, pk, "getJobLogDetails")
    history_access = access.to("getJobLogs")
    if not history_access.allowed:
        raise Http404(NOT_FOUND)
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    problems = request.GET.get("show") == "problems"
    wants_details = access.allowed and execution.ips_run_handle and not (request.htmx and request.GET.get("part") == "live")
    details = activity.log_details(execution, page, problems) if wants_details else None
    context = {
        "ex": execution,
        "access": access,
        "details": details,
        "problems": problems,
        # The actions on a run IPS is running (Stop), whoever started it: offered while the run is open
        # (IPS has not said its end, nor listed it done), never on a refusal, a stop or an ended run.
        "run_actions": [
            {"action": a, "allowed": True}
            for a in actions.ACTIONS.values()
            if a.offered == "active" and execution.job is not None
            and (execution.is_following or execution.is_open and execution.ips_run_handle)
            and execution.ips_state != "Done" and access.to(a.operation).allowed
        ],
    }
    # The parts htmx asks for: the log's table (its tabs), and what is true of the run now (polled while open).
    part = request.GET.get("part") if request.htmx else None
    template = {"details": "jobs/run_detail.html#details", "live": "jobs/run_detail.html#live"}.get(part, "jobs/run_detail.html")
    return render(request, template, context)
