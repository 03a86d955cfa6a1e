"""The record of each history export: who, which filters, how many rows, and whether all went out."""

from __future__ import annotations

import logging

from django.utils import timezone

from ..models import HistoryExport
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

