"""The jobs page, a job's page, and what is pressed or polled on them: the actions, sync, run status, Active in IPS."""

from __future__ import annotations

import dataclasses
import datetime as dt
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling, push_url, trigger_client_event

from .. import roles
from ..history import STATS_WINDOW, company_summaries, job_stats, last_failure
from ..models import Company, Execution, Job, MissedRun
from ..responses import NOT_FOUND_STATUS, RUN_STATUS, SYNC_FAILED_STATUS
from ..services import actions, activity, sync
from ..services.status import run_status
from ..services import press as pressing
from .common import (
    IPS_CHANGED,
    NOT_FOUND,
    _get_company_for_user,
    _get_job_for_user,
    _htmx_flash,
    _request_info,
    _said_to,
    login_required_htmx,
)

Outcome = Execution.Outcome


def _company_view(company: Company, access: roles.Access, with_jobs: bool = True, query: str = "",
                  page: int = 1, summary: bool = True) -> dict:
    """Everything the page needs to show one company and its rights (and one page of its jobs)."""
    if with_jobs:
        return _company_views({company.pk: access}, [company], query, {company.pk: page}, summary)[0]
    access = access.to("getScheduledJobs")
    run = access.to("executeJob")
    now = timezone.now()
    return {
        "company": company,
        "role": access.role,
        "access": access,
        "can_list": access.allowed,
        "can_run": run.allowed,
        "can_follow": access.to("getActiveJobs").allowed,
        "list_reason": access.reason,
        "run_reason": run.reason,
        "actions": _actions_for(access),
        "jobs": [],
        # The header says when the jobs were last read from IPS: "synced just now", else how long ago.
        "now": now,
        "synced_just_now": company.last_synced_at is not None and now - company.last_synced_at < SYNCED_JUST_NOW,
    }


#: A sync this recent is "just now" on the jobs page.
SYNCED_JUST_NOW = dt.timedelta(minutes=1)


def _actions_for(access: roles.Access) -> list[dict]:
    """Each job action with whether this user may press it here, and why not."""
    out = []
    for action in actions.ACTIONS.values():
        may = access.to(action.operation)
        # Its words in the page's language once per section, not once per row (they are lazy).
        words = {k: str(getattr(action, k)) for k in ("label", "confirm", "busy_label") if getattr(action, k)}
        out.append({"action": dataclasses.replace(action, **words), "allowed": may.allowed,
                    "reason": "" if may.allowed else str(may.reason)})
    return out


JOBS_PER_PAGE = 50

#: The rows of the company opened by default on the first view of several companies: a glimpse, so
#: that the landing page costs about the same whatever the number of jobs (a link opens it whole).
FIRST_VIEW_ROWS = 5

#: A search opens the companies with matches, in name order, while their first pages add up to this
#: many rows (the first company with matches always); the others say how many jobs match.
SEARCH_ROWS = 50


def _company_views(accesses: dict, companies, query: str = "", pages: dict | None = None,
                   summary: bool = True, opened=None) -> list[dict]:
    """Each company's view with one page of its jobs (by name, those matching ``query``) and
    the summary of its last 24 hours: the same few queries for any number of companies and jobs.

    ``opened(listable, totals)`` -> (the companies whose jobs are listed, rows of each page); None:
    all of them, JOBS_PER_PAGE. The others are summarized (their job count, runs of the last 24 h,
    runs in IPS now), at no cost per job."""
    pages = pages or {}
    listable = [c.pk for c in companies if accesses[c.pk].to("getScheduledJobs").allowed]
    jobs = Job.objects.filter(company_id__in=listable)
    if query:
        jobs = jobs.filter(name__icontains=query)
    totals = jobs.count_per_company() if listable else {}
    expanded, per_page = (listable, JOBS_PER_PAGE) if opened is None else opened(listable, totals)
    expanded = set(expanded) & set(listable)
    last_page = {pk: max(1, -(-totals.get(pk, 0) // per_page)) for pk in listable}
    wanted = {pk: min(max(1, pages.get(pk, 1)), last_page[pk]) for pk in listable if totals.get(pk) and pk in expanded}
    by_company: dict[int, list] = {}
    if wanted:
        for job in jobs.page_per_company(wanted, per_page).select_related("company").with_last_run():
            by_company.setdefault(job.company_id, []).append(job)
    readable = [pk for pk in listable if accesses[pk].to("getJobLogs").allowed]
    summaries = company_summaries(readable) if readable and summary else {}
    # Asked whether or not any company is summarized, so that the queries stay the same.
    running = activity.running_per_company(listable) if len(listable) > 1 else {}
    missed = MissedRun.objects.open_per_company(listable)
    views = []
    for company in companies:
        view = _company_view(company, accesses[company.pk], with_jobs=False)
        number = wanted.get(company.pk, 1)
        if view["can_follow"]:
            # Stop, and Run waiting, from the first paint: the panel's first poll then has nothing to change.
            for job in by_company.get(company.pk, []):
                job.active_in_ips = _active_in_ips(job)
        view.update(
            expanded=company.pk in expanded,
            jobs=by_company.get(company.pk, []),
            total=totals.get(company.pk, 0),
            page=number,
            pages=last_page.get(company.pk, 1),
            first_row=(number - 1) * per_page + 1,
            last_row=(number - 1) * per_page + len(by_company.get(company.pk, [])),
            # The first view's glimpse of the company opened by default: its first jobs, no pages.
            preview=per_page != JOBS_PER_PAGE and company.pk in expanded,
            query=query,
            summary=summaries.get(company.pk) if company.pk in readable else None,
            can_read_history=company.pk in readable,
            running=running.get(company.pk, 0),
            missed=missed.get(company.pk, 0),
            # What the Active-in-IPS poller asks for: the jobs of this page (of a glimpse: its rows).
            page_query=urlencode({k: v for k, v in (("q", query), ("page", number),
                                                    ("rows", per_page if per_page != JOBS_PER_PAGE else 0)) if v}),
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


def _opened_in(params) -> list[int]:
    """The companies the address opens: ``open=<id>`` (repeated), and those it names a page of."""
    out = [int(v) for v in params.getlist("open") if v.isdigit()]
    out += [int(k[1:]) for k in params if k[:1] == "p" and k[1:].isdigit() and int(k[1:]) not in out]
    return out


def _opener(named: list[int], query: str):
    """Which companies the first view lists the jobs of: those the address names; else, without a
    search, the first (by name); with one, those with matches while within SEARCH_ROWS."""

    def opened(listable, totals):
        if len(listable) <= 1:
            return listable, JOBS_PER_PAGE
        chosen = [pk for pk in named if pk in listable]
        if not query:
            return (chosen, JOBS_PER_PAGE) if chosen else (listable[:1], FIRST_VIEW_ROWS)
        rows = sum(min(totals.get(pk, 0), JOBS_PER_PAGE) for pk in chosen)
        for pk in listable:
            shown = min(totals.get(pk, 0), JOBS_PER_PAGE)
            if shown and pk not in chosen and (not rows or rows + shown <= SEARCH_ROWS):
                chosen.append(pk)
                rows += shown
        return chosen, JOBS_PER_PAGE

    return opened


def _job_list_page(request, status=200):
    query, pages = _job_pages(request)
    by_company = Company.objects.accesses_for(request.user, "getScheduledJobs")
    companies = list(Company.objects.filter(pk__in=by_company).select_related("connection"))
    target = request.htmx.target if request.htmx else None
    if status == 200 and target and target.startswith("company-") and target[8:].isdigit():
        # One company's section (its next page, or opened from its summary): only its section.
        companies = [c for c in companies if c.pk == int(target[8:])]
        sections = _company_views(by_company, companies, query, pages)
        for section in sections:
            section["pager"] = _pager(request, section)
        response = render(request, "jobs/job_list.html#company-section", {"section": sections[0]} if sections else {})
        # The address keeps what the page shows: the companies opened before this one stay open.
        return push_url(response, _pushed(request)) if sections else response
    named = _opened_in(request.GET)
    sections = _company_views(by_company, companies, query, pages, opened=_opener(named, query))
    shown = [s["company"].pk for s in sections if s["expanded"]]
    for section in sections:
        section["pager"] = _pager(request, section)
        if not section["expanded"] or section["preview"]:
            section["open_url"] = _open_url(request, shown, section["company"].pk)
    return render(request, "jobs/job_list.html", {"sections": sections, "query": query}, status=status)


def _kept(params) -> list[tuple[str, str]]:
    """The parameters of the jobs page's address that say what it shows: search, opened companies, pages."""
    return [(k, v) for k, values in params.lists() for v in values
            if k in ("q", "open") or (k[:1] == "p" and k[1:].isdigit())]


def _open_url(request, shown: list[int], pk: int) -> str:
    """The address of the page with one more company opened (those open now stay open)."""
    params = [(k, v) for k, v in _kept(request.GET) if k != "open"]
    opens = [*dict.fromkeys([*shown, pk])]
    return reverse("jobs:list") + "?" + urlencode([*params, *(("open", o) for o in opens)])


def _pushed(request) -> str:
    """The address after an htmx section request: the browser's address (htmx sends it) with this
    request's search and page, and its opened companies added to those already open."""
    current = QueryDict(urlsplit(request.htmx.current_url or "").query)
    mine = QueryDict(mutable=True)
    for k, v in _kept(request.GET):
        mine.appendlist(k, v)
    opens = [*dict.fromkeys([*current.getlist("open"), *mine.getlist("open")])]
    params = [(k, v) for k, v in _kept(current) if k not in mine and k != "open"]
    params += [(k, v) for k, v in _kept(mine) if k != "open"]
    params += [("open", o) for o in opens]
    return reverse("jobs:list") + ("?" + urlencode(params) if params else "")


def _pager(request, section) -> dict:
    """The addresses of the section's previous and next pages (the other companies' pages kept)."""
    key = f"p{section['company'].pk}"
    params = [(k, v) for k, v in _kept(request.GET) if k != key]
    links = {}
    for name, number in (("previous", section["page"] - 1), ("next", section["page"] + 1)):
        if 1 <= number <= section["pages"]:
            links[name] = reverse("jobs:list") + "?" + urlencode([*params, (key, number)])
    return links


def _refuse(request, text: str, status: int):
    """A refusal, to htmx as a message and to a plain form post as the page."""
    if request.htmx:
        return _htmx_flash(request, "error", text, status)
    messages.error(request, text)
    return _job_list_page(request, status=status)


def _active_in_ips(job):
    """The run IPS is running of ``job`` as Active in IPS lists it (activity._running), read from the
    job's last run (Job.with_last_run's): no query. None when IPS runs none."""
    ex = job.last_execution
    if ex is None or not ex.is_open or ex.ips_state == "Done":
        return None
    if ex.outcome != Outcome.ACCEPTED and not ex.ips_run_handle:
        return None
    return activity.run_now(ex)


@require_GET
@login_required
def job_list(request):
    return _job_list_page(request)


@require_POST
@login_required_htmx
def press(request, pk, action):
    """Press one of the job actions (actions.ACTIONS: Run, Stop, …) on a job; every press is audited."""
    chosen = actions.ACTIONS.get(action)
    if chosen is None:
        raise Http404(NOT_FOUND)
    try:
        job, access = _get_job_for_user(request, pk, chosen.operation)
    except Http404:
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    result = pressing.press(chosen, job, access, request.user, _request_info(request))
    if not access.visible:
        # Audited as denied, but the user learns nothing of the job.
        return _refuse(request, NOT_FOUND, NOT_FOUND_STATUS)
    status = RUN_STATUS[result.outcome]
    text = _said_to(request, result)
    # A press from the job's row gets the row back, Stop's too (its form targets the row): focus goes to
    # the new row's control (static/ipsadmin.js). From elsewhere (Active in IPS, a run's page) Stop is a message.
    swaps_row = chosen.swaps_row or (request.htmx and request.htmx.target == f"job-{job.pk}")
    if status != 200 and (not request.htmx or not result.job_visible or not swaps_row):
        # Who may not list the job learns only why not, never the job's row.
        return _refuse(request, text, status)
    if not request.htmx:
        messages.success(request, result.message)
        return redirect("jobs:list")
    if swaps_row:
        ran = result.execution
        if ran.operation == "executeJob" and ran.outcome not in Execution.NOT_SENT:
            # The row this press wrote is the job's last run (Job.with_last_run's): nothing to read back.
            now = timezone.now()
            job.last_execution, job.run_in_flight, job.follow = ran, ran.is_in_flight(now), ran.is_followed(now)
        else:
            [job] = Job.objects.filter(pk=job.pk).select_related("company").with_last_run()
        # The row's Stop (or its Run) as the panel's next poll will have it.
        job.active_in_ips = _active_in_ips(job)
        context = {
            "job": job,
            "section": _company_view(job.company, access, with_jobs=False),
            "flash": {"level": "success" if status == 200 else "error", "text": text},
        }
        response = render(request, "jobs/job_list.html#run-response", context, status=status)
    else:
        response = _htmx_flash(request, "success", text, status)
    # The company's Active-in-IPS panel asks again now, not at its next poll.
    return trigger_client_event(response, IPS_CHANGED)


@require_GET
@login_required_htmx
def active_runs(request, pk):
    """What IPS is running in the company now, whoever started it; polled while the page is open.

    From the database (the watcher's record), never from IPS. With the panel come, out of band,
    the action cells of the jobs whose busy/idle state differs from what the page shows."""
    try:
        company, access = _get_company_for_user(request, pk, "getActiveJobs")
    except Http404:
        return HttpResponseStopPolling()
    if not access.allowed:
        return HttpResponseStopPolling()
    runs, error = activity.active_runs(company)
    busy = {r.job.pk: r.run for r in runs if r.job is not None and r.run.state != "Done"}
    # The page says which of its cells show a run in IPS (hx-include of the busy cells' inputs):
    # only the cells of jobs that started or ended since are sent again.
    # At most a page of them: a poll never renders more cells than a page has, whatever it is sent.
    shown = {int(v) for v in request.GET.getlist("busy")[:JOBS_PER_PAGE] if v.isdigit()}
    changed = shown ^ busy.keys()
    # And the cells of jobs read again from IPS since the page's last answer (paused, resumed, gone):
    # their buttons depend on it too.
    try:
        seen = dt.datetime.fromisoformat(request.GET.get("seen", ""))
    except ValueError:
        seen = None
    if seen is not None and seen.tzinfo is None:
        seen = None
    jobs = []
    if (changed or seen is not None) and access.to("getScheduledJobs").allowed:
        # Of the jobs that started running, those on the poller's page (its search and page number).
        query, page, rows = _job_pages(request)[0], request.GET.get("page", "1"), request.GET.get("rows", "")
        size = min(int(rows), JOBS_PER_PAGE) if rows.isdigit() and int(rows) else JOBS_PER_PAGE
        on_page = Job.objects.filter(company=company)
        if query:
            on_page = on_page.filter(name__icontains=query)
        on_page = on_page.page_per_company({company.pk: int(page) if page.isdigit() else 1}, size)
        ended = shown - busy.keys()
        on_page_changed = Q(pk__in=changed - ended)
        if seen is not None:
            on_page_changed |= Q(last_synced_at__gt=seen) | Q(gone_at__gt=seen)
        candidates = Job.objects.filter(Q(pk__in=ended) | Q(pk__in=on_page.filter(on_page_changed).values("pk")),
                                        company=company)
        jobs = candidates.select_related("company").order_by("name", "pk").with_last_run()
        for job in jobs:
            job.active_in_ips = busy.get(job.pk)
    context = {
        "company": company,
        "section": _company_view(company, access, with_jobs=False),
        "jobs": jobs,
        # The page showed these running and IPS runs them no more: their end is said (base.html's live region).
        "ended": [job for job in jobs if job.pk in shown and job.pk not in busy],
        "runs": runs,
        "error": error,
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
    result = sync.sync_company(company)
    # What the sync wrote on the company (when, or why it failed), for the section's header.
    company.refresh_from_db(fields=["last_synced_at", "sync_error", "sync_failed_at"])
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
        return _ended_on_job_page(request, job, access, response)
    status = run_status(execution)
    response = render(request, "jobs/job_list.html#ips-status", {"job": job, "status": status})
    if status.finished:
        response.status_code = HttpResponseStopPolling.status_code
        return _ended_on_job_page(request, job, access, response)
    return response


def _ended_on_job_page(request, job, access, response):
    """The run's end on the job's page (no Active in IPS there): its row's buttons again (Run back),
    and the end said by the page's live region. On the jobs page the panel's poll does both."""
    if urlsplit(request.htmx.current_url or "").path != reverse("jobs:job_detail", args=[job.pk]):
        return response
    [job] = Job.objects.filter(pk=job.pk).select_related("company").with_last_run()
    job.active_in_ips = _active_in_ips(job)
    context = {"job": job, "section": _company_view(job.company, access, with_jobs=False), "ended": [job]}
    response.content += render_to_string("jobs/job_list.html#job-ended", context, request).encode()
    return response


#: How many of a job's runs its page lists (all of them are in History).
RECENT_RUNS = 20
#: The missed runs a job's page shows, latest first (missedrun_once_per_fire serves it).
RECENT_MISSED = 10


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
    if access.to("getActiveJobs").allowed:
        # Its row offers Stop while IPS runs it, as on the jobs page.
        job.active_in_ips = _active_in_ips(job)
    context = {
        "job": job,
        "section": _company_view(job.company, access, with_jobs=False),
        # A fact of its schedule, for whoever sees the job; the run that cleared one, for history's readers.
        "missed_runs": list(MissedRun.objects.filter(job=job)[:RECENT_MISSED]),
        "can_read_runs": access.to("getJobLogs").allowed,
    }
    if access.to("getJobLogs").allowed:
        context.update(
            stats=job_stats(job),
            window=STATS_WINDOW,
            last_failure=last_failure(job),
            runs=list(Execution.objects.filter(job=job).order_by("-requested_at", "-id")[:RECENT_RUNS]),
            history_url=reverse("jobs:history") + "?" + urlencode({"job": job.pk}),
        )
    return render(request, "jobs/job_detail.html", context)
