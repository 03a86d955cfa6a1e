"""The record of CSV exports of history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class HistoryExportQuerySet(models.QuerySet):
    def delete(self):
        raise PermissionError("Export records are never deleted.")

    def update(self, **kwargs):
        # Deleting a user sets its key NULL (on_delete=SET_NULL); the username snapshot stays.
        if kwargs == {"user": None}:
            return super().update(**kwargs)
        raise PermissionError("An export record changes only through services.exports.finish_export(), once.")


class HistoryExport(models.Model):
    """One CSV export of history: who, when, with which filters, how many rows.

    Written when the export starts, and completed once when its last row is
    sent or the download breaks off (services.exports: start_export, finish_export):
    an export that dies midway still says who asked for what. Never changed
    otherwise, never deleted. Not an Execution: those are IPS operations on
    a job."""

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
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

    class Meta:
        base_manager_name = "objects"
        ordering = ["-at", "-id"]
        indexes = [
            # The admin's list of exports, newest first.
            models.Index(fields=["-at"], name="historyexport_recent"),
            # The admin's list of one user's exports.
            models.Index(fields=["user", "-at"], name="historyexport_user_recent"),
        ]

    #: What finish_export() writes, once.
    FINISH_FIELDS = frozenset({"row_count", "completed", "finished_at"})

    def __str__(self):
        return f"export by {self.username} at {self.at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored = dict(zip(field_names, values))
        return instance

    def save(self, *args, **kwargs):
        stored = getattr(self, "_stored", None)
        if stored is None:
            if self.pk is not None or self.finished_at is not None:
                raise PermissionError("An export is recorded as a new row, when it starts.")
            kwargs["force_insert"] = True
        else:
            changed = {f for f in stored if getattr(self, f, stored[f]) != stored[f]}
            if stored.get("finished_at") is not None or changed - self.FINISH_FIELDS:
                raise PermissionError("An export record is completed once, and never changed after.")
            kwargs["update_fields"] = sorted(changed)
        super().save(*args, **kwargs)
        self._stored = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}

    def delete(self, *args, **kwargs):
        raise PermissionError("Export records are never deleted.")
