"""Records: what happened, shown to administrators and changed by nobody (executions, history exports)."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection, models
from django.db.models import F, Func
from django.utils.functional import cached_property
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..history import DRIVE_CAP, capped_count
from ..models import Execution, ExportFile, HistoryExport, Job
from .values import ReadableValues
from .values import at as _at


class ReadOnlyAdmin(ReadableValues, admin.ModelAdmin):
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

    def __init__(self, object_list, *args, count_from=None, **kwargs):
        super().__init__(object_list, *args, **kwargs)
        #: The same rows written for counting (ExecutionAdmin.get_search_results), else the list's.
        self.count_from = object_list if count_from is None else count_from

    @cached_property
    def count(self):
        count, self.capped = capped_count(self.count_from, self.cap)
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
    search_help_text = _("A request id (whole), a user name (whole, any case), or part of a job's name.")
    list_select_related = ["company"]
    sortable_by = ["requested_at"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    @admin.display(description=_("company"), ordering="company_handle")
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
        matching = queryset.filter(job_id__in=jobs)
        if len(jobs) < 2 or connection.vendor != "sqlite":
            return matching, False
        # SQLite, without statistics, answers an IN over several jobs from their index: every
        # run of them fetched and sorted for a page. As History does (history.plan): jobs
        # with few runs (a count that stops at DRIVE_CAP) are read so; jobs with more are
        # found walking the time order with "+job_id" (no index answers it), a page within
        # about 100 × rows ÷ DRIVE_CAP entries. The count still reads their index (no order).
        if Execution.objects.filter(job_id__in=jobs).order_by()[: DRIVE_CAP + 1].count() <= DRIVE_CAP:
            return matching, False
        request.executions_count_from = matching
        walked = queryset.alias(job_unindexed=Func(F("job_id"), template="+%(expressions)s",
                                                   output_field=models.BigIntegerField()))
        return walked.filter(job_unindexed__in=jobs), False

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page,
                              count_from=getattr(request, "executions_count_from", None))



@admin.register(HistoryExport)
class HistoryExportAdmin(ReadOnlyAdmin):
    """Who exported which history, and how much of it: visible to administrators, changeable by nobody."""

    list_display = ["at", "username", "filters", "row_count", "completed", "finished_at", "file_state", "request_id"]
    list_filter = ["completed", ("at", admin.DateFieldListFilter)]
    search_fields = ["username", "=request_id"]
    # The file's state (ExportFile, one row per export since issue 18): one join, not a query per row.
    list_select_related = ["file"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "file_state"]

    @admin.display(description=_("file"))
    def file_state(self, obj):
        """Where the export's file stands: queued, running (rows written of total), ready, failed (why), expired."""
        file = getattr(obj, "file", None)
        if file is None:
            return "—"  # an export streamed before issue 18: no file
        if file.state == ExportFile.State.RUNNING:
            return gettext("running: %(written)s of %(total)s rows") % {
                "written": file.rows_written, "total": file.rows_total if file.rows_total is not None else "?"}
        if file.state == ExportFile.State.FAILED:
            # The error as recorded; the word before it is the page's.
            return gettext("failed: %(error)s") % {"error": file.error}
        if file.state == ExportFile.State.READY:
            return gettext("ready: %(size)s bytes, until %(at)s") % {"size": file.size, "at": _at(file.expires_at)}
        return file.get_state_display()
