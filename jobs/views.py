from __future__ import annotations

import csv
import json
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.db.models.functions import Length
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    HttpResponseStopPolling,
    push_url,
    reswap,
    retarget,
    trigger_client_event,
)

from . import history as trail
from . import roles, services, tasks
from .forms import HistoryFilterForm, ProfileForm
from .middleware import client_ip
from .models import Company, Execution, Job, MembershipChange, Profile

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
    Outcome.INTERRUPTED: 502,
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
    job = get_object_or_404(Job.objects.select_related("company__connection"), pk=pk)
    return job, job.company.access(request.user, operation)


def _company_view(company: Company, access: roles.Access, with_jobs: bool = True, query: str = "",
                  page: int = 1, summary: bool = True) -> dict:
    """Everything the page needs to show one company and its rights (and one page of its jobs)."""
    if with_jobs:
        return _company_views({company.pk: access}, [company], query, {company.pk: page}, summary)[0]
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
    return view


JOBS_PER_PAGE = 50


def _company_views(accesses: dict, companies, query: str = "", pages: dict | None = None,
                   summary: bool = True) -> list[dict]:
    """Each company's view with one page of its jobs (by name, those matching ``query``) and
    the summary of its last 24 hours: the same few queries for any number of companies and jobs."""
    pages = pages or {}
    listable = [c.pk for c in companies if accesses[c.pk].to("getScheduledJobs").allowed]
    jobs = Job.objects.filter(company_id__in=listable)
    if query:
        jobs = jobs.filter(name__icontains=query)
    totals = jobs.count_per_company() if listable else {}
    last_page = {pk: max(1, -(-totals.get(pk, 0) // JOBS_PER_PAGE)) for pk in listable}
    wanted = {pk: min(max(1, pages.get(pk, 1)), last_page[pk]) for pk in listable if totals.get(pk)}
    by_company: dict[int, list] = {}
    if wanted:
        for job in jobs.page_per_company(wanted, JOBS_PER_PAGE).select_related("company").with_last_run():
            by_company.setdefault(job.company_id, []).append(job)
    readable = [pk for pk in listable if accesses[pk].to("getJobLogs").allowed]
    summaries = trail.company_summaries(readable) if readable and summary else {}
    views = []
    for company in companies:
        view = _company_view(company, accesses[company.pk], with_jobs=False)
        number = wanted.get(company.pk, 1)
        view.update(
            jobs=by_company.get(company.pk, []),
            total=totals.get(company.pk, 0),
            page=number,
            pages=last_page.get(company.pk, 1),
            first_row=(number - 1) * JOBS_PER_PAGE + 1,
            last_row=(number - 1) * JOBS_PER_PAGE + len(by_company.get(company.pk, [])),
            query=query,
            summary=summaries.get(company.pk) if company.pk in readable else None,
            can_read_history=company.pk in readable,
            # What the Active-in-IPS poller asks for: the jobs of this page.
            page_query=urlencode({k: v for k, v in (("q", query), ("page", number)) if v}),
        )
        views.append(view)
    return views


def _job_pages(request) -> tuple[str, dict[int, int]]:
    """The jobs page's search and each company's page number (``p<company id>=N``)."""
    pages = {}
    for key, value in request.GET.items():
        if key[:1] == "p" and key[1:].isdigit() and value.isdigit():
            pages[int(key[1:])] = int(value)
    return request.GET.get("q", "").strip()[:200], pages


def _job_list_page(request, status=200):
    query, pages = _job_pages(request)
    by_company = Company.objects.accesses_for(request.user, "getScheduledJobs")
    companies = list(Company.objects.filter(pk__in=by_company).select_related("connection"))
    target = request.htmx.target if request.htmx else None
    if status == 200 and target and target.startswith("company-") and target[8:].isdigit():
        # One company's next page: only its section.
        companies = [c for c in companies if c.pk == int(target[8:])]
        sections = _company_views(by_company, companies, query, pages)
        for section in sections:
            section["pager"] = _pager(request, section)
        return render(request, "jobs/job_list.html#company-section", {"section": sections[0]} if sections else {})
    sections = _company_views(by_company, companies, query, pages)
    for section in sections:
        section["pager"] = _pager(request, section)
    return render(request, "jobs/job_list.html", {"sections": sections, "query": query}, status=status)


def _pager(request, section) -> dict:
    """The addresses of the section's previous and next pages (the other companies' pages kept)."""
    params = {k: v for k, v in request.GET.items() if k in ("q",) or (k[:1] == "p" and k[1:].isdigit())}
    key = f"p{section['company'].pk}"
    links = {}
    for name, number in (("previous", section["page"] - 1), ("next", section["page"] + 1)):
        if 1 <= number <= section["pages"]:
            links[name] = reverse("jobs:list") + "?" + urlencode({**params, key: number})
    return links


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
        return gettext("%(message)s (IPS at %(where)s)") % {"message": result.message, "where": result.where}
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
    # The jobs of the page the poller is on (its search and page number).
    query, page = _job_pages(request)[0], request.GET.get("page", "1")
    section = _company_view(company, access, query=query, page=int(page) if page.isdigit() else 1, summary=False)
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
    level, text = ("error", str(result)) if result.error else ("success", gettext("Synced from IPS: %(result)s") % {"result": result})
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
    if not execution.is_following:
        # The result is recorded (by a worker or another tab): show it, ask IPS no more.
        response = render(request, "jobs/job_list.html#ips-recorded", {"ex": execution})
        response.status_code = HttpResponseStopPolling.status_code
        return response
    status = services.observe_run(execution)
    response = render(request, "jobs/job_list.html#ips-status", {"job": job, "status": status})
    if status.finished:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def _get_history_for_user(request) -> tuple[list[Company], list[str]]:
    """The companies whose history (getJobLogs) the user may read, and why not
    in the user's other companies (one sentence each).

    A superuser reads every row, those of deleted companies too (_history_rows)."""
    accesses = Company.objects.accesses_for(request.user, "getJobLogs")
    companies = list(Company.objects.filter(pk__in=accesses))
    allowed = [c for c in companies if accesses[c.pk].allowed]
    refused = [accesses[c.pk].reason for c in companies if not accesses[c.pk].allowed]
    return allowed, refused


def _history_rows(request, companies, form: HistoryFilterForm):
    """The rows the user may read, filtered as the (valid) form says."""
    rows = trail.visible_to(request.user, [c.pk for c in companies], by_company_index=not form.narrows())
    return form.filter(rows)


def _history_url(params: dict, **more) -> str:
    query = urlencode({**params, **{k: v for k, v in more.items() if v}})
    return reverse("jobs:history") + (f"?{query}" if query else "")


#: Sortable columns: (sort key when clicked, sort key when clicked again).
SORTABLE = {"requested": ("-requested", "requested"), "ips_runtime": ("-ips_runtime", "ips_runtime"),
            "request_time": ("-request_time", "request_time")}


def _sort_links(params: dict, current: trail.Sort) -> dict:
    """For each sortable column: the address that sorts by it (or reverses it), and its arrow."""
    links = {}
    for column, (first, again) in SORTABLE.items():
        key = again if current.key == first else first
        arrow = "↓" if current.key == first else "↑" if current.key == again else ""
        params_ = {k: v for k, v in params.items() if k != "sort"}
        if key != trail.DEFAULT_SORT.key:
            params_["sort"] = key
        links[column] = {"url": _history_url(params_), "arrow": arrow}
    return links


@require_GET
@login_required_htmx
def history(request):
    """The audit trail, filtered and sorted as the address says, a page at a time by keyset.

    A change of the filters swaps the rows (#results), never the form being
    used; a link (a page, a sort) swaps both (#history-body). Either way the
    address of what is shown is pushed, and Back and Forward ask the server
    for it again (hx-history="false": no snapshot in the browser's storage),
    so rows and fields always say the same."""
    companies, refused = _get_history_for_user(request)
    may_read = request.user.is_superuser or bool(companies)
    form = HistoryFilterForm(request.GET, companies=companies, user=request.user)
    page, params, paging = None, {}, {}
    if may_read and form.is_valid():
        params = form.params()
        paging = {k: request.GET.get(k, "") for k in ("after", "before")}
        if request.GET.get("page") == "last" and not any(paging.values()):
            paging["page"] = "last"
        executions = _history_rows(request, companies, form).select_related("company")
        try:
            page = trail.page(executions, form.chosen_sort, after=paging["after"], before=paging["before"],
                              last="page" in paging, split=form.split())
        except trail.CursorError:
            # A mangled page link: the first page, and the address says so.
            paging = {}
            page = trail.page(executions, form.chosen_sort, split=form.split())
    context = {
        "form": form,
        "page": page,
        "params": params,
        "query": urlencode(params),
        "refused": refused,
        "may_read": may_read,
        "sorts": _sort_links(params, form.chosen_sort if page else trail.DEFAULT_SORT),
        "usernames": form.user_suggestions() if may_read else [],
        "without_job": _history_url({k: v for k, v in params.items() if k != "job"}),
    }
    if page is not None:
        context["links"] = {
            "first": _history_url(params),
            "previous": _history_url(params, before=page.previous_cursor),
            "next": _history_url(params, after=page.next_cursor),
            "last": _history_url(params, page="last"),
        }
    if request.htmx and not request.htmx.history_restore_request:
        # A change of the form: the rows (the form stays as the user left it); a link: filters and rows.
        part = "results-response" if request.htmx.target == "results" else "history-body"
        response = render(request, f"jobs/history.html#{part}", context)
        if not (may_read and form.is_valid()):
            return response
        # The address of what is shown, whatever the form sent: Back shows it again.
        # Already there (Enter in a field sends a change, then a submit): no second entry.
        shown = _history_url(params, **paging)
        return push_url(response, False if request.htmx.current_url_abs_path == shown else shown)
    return render(request, "jobs/history.html", context)


@require_GET
@login_required_htmx
def history_job_names(request):
    """Job names for the history filter's list as the user types, from the companies whose history they read."""
    companies, _ = _get_history_for_user(request)
    text = request.GET.get("job_name", "").strip()
    names = []
    if text and companies:
        names = list(
            Job.objects.filter(company__in=companies, name__icontains=text)
            .order_by(Length("name"), "name")
            .values_list("name", flat=True)
            .distinct()[:20]
        )
    return render(request, "jobs/history.html#job-names", {"names": names})


class _Echo:
    """A file whose write() returns the line: csv.writer into a stream."""

    def write(self, value):
        return value


def _export_stream(export, header, rows, batch=500):
    """The CSV, a few hundred rows a chunk; the export's record completed when it ends, or breaks off."""
    writer = csv.writer(_Echo())
    sent, completed = 0, False
    try:
        yield "\ufeff" + writer.writerow(header)  # the BOM: spreadsheets read UTF-8 then
        lines = []
        for row in rows:
            lines.append(writer.writerow(row))
            if len(lines) == batch:
                sent += len(lines)  # handed to the server: what a broken-off download may have received
                yield "".join(lines)
                lines = []
        if lines:
            sent += len(lines)
            yield "".join(lines)
        completed = True
    finally:
        services.finish_export(export, sent, completed)


@require_POST
@login_required
def history_export(request):
    """The filtered history as CSV, streamed in constant memory; the export itself is recorded (HistoryExport)."""
    companies, refused = _get_history_for_user(request)
    if not (request.user.is_superuser or companies):
        # The reasons are lazy: str.join takes only str.
        reason = " ".join(str(r) for r in refused) or gettext(
            "You have no role in any company, so you cannot see job history (getJobLogs)."
        )
        return HttpResponse(reason, status=403, content_type="text/plain; charset=utf-8")
    form = HistoryFilterForm(request.GET, companies=companies, user=request.user)
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(e)}" for name, e in form.errors.items())
        return HttpResponse(gettext("These filters are not valid: %(errors)s") % {"errors": errors}, status=400, content_type="text/plain; charset=utf-8")
    export = services.start_export(request.user, form.params(), _request_info(request))
    names = {c.pk: c.name for c in (companies if not request.user.is_superuser else Company.objects.all())}
    lines = trail.export_rows(_history_rows(request, companies, form), form.chosen_sort, names, request.time_zone,
                              split=form.split())
    header = [h for h, _ in trail.EXPORT_COLUMNS]
    response = StreamingHttpResponse(_export_stream(export, header, lines), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime(export.at, request.time_zone).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="ipsadmin-history-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


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


#: How many of a job's runs its page lists (all of them are in History).
RECENT_RUNS = 20


@require_GET
@login_required_htmx
def job_detail(request, pk):
    """One job: its IPS facts, the figures of its latest runs, its last failure and its recent runs.

    Seen by whoever may list the company's jobs (getScheduledJobs); the runs
    and figures need history's right too (getJobLogs). A constant number of
    queries, each over a bounded part of an index (history.job_stats)."""
    job, access = _get_job_for_user(request, pk, "getScheduledJobs")
    if not access.visible:
        raise Http404(NOT_FOUND)
    if not access.allowed:
        return render(request, "jobs/job_detail.html", {"refusal": access.reason}, status=403)
    [job] = Job.objects.filter(pk=job.pk).select_related("company").with_last_run()
    context = {"job": job, "section": _company_view(job.company, access, with_jobs=False)}
    if access.to("getJobLogs").allowed:
        context.update(
            stats=trail.job_stats(job),
            window=trail.STATS_WINDOW,
            last_failure=trail.last_failure(job),
            runs=list(Execution.objects.filter(job=job).order_by("-requested_at", "-id")[:RECENT_RUNS]),
            history_url=_history_url({"job": job.pk}),
        )
    return render(request, "jobs/job_detail.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request):
    """The user's own settings: the time zone every page shows times in."""
    chosen = Profile.objects.filter(user=request.user).values_list("time_zone", flat=True).first() or ""
    form = ProfileForm(request.POST or None, initial={"time_zone": chosen})
    if request.method == "POST" and form.is_valid():
        services.set_time_zone(request.user, form.cleaned_data["time_zone"])
        zone = form.cleaned_data["time_zone"]
        if zone:
            text = gettext("Times are now shown in %(zone)s.") % {"zone": zone}
        else:
            text = gettext("Times are now shown in your browser's zone.")
        messages.success(request, text)
        return redirect("jobs:preferences")
    return render(request, "jobs/preferences.html", {"form": form})


def csrf_failure(request, reason=""):
    """A stale CSRF token (logged in or out in another tab) says so in the page."""
    text = gettext("Your session changed since this page was loaded: reload the page, then try again.")
    if request.headers.get("HX-Request") == "true":
        return _htmx_flash(request, "error", text, 403)
    return django_csrf_failure(request, reason)


def health(request):
    return HttpResponse("ok", content_type="text/plain")
