"""The worker's part of a history export: the rows read as History reads them, written to a file with
its progress, ready or failed once (services.exports keeps the records, the keep and the cleanup).

Not in services: it rebuilds the History form from the stored filters, and reads through history and
csvexport, which the service layer does not import (jobs/tests/test_layout.py)."""

from __future__ import annotations

import csv
import logging
import os
import secrets
import zoneinfo
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import QueryDict
from django.utils import timezone

from .csvexport import EXPORT_COLUMNS, export_rows
from .forms import HistoryFilterForm
from .history import ordered, visible_to
from .models import Company, ExportFile
from .services.exports import (
    DATABASE_FAILED,
    FILTERS_INVALID,
    NO_LONGER_ALLOWED,
    UNEXPECTED,
    WRITE_FAILED,
    _leave_running,
    _remove,
    finish_export,
    readable_companies,
)

log = logging.getLogger(__name__)


class _Abandoned(Exception):
    """The file's row left "running" under the worker (taken for dead): it stops and keeps nothing."""


def _write_csv(out, header, rows, progress, every: int, count: list[int]) -> int:
    """The CSV as the streamed export wrote it, byte for byte; ``progress(n)`` every ``every`` rows.
    ``count[0]``: the rows written so far, whatever stops it."""
    out.write("\ufeff")  # the BOM: spreadsheets read UTF-8 then
    csv.writer(out).writerow(header)
    # Every text cell quoted (OWASP): a separator inside one (";" where it splits cells) splits nothing.
    writerow = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC).writerow
    for n, row in enumerate(rows, 1):
        writerow(row)
        count[0] = n
        if n % every == 0:
            progress(n)
    return count[0]


def run_export(export_id: int, now=None) -> str:
    """The worker's part: count the rows, write them to a file, report progress; ready or failed, once."""
    now = now or timezone.now()
    taken = ExportFile.objects.filter(pk=export_id, state=ExportFile.State.QUEUED).update(
        state=ExportFile.State.RUNNING, started_at=now, updated_at=now)
    if not taken:
        return "not queued: already taken, or settled"  # a duplicate delivery of the task
    file = ExportFile.objects.select_related("export", "export__user").get(pk=export_id)
    export, written, part, count = file.export, 0, None, [0]
    try:
        zone = zoneinfo.ZoneInfo(file.time_zone)
        with timezone.override(zone):
            user = export.user
            companies = readable_companies(user) if user is not None and user.is_active else []
            if user is None or not (user.is_superuser or companies):
                raise _Refused(NO_LONGER_ALLOWED)
            form = HistoryFilterForm(QueryDict(urlencode(export.filters)), companies=companies, user=user)
            if not form.is_valid():
                raise _Refused(FILTERS_INVALID)
            rows = form.filter(visible_to(user, [c.pk for c in companies], by_company_index=not form.narrows()),
                               now=export.at)
            total = ordered(rows, form.chosen_sort).count()
            chosen = form.cleaned_data.get("company")
            # Whose rows the file may hold: the download asks that the user may still read each.
            covered = None if user.is_superuser else [chosen.pk] if chosen else sorted(c.pk for c in companies)
            ExportFile.objects.filter(pk=export_id).update(rows_total=total, companies=covered,
                                                           updated_at=timezone.now())
            names = {c.pk: c.name for c in (Company.objects.all() if user.is_superuser else companies)}
            # PostgreSQL: a server-side cursor (faster than keyset chunks, and one snapshot); SQLite: keyset chunks.
            lines = export_rows(rows, form.chosen_sort, names, zone, split=form.split(),
                                server_cursor=connections[rows.db].vendor == "postgresql")

            def progress(n):
                if not ExportFile.objects.filter(pk=export_id, state=ExportFile.State.RUNNING).update(
                        rows_written=n, updated_at=timezone.now()):
                    raise _Abandoned()

            directory = Path(settings.EXPORTS_DIR)
            directory.mkdir(parents=True, exist_ok=True)
            name = f"history-{export.pk}-{secrets.token_hex(8)}.csv"
            part = directory / (name + ".part")
            # The audit trail's rows: the app's user, and its directory's group (nginx's, which sends the
            # file on X-Accel-Redirect: docs/deploy.md), may read it; nobody else.
            with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640), "w", encoding="utf-8",
                      newline="") as out:
                written = _write_csv(out, [h for h, _ in EXPORT_COLUMNS], lines, progress,
                                     settings.EXPORTS_PROGRESS_EVERY, count)
            os.replace(part, directory / name)
            part = directory / name
            size = part.stat().st_size
        done = timezone.now()
        if not _leave_running(export_id, ExportFile.State.READY, done, path=name, size=size, rows_written=written,
                              rows_total=max(total, written), expires_at=done + settings.EXPORTS_KEEP):
            raise _Abandoned()
        finish_export(export, written, True)
        return f"ready: {written} rows, {size} bytes"
    except _Abandoned:
        _remove(part)
        log.warning("history export %s: taken for dead while writing; its file is dropped", export_id)
        return "abandoned"
    except Exception as e:
        _remove(part)
        written = max(written, count[0])
        if isinstance(e, _Refused):
            message = e.message
            log.warning("history export %s refused in the worker: %s", export_id, message)
        else:
            message = WRITE_FAILED if isinstance(e, OSError) else DATABASE_FAILED if isinstance(
                e, DatabaseError) else UNEXPECTED
            log.exception("history export %s failed after %d rows", export_id, written)
        if _leave_running(export_id, ExportFile.State.FAILED, timezone.now(), error=message, rows_written=written):
            finish_export(export, written, False)
        return f"failed: {message}"


class _Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
