from __future__ import annotations

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    HttpResponseStopPolling,
    reswap,
    retarget,
    trigger_client_event,
)

from . import roles, services, tasks
from .forms import HistoryFilterForm
from .middleware import client_ip
from .models import Company, Execution, Job, MembershipChange

Outcome = Execution.Outcome

# The HTTP status of each answer the dashboard gives, by what happened. htmx
# swaps exactly these error statuses into the page (base.html's htmx-config is
# built from SWAPPED_ERRORS): every other 4xx/5xx is left alone and logged.
RUN_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DENIED: 403,
    Outcome.ALREADY_RUNNING: 409,
    Outcome.JOB_GONE: 409,
    Outcome.REFUSED: 502,
    Outcome.UNREACHABLE: 502,
    Outcome.BAD_REPLY: 502,
    Outcome.ERROR: 502,
    Outcome.TIMED_OUT: 504,
    Outcome.NOT_RUNNING: 409,
    Outcome.IPS_ERROR: 502,
}
NOT_FOUND_STATUS = 404
SYNC_FAILED_STATUS = 502
SWAPPED_ERRORS = sorted({*RUN_STATUS.values(), NOT_FOUND_STATUS, SYNC_FAILED_STATUS} - {200})


def htmx_config() -> str:
    """base.html's htmx-config: our own refusals are swapped in, not dropped; no eval, no inline styles (CSP)."""
    codes = "|".join(str(c) for c in SWAPPED_ERRORS)
    return json.dumps(
        {
            "allowEval": False,
            "includeIndicatorStyles": False,
            "responseHandling": [
                {"code": "204", "swap": False},
                {"code": "[23]..", "swap": True},
                {"code": f"({codes})", "swap": True, "error": False},
                {"code": "[45]..", "swap": False, "error": True},
            ],
        },
        separators=(",", ":"),
    )


def login_required_htmx(view):
    """login_required that sends an htmx request to the login page whole."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.htmx:
                return HttpResponseClientRedirect(f"{reverse('login')}?next={reverse('jobs:list')}")
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _request_info(request) -> services.RequestInfo:
    return services.RequestInfo(
        request_id=getattr(request, "request_id", ""),
        client_ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )


NOT_FOUND = "No such job or company, or you have no role in its company."


def _get_company_for_user(request, pk, operation: str) -> tuple[Company, roles.Access]:
    """The company and what the user may do there; 404 if the user has no role in it."""
    company = get_object_or_404(Company.objects.select_related("connection"), pk=pk)
    access = company.access(request.user, operation)
    if not access.visible:
        raise Http404(NOT_FOUND)
    return company, access


def _get_job_for_user(request, pk, operation: str) -> tuple[Job, roles.Access]:
    """The job and what the user may do with it (``access.visible`` False: no role in its company).

    404 only for a job that does not exist: a refused press is still audited."""
    job = get_object_or_404(Job.objects.select_related("company__connection"), pk=pk)
    return job, job.company.access(request.user, operation)


def _company_view(company: Company, access: roles.Access, with_jobs: bool = True) -> dict:
    """Everything the page needs to show one company and its rights."""
    access = access.to("getScheduledJobs")
    run, follow = access.to("executeJob"), access.to("getActiveJobs")
    view = {
        "company": company,
        "role": access.role,
        "access": access,
        "can_list": access.allowed,
        "can_run": run.allowed,
        "can_follow": follow.allowed,
        "can_stop": access.to("stopJob").allowed,
        "list_reason": access.reason,
        "run_reason": run.reason,
        "jobs": [],
    }
    if with_jobs and access.allowed:
        view["jobs"] = Job.objects.filter(company=company).select_related("company").with_last_run()
    return view


def _job_list_page(request, status=200):
    by_company = Company.objects.accesses_for(request.user, "getScheduledJobs")
    companies = Company.objects.filter(pk__in=by_company).select_related("connection")
    sections = [_company_view(c, by_company[c.pk]) for c in companies]
    return render(request, "jobs/job_list.html", {"sections": sections}, status=status)


def _htmx_flash(request, level: str, text: str, status: int):
    """An htmx answer that only says something: into #messages, not the target."""
    response = render(request, "jobs/job_list.html#flash", {"flash": {"level": level, "text": text}}, status=status)
    return reswap(retarget(response, "#messages"), "innerHTML")


def _refuse(request, text: str, status: int):
    """A refusal, to htmx as a message and to a plain form post as the page."""
    if request.htmx:
        return _htmx_flash(request, "error", text, status)
    messages.error(request, text)
    return _job_list_page(request, status=status)


@require_GET
@login_required
def job_list(request):
    return _job_list_page(request)


@require_POST
@login_required_htmx
def run_job(request, pk):
    try:
        job, access = _get_job_for_user(request, pk, "executeJob")
    except Http404:
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    result = services.run_job(job, access, request.user, _request_info(request), schedule=tasks.schedule_follow)
    if not access.visible:
        # Audited as denied, but the user learns nothing of the job.
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    status = RUN_STATUS[result.outcome]
    text = _for(request, result)
    if status != 200 and (not request.htmx or not result.job_visible):
        # Who may not list the job learns only why not, never the job's row.
        return _refuse(request, text, status)
    if not request.htmx:
        messages.success(request, result.message)
        return redirect("jobs:list")
    [job] = Job.objects.filter(pk=job.pk).select_related("company").with_last_run()
    context = {
        "job": job,
        "section": _company_view(job.company, access, with_jobs=False),
        "flash": {"level": "success" if status == 200 else "error", "text": text},
    }
    response = render(request, "jobs/job_list.html#run-response", context, status=status)
    # The company's Active-in-IPS panel asks again now, not at its next poll.
    return trigger_client_event(response, IPS_CHANGED)


#: htmx event after a Run or Stop: Active-in-IPS panels refresh on it.
IPS_CHANGED = "ips-changed"


def _for(request, result: services.RunResult) -> str:
    """The result's message; staff also learn which IPS address failed."""
    if result.where and request.user.is_staff:
        return f"{result.message} (IPS at {result.where})"
    return result.message


@require_POST
@login_required_htmx
def stop_job(request, pk):
    """Stop the job's active run in IPS (stopJob), whoever started it."""
    try:
        job, access = _get_job_for_user(request, pk, "stopJob")
    except Http404:
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    result = services.stop_job(job, access, request.user, _request_info(request))
    if not access.visible:
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    status = RUN_STATUS[result.outcome]
    if status != 200:
        return _refuse(request, _for(request, result), status)
    if not request.htmx:
        messages.success(request, result.message)
        return redirect("jobs:list")
    return trigger_client_event(_htmx_flash(request, "success", result.message, 200), IPS_CHANGED)


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
    """One execution: the audit facts, IPS's result, and the run's log details (getJobLogDetails)."""
    execution, access = _get_execution_for_user(request, pk, "getJobLogDetails")
    history_access = access.to("getJobLogs")
    if not history_access.allowed:
        raise Http404(NOT_FOUND)
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    problems = request.GET.get("show") == "problems"
    details = services.log_details(execution, page, problems) if access.allowed and execution.ips_run_handle else None
    context = {
        "ex": execution,
        "access": access,
        "details": details,
        "problems": problems,
        "can_stop": access.to("stopJob").allowed and execution.job is not None and execution.is_following,
    }
    template = "jobs/run_detail.html#details" if request.htmx and request.GET.get("part") == "details" else "jobs/run_detail.html"
    return render(request, template, context)


@require_GET
@login_required_htmx
def active_runs(request, pk):
    """What IPS is running in the company now, whoever started it; polled while the page is open."""
    try:
        company, access = _get_company_for_user(request, pk, "getActiveJobs")
    except Http404:
        return HttpResponseStopPolling()
    if not access.allowed:
        return HttpResponseStopPolling()
    runs, error = services.active_runs(company)
    busy = {r.job.pk: r.run for r in runs if r.job is not None and r.run.state != "Done"}
    section = _company_view(company, access)
    for job in section["jobs"]:
        job.active_in_ips = busy.get(job.pk)
    context = {
        "company": company,
        "section": section,
        "runs": runs,
        "error": error,
        "can_stop": access.to("stopJob").allowed,
    }
    return render(request, "jobs/job_list.html#active-response", context)


@require_POST
@login_required_htmx
def sync_company(request, pk):
    try:
        company, access = _get_company_for_user(request, pk, "getScheduledJobs")
    except Http404:
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    if not access.allowed:
        return _refuse(request, access.reason, 403)
    result = services.sync_company(company)
    level, text = ("error", str(result)) if result.error else ("success", f"Synced from IPS: {result}")
    if not request.htmx:
        messages.add_message(request, messages.ERROR if result.error else messages.SUCCESS, text)
        return redirect("jobs:list")
    context = {"section": _company_view(company, access), "flash": {"level": level, "text": text}}
    status = SYNC_FAILED_STATUS if result.error else 200
    return render(request, "jobs/job_list.html#sync-response", context, status=status)


@require_GET
@login_required_htmx
def job_status(request, pk):
    """The job's last accepted run as IPS reports it; stops htmx polling (286) once it is over.

    Polling stops, with nothing said, when the job is gone or the right lost.
    A poll that fails says so and polls again: it is never taken for the end."""
    try:
        job, access = _get_job_for_user(request, pk, "getActiveJobs")
    except Http404:
        return HttpResponseStopPolling()
    execution = Execution.objects.last_run_of(job) if access.visible and access.allowed else None
    if execution is None or execution.outcome != Outcome.ACCEPTED:
        return HttpResponseStopPolling()
    status = services.observe_run(execution)
    response = render(request, "jobs/job_list.html#ips-status", {"job": job, "status": status})
    if status.finished:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@require_GET
@login_required_htmx
def history(request):
    allowed = [
        pk for pk, role in Company.objects.roles_for(request.user).items() if roles.is_authorized(role, "getJobLogs")
    ]
    form = HistoryFilterForm(request.GET or None, companies=Company.objects.filter(pk__in=allowed))
    # A superuser also sees executions whose company was deleted since.
    executions = Execution.objects.all() if request.user.is_superuser else Execution.objects.filter(company__in=allowed)
    executions = executions.select_related("company", "job")
    if form.is_valid():
        executions = form.filter(executions)
    page = Paginator(executions, 50).get_page(request.GET.get("page"))
    template = "jobs/history.html#results" if request.htmx else "jobs/history.html"
    return render(
        request,
        template,
        {"form": form, "page": page, "query": _query_without_page(request)},
    )


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@require_GET
@login_required_htmx
def membership_history(request):
    """Who gave whom which IPS user type, in the companies whose history the user may read."""
    allowed = [
        pk
        for pk, access in Company.objects.accesses_for(request.user, "getJobLogs").items()
        if access.allowed
    ]
    changes = MembershipChange.objects.all() if request.user.is_superuser else (
        MembershipChange.objects.filter(company__in=allowed)
    )
    page = Paginator(changes.select_related("company"), 50).get_page(request.GET.get("page"))
    return render(request, "jobs/membership_history.html", {"page": page, "may_read": request.user.is_superuser or bool(allowed)})


def csrf_failure(request, reason=""):
    """A stale CSRF token (logged in or out in another tab) says so in the page."""
    text = "Your session changed since this page was loaded: reload the page, then try again."
    if request.headers.get("HX-Request") == "true":
        return _htmx_flash(request, "error", text, 403)
    return django_csrf_failure(request, reason)


def health(request):
    return HttpResponse("ok", content_type="text/plain")
