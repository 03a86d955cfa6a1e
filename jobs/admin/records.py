"""Records: what happened, shown to administrators and changed by nobody (executions, history exports)."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from ..history import capped_count
from ..models import Execution, HistoryExport, Job


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record: every field shown, nobody adds, changes or deletes one, superusers included."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: counting a million audit rows takes a database
    most of a second, for a number nobody pages through. The pages past the cap
    are reached by filters (admin/jobs/execution/pagination.html says so)."""

    cap = 10_000

    @cached_property
    def count(self):
        count, self.capped = capped_count(self.object_list, self.cap)
        return count


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    """The audit trail: visible to administrators, changeable by nobody.

    Fast at a million rows: no full count (CappedCountPaginator, no second
    count), filters whose choices are fixed (no SELECT DISTINCT over the table)
    and served by an index, no date hierarchy (a DISTINCT over every row),
    search only where an index answers, sorting only by time."""

    list_display = [
        "requested_at",
        "job_name",
        "company_label",
        "username",
        "started_by",
        "role",
        "operation",
        "outcome",
        "ips_result",
        "fault_code",
        "duration_ms",
    ]
    # Fixed choices, each served by its index (started_by: execution_started_by_recent).
    list_filter = ["started_by", "outcome", "ips_result", "company", ("requested_at", admin.DateFieldListFilter)]
    # The box is shown for any search field; get_search_results decides what is searched.
    search_fields = ["request_id"]
    search_help_text = "A request id (whole), a user name (whole, any case), or part of a job's name."
    list_select_related = ["company"]
    sortable_by = ["requested_at"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    @admin.display(description="company", ordering="company_handle")
    def company_label(self, obj):
        return f"{obj.company.name} ({obj.company_handle})" if obj.company else obj.company_handle

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # One index per search, so that the page is read in its order: a request
        # id, else a user name (whole, any case), else the jobs whose name has the
        # term (their keys from the small job table). An OR of the three would
        # make the database fetch every match and sort them.
        if Execution.objects.filter(request_id=term).exists():
            return queryset.filter(request_id=term), False
        if Execution.objects.by_usernames([term]).exists():
            return queryset.by_usernames([term]), False
        jobs = list(Job.objects.filter(name__icontains=term).values_list("pk", flat=True)[:100])
        return queryset.filter(job_id__in=jobs), False



@admin.register(HistoryExport)
class HistoryExportAdmin(ReadOnlyAdmin):
    """Who exported which history, and how much of it: visible to administrators, changeable by nobody."""

    list_display = ["at", "username", "filters", "row_count", "completed", "finished_at", "request_id"]
    list_filter = ["completed", ("at", admin.DateFieldListFilter)]
    search_fields = ["username", "=request_id"]
