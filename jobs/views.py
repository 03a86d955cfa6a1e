from __future__ import annotations

import datetime as dt
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import roles, services
from .forms import HistoryFilterForm
from .middleware import client_ip
from .models import Company, Execution, Job

Outcome = Execution.Outcome

# HTTP status of a Run answer, by outcome: htmx swaps these (see base.html).
RUN_STATUS = {
    Outcome.ERROR: 502,
    Outcome.ACCEPTED: 200,
    Outcome.DENIED: 403,
    Outcome.ALREADY_RUNNING: 409,
    Outcome.JOB_GONE: 409,
    Outcome.REFUSED: 502,
    Outcome.UNREACHABLE: 502,
    Outcome.BAD_REPLY: 502,
    Outcome.TIMED_OUT: 504,
}


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


def _get_company_for_user(request, pk) -> tuple[Company, str]:
    """The company and the user's role in it; 404 if the user has none."""
    company = get_object_or_404(Company.objects.select_related("connection"), pk=pk)
    role = roles.role_of(request.user, company)
    if role is None:
        raise Http404("No such company.")
    return company, role


def _get_job_for_user(request, pk) -> tuple[Job, str | None]:
    """The job and the user's role in its company (None: no role there)."""
    job = get_object_or_404(Job.objects.select_related("company__connection"), pk=pk)
    return job, roles.role_of(request.user, job.company)


# Attempts that never reached IPS (refused here) are history, not a job's
# "last execution".
_NOT_SENT = [Outcome.DENIED, Outcome.ALREADY_RUNNING, Outcome.JOB_GONE]


FOLLOW_FOR = dt.timedelta(minutes=15)


def _with_last_execution(jobs):
    """Attach each job's latest run sent to IPS: two queries, whatever the count."""
    latest = (
        Execution.objects.filter(job=OuterRef("pk"))
        .exclude(outcome__in=_NOT_SENT)
        .order_by("-requested_at", "-id")
        .values("id")[:1]
    )
    jobs = list(jobs.annotate(last_execution_id=Subquery(latest)))
    last = Execution.objects.in_bulk([j.last_execution_id for j in jobs if j.last_execution_id])
    # A 'sending' row past stale_after() belongs to a dead process: Run is
    # offered again, and the press marks that row interrupted.
    now = timezone.now()
    cutoff = now - services.stale_after()
    for job in jobs:
        ex = job.last_execution = last.get(job.last_execution_id)
        job.run_in_flight = ex is not None and ex.outcome == Outcome.SENDING and ex.requested_at > cutoff
        # A run accepted lately is followed in IPS again after a reload.
        job.follow = ex is not None and ex.outcome == Outcome.ACCEPTED and ex.requested_at > now - FOLLOW_FOR
    return jobs


def _company_view(company: Company, role: str, with_jobs: bool = True) -> dict:
    """Everything the page needs to show one company and its rights."""
    label = company.handle
    view = {
        "company": company,
        "role": role,
        "can_list": roles.is_authorized(role, "getScheduledJobs"),
        "can_run": roles.is_authorized(role, "executeJob"),
        "can_follow": roles.is_authorized(role, "getActiveJobs"),
        "list_reason": roles.refusal_reason(role, "getScheduledJobs", label),
        "run_reason": roles.refusal_reason(role, "executeJob", label),
        "jobs": [],
    }
    if with_jobs and view["can_list"]:
        view["jobs"] = _with_last_execution(Job.objects.filter(company=company).select_related("company"))
    return view


def _job_list_page(request, status=200):
    by_company = roles.roles_by_company(request.user)
    companies = Company.objects.filter(pk__in=by_company).select_related("connection")
    sections = [_company_view(c, by_company[c.pk]) for c in companies]
    return render(request, "jobs/job_list.html", {"sections": sections}, status=status)


def _htmx_flash(request, level: str, text: str, status: int):
    """An htmx answer that only says something: into #messages, not the target."""
    response = render(request, "jobs/job_list.html#flash", {"flash": {"level": level, "text": text}}, status=status)
    response["HX-Retarget"] = "#messages"
    response["HX-Reswap"] = "innerHTML"
    return response


def _refuse(request, text: str, status: int):
    """A refusal, to htmx as a message and to a plain form post as the page."""
    if request.htmx:
        return _htmx_flash(request, "error", text, status)
    messages.error(request, text)
    return _job_list_page(request, status=status)


NOT_FOUND = "No such job or company, or you have no role in its company."


@require_GET
@login_required
def job_list(request):
    return _job_list_page(request)


@require_POST
@login_required_htmx
def run_job(request, pk):
    try:
        job, _ = _get_job_for_user(request, pk)
    except Http404:
        return _refuse(request, NOT_FOUND, 404)
    execution = services.run_job(job, request.user, _request_info(request))
    if execution.outcome == Outcome.DENIED and not execution.role:
        # Recorded as denied, but the user learns nothing of the job.
        return _refuse(request, NOT_FOUND, 404)
    status = RUN_STATUS.get(execution.outcome, 500)
    if not request.htmx:
        if status != 200:
            return _refuse(request, execution.message, status)
        messages.success(request, execution.message)
        return redirect("jobs:list")
    role = execution.role
    [job] = _with_last_execution(Job.objects.filter(pk=job.pk).select_related("company"))
    context = {
        "job": job,
        "section": _company_view(job.company, role, with_jobs=False),
        "flash": {"level": "success" if status == 200 else "error", "text": execution.message},
    }
    return render(request, "jobs/job_list.html#run-response", context, status=status)


@require_POST
@login_required_htmx
def sync_company(request, pk):
    try:
        company, role = _get_company_for_user(request, pk)
    except Http404:
        return _refuse(request, NOT_FOUND, 404)
    if not roles.is_authorized(role, "getScheduledJobs"):
        return _refuse(request, roles.refusal_reason(role, "getScheduledJobs", company.handle), 403)
    result = services.sync_company(company)
    level, text = ("error", str(result)) if result.error else ("success", f"Synced from IPS: {result}")
    if not request.htmx:
        messages.add_message(request, messages.ERROR if result.error else messages.SUCCESS, text)
        return redirect("jobs:list")
    context = {"section": _company_view(company, role), "flash": {"level": level, "text": text}}
    return render(request, "jobs/job_list.html#sync-response", context, status=502 if result.error else 200)


@require_GET
@login_required_htmx
def job_status(request, pk):
    """The job's last accepted run as IPS reports it; answers 286 (htmx: stop polling) once it is over.

    Polling stops, with nothing said, when the job is gone or the right lost.
    A poll that fails says so and polls again: it is never taken for the end."""
    try:
        job, role = _get_job_for_user(request, pk)
    except Http404:
        role = None
    if not roles.is_authorized(role, "getActiveJobs"):
        return HttpResponse(status=286)
    execution = (
        Execution.objects.filter(job=job).exclude(outcome__in=_NOT_SENT).order_by("-requested_at", "-id").first()
    )
    if execution is None or execution.outcome != Outcome.ACCEPTED:
        return HttpResponse(status=286)
    status = services.run_status(execution)
    return render(
        request,
        "jobs/job_list.html#ips-status",
        {"job": job, "status": status},
        status=286 if status.finished else 200,
    )


@require_GET
@login_required_htmx
def history(request):
    allowed = [
        pk for pk, role in roles.roles_by_company(request.user).items() if roles.is_authorized(role, "getJobLogs")
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


def csrf_failure(request, reason=""):
    """A stale CSRF token (logged in or out in another tab) says so in the page."""
    text = "Your session changed since this page was loaded: reload the page, then try again."
    if request.headers.get("HX-Request") == "true":
        return _htmx_flash(request, "error", text, 403)
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)


def health(request):
    return HttpResponse("ok", content_type="text/plain")
