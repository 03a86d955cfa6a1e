"""Background work's own state: following accepted runs in IPS, recurring chores."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

# The execution by name ("jobs.Execution"): .executions imports this module,
# ExecutionQuerySet.prune() deletes the follows of what it prunes.


class RunFollow(models.Model):
    """Following one accepted run in IPS: where it stands, not what happened.

    Operational state that changes at every poll (the audit row keeps the
    result). One chain of follow tasks per run: each step carries ``token``,
    and a step whose token is no longer the row's is a stale duplicate.
    ``lease_until`` keeps two workers from polling the same run at once.
    """

    execution = models.OneToOneField(
        "jobs.Execution", primary_key=True, on_delete=models.CASCADE, related_name="follow"
    )
    deadline = models.DateTimeField(help_text="Past this, the run is recorded as 'no result from IPS'.")
    next_poll_at = models.DateTimeField()
    polls = models.PositiveIntegerField(default=0)
    token = models.CharField(max_length=32)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # resume_follows: runs still followed, by when they are due.
            models.Index(fields=["next_poll_at"], condition=Q(done_at__isnull=True), name="runfollow_due"),
        ]

    def __str__(self):
        return f"follow of execution {self.execution_id}"


class Chore(models.Model):
    """A recurring background task (jobs/tasks.py): one chain of it at a time.

    Like RunFollow: each run carries ``token``; a run whose token is no
    longer the row's is a duplicate and does nothing."""

    name = models.CharField(max_length=50, primary_key=True)
    token = models.CharField(max_length=32)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.TextField(blank=True)

    def __str__(self):
        return self.name
