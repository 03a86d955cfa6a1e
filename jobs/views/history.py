"""History: the audit trail filtered, sorted and paged by keyset, and membership changes (its CSV export: views/exports.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models.functions import Length
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from ..forms import HistoryFilterForm
from ..history import DEFAULT_SORT, CursorError, Sort, planned_page, visible_terms
from ..models import Company, Execution, Job, MembershipChange
from .common import login_required_htmx


def _get_history_for_user(request) -> tuple[list[Company], list[str]]:
    """The companies whose history (getJobLogs) the user may read, and why not
    in the user's other companies (one sentence each).

    A superuser reads every row, those of deleted companies too (history.visible_terms)."""
    accesses = Company.objects.accesses_for(request.user, "getJobLogs")
    companies = list(Company.objects.filter(pk__in=accesses))
    allowed = [c for c in companies if accesses[c.pk].allowed]
    refused = [accesses[c.pk].reason for c in companies if not accesses[c.pk].allowed]
    return allowed, refused


def _history_url(params: dict, **more) -> str:
    query = urlencode({**params, **{k: v for k, v in more.items() if v}})
    return reverse("jobs:history") + (f"?{query}" if query else "")


#: Sortable columns: (sort key when clicked, sort key when clicked again).
SORTABLE = {"requested": ("-requested", "requested"), "ips_runtime": ("-ips_runtime", "ips_runtime"),
            "request_time": ("-request_time", "request_time")}


def _sort_links(params: dict, current: Sort) -> dict:
    """For each sortable column: the address that sorts by it (or reverses it), and its arrow."""
    links = {}
    for column, (first, again) in SORTABLE.items():
        key = again if current.key == first else first
        arrow = "↓" if current.key == first else "↑" if current.key == again else ""
        params_ = {k: v for k, v in params.items() if k != "sort"}
        if key != DEFAULT_SORT.key:
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
        executions = Execution.objects.select_related("company")
        # A chosen company is one of the user's: it says all the companies' filter would.
        terms = form.terms() if form.cleaned_data.get("company") else (
            visible_terms(request.user, [c.pk for c in companies]) + form.terms())
        try:
            page = planned_page(executions, terms, form.chosen_sort, after=paging["after"], before=paging["before"],
                                last="page" in paging)
        except CursorError:
            # A mangled page link: the first page, and the address says so.
            paging = {}
            page = planned_page(executions, terms, form.chosen_sort)
    context = {
        "form": form,
        "page": page,
        "params": params,
        "query": urlencode(params),
        "refused": refused,
        "may_read": may_read,
        "sorts": _sort_links(params, form.chosen_sort if page else DEFAULT_SORT),
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
