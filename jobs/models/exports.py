"""The record of CSV exports of history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .append_only import AppendOnly, AppendOnlyQuerySet, Rules, Stage, set_null_by_database


class HistoryExportQuerySet(AppendOnlyQuerySet):
    """The append-only guard; nothing of its own."""


class HistoryExport(AppendOnly):
    """One CSV export of history: who, when, with which filters, how many rows.

    Written when the export starts, and completed once when its last row is
    sent or the download breaks off (services.exports: start_export, finish_export):
    an export that dies midway still says who asked for what. Never changed
    otherwise, never deleted. Not an Execution: those are IPS operations on
    a job."""

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=set_null_by_database, related_name="+")
    username = models.CharField(max_length=150)
    filters = models.JSONField(default=dict, blank=True, help_text="The history filters, as in the page's address.")
    row_count = models.PositiveBigIntegerField("rows sent", null=True, blank=True)
    completed = models.BooleanField(
        null=True, blank=True, help_text="Every row sent (yes), the download broke off (no), or still going."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = HistoryExportQuerySet.as_manager()

    class Meta(AppendOnly.Meta):
        ordering = ["-at", "-id"]
        indexes = [
            # The admin's list of exports, newest first.
            models.Index(fields=["-at"], name="historyexport_recent"),
            # The admin's list of one user's exports.
            models.Index(fields=["user", "-at"], name="historyexport_user_recent"),
        ]

    #: What finish_export() writes, once.
    FINISH_FIELDS = ("row_count", "completed", "finished_at")

    RULES = Rules(
        kind="a record",
        row="export",
        done="completed",
        born_as="an export that has just started",
        later=FINISH_FIELDS,
        stages=(Stage(when={"finished_at": (None,)}, writable=FINISH_FIELDS),),
        clock=("at", "finished_at"),
    )

    def __str__(self):
        return f"export by {self.username} at {self.at:%Y-%m-%d %H:%M:%S}"
