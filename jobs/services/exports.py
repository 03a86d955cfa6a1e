"""History exports: the record of each (who, which filters, how many rows, whether all went out),
and the background task's part: the CSV written to a file with its progress, kept a while, then deleted."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from .. import events
from ..models import Company, ExportFile, HistoryExport
from .base import RequestInfo

log = logging.getLogger(__name__)


def start_export(user, filters: dict, info: RequestInfo) -> HistoryExport:
    """Record a CSV export of history as it starts: who, which filters, from where."""
    export = HistoryExport(
        user=user,
        username=user.get_username(),
        filters=filters,
        request_id=info.request_id,
        client_ip=info.client_ip,
    )
    export.save()
    log.info("history export %s by %s started (filters %s)", export.pk, export.username, filters)
    return export


def finish_export(export: HistoryExport, rows: int, completed: bool) -> None:
    """Complete the record, once: how many rows went out, and whether all did."""
    export.row_count = rows
    export.completed = completed
    export.finished_at = timezone.now()
    export.save()
    log.info("history export %s by %s %s after %d rows", export.pk, export.username,
             "completed" if completed else "broke off", rows)



# --- The export as a background task: the file's state (ExportFile) --------------------------------

#: The kind of background work (jobs/events.py) that writes one export's file: args (export id,).
EXPORT = "history_export"

# What a failed export says to the user, translated when shown (the details go to the log).
WRITE_FAILED = gettext_noop("The file could not be written on the server (the disk is full or not writable).")
DATABASE_FAILED = gettext_noop("The database failed while the rows were read.")
UNEXPECTED = gettext_noop("The export failed unexpectedly; the server's log says why.")
NO_LONGER_ALLOWED = gettext_noop("You may no longer read job history in any company.")
FILTERS_INVALID = gettext_noop("These filters are no longer valid.")
WORKER_STOPPED = gettext_noop("The worker stopped before the file was finished.")
NOT_STARTED = gettext_noop("No worker took the export in time.")


def readable_companies(user) -> list[Company]:
    """The companies whose history (getJobLogs) the user may read (as views/history._get_history_for_user)."""
    accesses = Company.objects.accesses_for(user, "getJobLogs")
    return [c for c in Company.objects.filter(pk__in=accesses) if accesses[c.pk].allowed]


def request_export(user, filters: dict, info: RequestInfo, zone_name: str) -> ExportFile:
    """Record the export and queue the task that writes its file (after the commit)."""
    with transaction.atomic():
        # One unfinished export per user (the user's row locked: two tabs asking at once get one):
        # asking again shows the one under way rather than queueing the same work twice.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        running = (ExportFile.objects.select_related("export")
                   .filter(export__user_id=user.pk, state__in=[ExportFile.State.QUEUED, ExportFile.State.RUNNING])
                   .order_by("-pk").first())
        if running is not None and not running.stale(timezone.now()):
            return running
        export = start_export(user, filters, info)
        file = ExportFile.objects.create(export=export, time_zone=zone_name, created_at=export.at,
                                         updated_at=export.at)
        events.schedule(EXPORT, export.pk, when=export.at)
    return file


def file_path(file: ExportFile) -> Path:
    return Path(settings.EXPORTS_DIR) / file.path


def _leave_running(pk: int, state: str, now, **fields) -> bool:
    """running -> ``state``, once: whoever makes this change completes the record."""
    return bool(ExportFile.objects.filter(pk=pk, state=ExportFile.State.RUNNING)
                .update(state=state, updated_at=now, finished_at=now, **fields))


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def settle_stale(file: ExportFile, now=None) -> ExportFile:
    """A running export whose worker stopped reporting: failed, and its record completed as broken off."""
    now = now or timezone.now()
    if file.stale(now) and _leave_running(file.pk, ExportFile.State.FAILED, now, error=WORKER_STOPPED):
        finish_export(HistoryExport.objects.get(pk=file.pk), file.rows_written, False)
        log.warning("history export %s: its worker stopped reporting at %s rows", file.pk, file.rows_written)
        file.refresh_from_db()
    return file


def expire(file: ExportFile, now=None) -> ExportFile:
    """A file past its keep: deleted, and its row says so."""
    now = now or timezone.now()
    if file.expires_at is not None and file.expires_at <= now:
        if file.path:
            _remove(file_path(file))
        ExportFile.objects.filter(pk=file.pk, expires_at__lte=now).update(
            state=ExportFile.State.EXPIRED if file.state == ExportFile.State.READY else file.state,
            path="", size=None, expires_at=None, updated_at=now)
        file.refresh_from_db()
    return file


def clean_exports(now=None) -> str:
    """The cleanup: files past their keep deleted, dead workers' exports failed (and their partial files
    deleted), exports never taken failed."""
    now = now or timezone.now()
    expired = stale = 0
    for file in ExportFile.objects.filter(expires_at__lte=now):  # exportfile_expiry
        expire(file, now)
        expired += 1
    for file in ExportFile.objects.filter(state__in=[ExportFile.State.QUEUED, ExportFile.State.RUNNING],
                                          updated_at__lt=now - settings.EXPORTS_STALE):  # exportfile_unfinished
        if file.state == ExportFile.State.RUNNING:
            stale += settle_stale(file, now).state == ExportFile.State.FAILED
        elif file.updated_at < now - settings.EXPORTS_KEEP:
            # Queued a whole keep long: no worker runs. The record says so; the page too.
            if ExportFile.objects.filter(pk=file.pk, state=ExportFile.State.QUEUED).update(
                    state=ExportFile.State.FAILED, error=NOT_STARTED, updated_at=now, finished_at=now):
                finish_export(HistoryExport.objects.get(pk=file.pk), 0, False)
                stale += 1
    # What a killed worker left: its partial file (a live one rewrites its file long before this age).
    directory = Path(settings.EXPORTS_DIR)
    if directory.is_dir():
        for part in directory.glob("history-*.csv.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < (now - settings.EXPORTS_KEEP).timestamp():
                    part.unlink()
                    expired += 1
    # A complete file whose worker was killed before its row said "ready": no row names it.
    if directory.is_dir():
        named = set(ExportFile.objects.exclude(path="").values_list("path", flat=True))
        for orphan in directory.glob("history-*.csv"):
            with contextlib.suppress(FileNotFoundError):
                if orphan.name not in named and orphan.stat().st_mtime < (now - settings.EXPORTS_KEEP).timestamp():
                    orphan.unlink()
                    expired += 1
    return f"{expired} export files expired, {stale} unfinished exports failed"


def still_readable(file: ExportFile, user) -> bool:
    """May the user still read every company whose rows the file may hold? (Roles change; the file stays.)"""
    if user.is_superuser:
        return True
    if file.companies is None:
        return False  # a superuser's every row, and the user is one no more
    readable = {c.pk for c in readable_companies(user)}
    return set(file.companies) <= readable
