"""History's CSV export as background work: ask for it, watch its progress, download the file.

The request only records the export and queues its task (services.exports);
a worker writes the file. Only the user who asked sees its progress or
downloads it: 404 for everybody else, superusers included."""

from __future__ import annotations

import logging
import zoneinfo

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from ..forms import HistoryFilterForm
from ..models import ExportFile
from ..services import exports
from .common import _request_info, login_required_htmx
from .history import _get_history_for_user

log = logging.getLogger(__name__)

#: htmx stops polling on this status (the export has finished, one way or another).
STOP_POLLING = 286


def _get_export_for_user(request, pk: int) -> ExportFile:
    """The user's own export file, or 404 (another's, a superuser's look included: no export is shown to anyone else)."""
    file = ExportFile.objects.select_related("export").filter(pk=pk, export__user_id=request.user.pk).first()
    if file is None:
        raise Http404(gettext("No such export of yours."))
    return file


def _panel_context(file: ExportFile, now=None) -> dict:
    now = now or timezone.now()
    file = exports.settle_stale(file, now)
    if file.state == ExportFile.State.READY and file.expires_at is not None and file.expires_at <= now:
        file = exports.expire(file, now)  # the cleanup may not have run yet: the page says so anyway
    zone = zoneinfo.ZoneInfo(file.time_zone) if file.time_zone else timezone.get_current_timezone()
    return {
        "file": file,
        "finished": file.state in ExportFile.FINISHED,
        "error": gettext(file.error) if file.error else "",
        "asked_at": timezone.localtime(file.export.at, zone),
        "keep_hours": round(settings.EXPORTS_KEEP.total_seconds() / 3600),
    }


def _panel(request, file: ExportFile, status: int | None = None):
    context = _panel_context(file)
    if request.htmx:
        status = status or (STOP_POLLING if context["finished"] else 200)
        return render(request, "jobs/export.html#panel", context, status=status)
    return render(request, "jobs/export.html", context, status=status or 200)


@require_POST
@login_required
def history_export(request):
    """Ask for the filtered history as CSV: recorded (HistoryExport), written by a worker; the answer is its progress."""
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
        return HttpResponse(gettext("These filters are not valid: %(errors)s") % {"errors": errors}, status=400,
                            content_type="text/plain; charset=utf-8")
    file = exports.request_export(request.user, form.params(), _request_info(request), request.time_zone.key)
    if not request.htmx:
        # A plain form: the progress has an address of its own (Reload or "Check again" asks again).
        return redirect("jobs:export_progress", file.pk, permanent=False)
    return _panel(request, file, status=200)


@require_GET
@login_required_htmx
def export_progress(request, pk: int):
    """The export's progress panel: polled by htmx until it has finished (286), or a page of its own."""
    return _panel(request, _get_export_for_user(request, pk))


@require_GET
@login_required_htmx
def export_latest(request):
    """The History page's panel: the user's latest export, while it runs or its file is kept; else nothing."""
    file = (ExportFile.objects.select_related("export").filter(export__user_id=request.user.pk)
            .order_by("-export__at", "-pk").first())
    if file is None or file.state == ExportFile.State.EXPIRED or (
            file.state == ExportFile.State.FAILED and file.finished_at
            and file.finished_at < timezone.now() - settings.EXPORTS_KEEP):
        return render(request, "jobs/export.html#empty")
    return _panel(request, file, status=200)


@require_GET
@login_required
def export_download(request, pk: int):
    """The file, streamed from disk by FileResponse (behind nginx: X-Accel-Redirect would hand it over)."""
    file = _get_export_for_user(request, pk)
    context = _panel_context(file)
    file = context["file"]
    if file.state != ExportFile.State.READY:
        # Expired (410: it was here, and is gone for good), or not ready yet (409).
        return render(request, "jobs/export.html", context,
                      status=410 if file.state == ExportFile.State.EXPIRED else 409)
    if not exports.still_readable(file, request.user):
        # The file holds rows of a company whose history the user may read no more.
        return render(request, "jobs/export.html", {**context, "refusal": gettext(
            "Your roles changed since this export was asked: it holds rows you may no longer read. "
            "Export again from History.")}, status=403)
    stamp = context["asked_at"].strftime("%Y%m%d-%H%M%S")
    filename = f"ipsadmin-history-{stamp}.csv"
    path = exports.file_path(file)
    if not path.is_file():
        # Not on this server: EXPORTS_DIR not shared with the workers, or deleted by hand. Not "expired".
        log.error("history export %s: its file %s is not on this server (is EXPORTS_DIR shared?)", file.pk, path)
        return render(request, "jobs/export.html", {**context, "refusal": gettext(
            "The file of this export is not on this server. Tell an administrator.")}, status=500)
    log.info("history export %s (%s rows) downloaded by %s", file.pk, file.rows_written, request.user.get_username())
    if settings.EXPORTS_ACCEL_REDIRECT:
        # nginx sends the file (an internal location on EXPORTS_DIR): no web worker waits on a slow client.
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["X-Accel-Redirect"] = settings.EXPORTS_ACCEL_REDIRECT.rstrip("/") + "/" + file.path
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    else:
        response = FileResponse(open(path, "rb"), as_attachment=True, filename=filename,
                                content_type="text/csv; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
