"""Background work's own state: following accepted runs in IPS, recurring chores."""

from __future__ import annotations

import datetime as dt

from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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
        verbose_name = _("run followed in IPS")
        verbose_name_plural = _("runs followed in IPS")
        indexes = [
            # resume_follows: runs still followed, by when they are due.
            models.Index(fields=["next_poll_at"], condition=Q(done_at__isnull=True), name="runfollow_due"),
        ]

    def __str__(self):
        return f"follow of execution {self.execution_id}"


class CompanyWatchQuerySet(models.QuerySet):
    def wake(self, company_id: int, now: dt.datetime | None = None) -> None:
        """Look at the company soon: a press went to IPS there (after the current transaction commits)."""

        transaction.on_commit(lambda: self.wake_now(company_id, now), using=self.db)

    def wake_now(self, company_id: int, now: dt.datetime | None = None) -> None:
        """wake(), in the current transaction: a press's outcome and the wake commit together
        (one commit, not two), and a rolled-back outcome wakes nobody."""
        at = now or timezone.now()
        # One UPDATE when the company's watch exists and sleeps (every press but the first).
        if not self.filter(pk=company_id, next_look_at__gt=at).update(next_look_at=at):
            self.get_or_create(company_id=company_id, defaults={"next_look_at": at, "next_sync_at": at})

    def next_due(self) -> dt.datetime | None:
        """When a look is next due that a watcher may take: a company under another watcher's lease
        is due when its lease ends, not before (a waiting watcher must not spin)."""
        due = Greatest("next_look_at", Coalesce("lease_until", "next_look_at"))
        return self.annotate(due=due).order_by("due").values_list("due", flat=True).first()


class CompanyWatch(models.Model):
    """The one watcher of a company's runs in IPS (services.watch): its lease, its place in IPS's logs.

    Whichever watcher process holds the lease looks at the company; a process
    killed mid-look leaves a lease that ends by itself (``lease_until``), so
    another takes over. Times of runs (``log_cursor``) are IPS's own clock.
    """

    company = models.OneToOneField(
        "jobs.Company", primary_key=True, on_delete=models.CASCADE, related_name="watch"
    )
    next_look_at = models.DateTimeField(help_text="When the next look at IPS is due.")
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    log_cursor = models.DateTimeField(
        null=True, blank=True, help_text="IPS's time: the newest start of a run read from the company's job logs."
    )
    log_resume = models.DateTimeField(
        null=True, blank=True,
        help_text="IPS's time: where the next look goes on reading when the last one stopped at its page limit.",
    )
    ips_offset_ms = models.BigIntegerField(
        null=True, blank=True, help_text="IPS's clock minus the dashboard's at the last look (from its Date header)."
    )
    looks = models.PositiveBigIntegerField(default=0)
    last_look_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True)

    objects = CompanyWatchQuerySet.as_manager()

    class Meta:
        verbose_name = _("company watcher")
        verbose_name_plural = _("company watchers")
        indexes = [
            # The watcher's loop: companies due for a look.
            models.Index(fields=["next_look_at"], name="companywatch_due"),
        ]

    def __str__(self):
        return f"watch of company {self.company_id}"


class Chore(models.Model):
    """A recurring background task (jobs/tasks.py): one chain of it at a time.

    Like RunFollow: each run carries ``token``; a run whose token is no
    longer the row's is a duplicate and does nothing."""

    name = models.CharField(max_length=50, primary_key=True)
    token = models.CharField(max_length=32)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.TextField(blank=True)

    class Meta:
        verbose_name = _("chore")
        verbose_name_plural = _("chores")

    def __str__(self):
        return self.name
