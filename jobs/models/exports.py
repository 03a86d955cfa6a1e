"""The record of CSV exports of history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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

    at = models.DateTimeField(_("at"), default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), null=True, on_delete=set_null_by_database, related_name="+",
    )
    username = models.CharField(_("username"), max_length=150)
    filters = models.JSONField(
        _("filters"), default=dict, blank=True, help_text=_("The history filters, as in the page's address."),
    )
    row_count = models.PositiveBigIntegerField(_("rows sent"), null=True, blank=True)
    completed = models.BooleanField(_("completed"),
        null=True, blank=True, help_text=_("Every row sent (yes), the download broke off (no), or still going.")
    )
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    request_id = models.CharField(_("request id"), max_length=64)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)

    objects = HistoryExportQuerySet.as_manager()

    class Meta(AppendOnly.Meta):
        verbose_name = _("history export")
        verbose_name_plural = _("history exports")
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


class ExportFile(models.Model):
    """Where one export's CSV file stands: written by a background worker, downloaded, then deleted.

    Operational state that changes as the worker goes (HistoryExport, append-only,
    keeps what was asked and how it ended). Every change of ``state`` is a
    conditional UPDATE from the state it leaves (services.exports), so a worker
    taken for dead and still running cannot overwrite the verdict."""

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")

    export = models.OneToOneField(HistoryExport, primary_key=True, on_delete=models.CASCADE, related_name="file")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    time_zone = models.CharField(max_length=64, help_text="The zone the times are written in: the user's when asked.")
    rows_total = models.PositiveBigIntegerField(null=True, blank=True, help_text="Counted by the worker first.")
    rows_written = models.PositiveBigIntegerField(default=0)
    path = models.CharField(max_length=255, blank=True, help_text="The file's name in settings.EXPORTS_DIR.")
    size = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    companies = models.JSONField(
        null=True, blank=True,
        help_text="The companies whose rows the file may hold (ids); empty for a superuser's every row. "
                  "The download asks that the user may still read each of them.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    #: The worker's heartbeat: set at every progress report.
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("export file")
        verbose_name_plural = _("export files")
        indexes = [
            # The cleanup chore: files past their keep (state ready or failed with a file), oldest first.
            models.Index(fields=["expires_at"], condition=models.Q(expires_at__isnull=False), name="exportfile_expiry"),
            # The cleanup chore: exports whose worker stopped reporting (queued or running).
            models.Index(fields=["updated_at"], condition=models.Q(state__in=["queued", "running"]),
                         name="exportfile_unfinished"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["queued", "running", "ready", "failed", "expired"]),
                name="exportfile_state_known",
            ),
            # A ready file has a name and a size (the download reads them).
            models.CheckConstraint(
                condition=~models.Q(state="ready") | (~models.Q(path="") & models.Q(size__isnull=False)),
                name="exportfile_ready_has_file",
            ),
        ]

    FINISHED = (State.READY, State.FAILED, State.EXPIRED)

    def __str__(self):
        return f"file of export {self.export_id} ({self.state})"

    def stale(self, now=None) -> bool:
        """A worker that took it and stopped reporting: killed, or its machine gone."""
        now = now or timezone.now()
        return self.state == self.State.RUNNING and self.updated_at < now - settings.EXPORTS_STALE

    @property
    def percent(self) -> int:
        if self.state == self.State.READY:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_written * 100 // self.rows_total)
