"""What every view shares: login for htmx, who asked, the access helpers, messages to htmx."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.db.models import F, FilteredRelation, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.csrf import csrf_failure as django_csrf_failure
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from .. import roles
from ..middleware import client_ip
from ..models import Company, Job
from ..services import base
from ..services.press import RunResult


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


def _request_info(request) -> base.RequestInfo:
    return base.RequestInfo(
        request_id=getattr(request, "request_id", ""),
        client_ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )


NOT_FOUND = _("No such job or company, or you have no role in its company.")


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
    user = request.user
    jobs = Job.objects.select_related("company__connection")
    if user.is_authenticated and user.is_active and not user.is_superuser:
        jobs = with_membership_of(jobs, user)
    job = get_object_or_404(jobs, pk=pk)
    if not hasattr(job, "my_role"):
        return job, job.company.access(user, operation)  # nobody's, or a superuser's: nothing to read
    row = (job.my_role, job.my_from_ips, job.my_read_at) if job.my_role is not None else None
    return job, job.company.access(user, operation, row=row)


def with_membership_of(jobs, user):
    """The jobs, each with ``user``'s membership in its company (my_role, my_from_ips, my_read_at; None:
    none): the job and the role in one query (a press reads both before anything else)."""
    mine = FilteredRelation("company__memberships", condition=Q(company__memberships__user=user))
    return jobs.annotate(mine=mine).annotate(
        my_role=F("mine__role"), my_from_ips=F("mine__from_ips"), my_read_at=F("mine__read_at"))


def _htmx_flash(request, level: str, text: str, status: int):
    """An htmx answer that only says something: into #messages, not the target."""
    response = render(request, "jobs/job_list.html#flash", {"flash": {"level": level, "text": text}}, status=status)
    return reswap(retarget(response, "#messages"), "innerHTML")


#: htmx event after a Run or Stop: Active-in-IPS panels refresh on it.
IPS_CHANGED = "ips-changed"


def _said_to(request, result: RunResult) -> str:
    """The result's message; staff also learn which IPS address failed."""
    if result.where and request.user.is_staff:
        return gettext("%(message)s (IPS at %(where)s)") % {"message": result.message, "where": result.where}
    return result.message


def csrf_failure(request, reason=""):
    """A stale CSRF token (logged in or out in another tab) says so in the page."""
    text = gettext("Your session changed since this page was loaded: reload the page, then try again.")
    if request.headers.get("HX-Request") == "true":
        return _htmx_flash(request, "error", text, 403)
    return django_csrf_failure(request, reason)
