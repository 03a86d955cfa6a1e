"""The scheduled IPS jobs, as getScheduledJobs lists them."""

from __future__ import annotations

from django.db import models
from django.db.models import Count, F, OuterRef, Q, Subquery, Window
from django.db.models.functions import MD5, RowNumber
from django.utils import timezone

from .connections import Company
from .executions import Execution


class JobQuerySet(models.QuerySet):
    def with_last_run(self) -> list[Job]:
        """The jobs, each with its latest run sent to IPS and that run's state.

        Two queries, whatever the count. Sets on each job: ``last_execution``
        (or None), ``run_in_flight`` (a live run is being started) and
        ``follow`` (a run accepted lately, to follow in IPS after a reload).
        """
        latest = Execution.objects.filter(job=OuterRef("pk")).sent().order_by("-requested_at", "-id").values("id")[:1]
        jobs = list(self.annotate(last_execution_id=Subquery(latest)))
        last = Execution.objects.in_bulk([j.last_execution_id for j in jobs if j.last_execution_id])
        now = timezone.now()
        for job in jobs:
            ex = job.last_execution = last.get(job.last_execution_id)
            job.run_in_flight = ex is not None and ex.is_in_flight(now)
            job.follow = ex is not None and ex.is_followed(now)
        return jobs

    def page_per_company(self, pages: dict[int, int], size: int):
        """Page ``pages[company id]`` (from 1) of each of those companies' jobs, by name, in one query.

        The database numbers each company's jobs (a window), so any page of any
        number of companies costs one query; nothing is computed per job
        outside the page (annotate the result, not this)."""
        ranked = self.filter(company_id__in=pages).annotate(
            position=Window(RowNumber(), partition_by=F("company_id"), order_by=[F("name").asc(), F("id").asc()])
        )
        wanted = Q(pk__in=[])
        for company_id, page in pages.items():
            start = (max(1, page) - 1) * size
            wanted |= Q(company_id=company_id, position__gt=start, position__lte=start + size)
        return self.model.objects.filter(pk__in=ranked.filter(wanted).values("pk")).order_by("company_id", "name", "id")

    def count_per_company(self) -> dict[int, int]:
        """{company id: how many of these jobs it has}, in one query."""
        return dict(self.order_by().values("company_id").annotate(n=Count("id")).values_list("company_id", "n"))


class Job(models.Model):
    """A scheduled IPS job, kept in step with getScheduledJobs."""

    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="jobs")
    # Handles and names are kept whole whatever their length: IPS is called
    # with them (jobHandle, originalName). Other fields are cut to their
    # column by sync, which says so.
    handle = models.TextField()
    name = models.TextField()
    original_name = models.TextField(blank=True)
    type = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    submit_user_email = models.CharField(max_length=254, blank=True)
    exec_schedule = models.CharField("schedule", max_length=255, blank=True)
    next_fire_time = models.DateTimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    trigger_state = models.CharField(max_length=64, blank=True)
    is_gone = models.BooleanField("gone from IPS", default=False)
    gone_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["company", "name"]
        constraints = [
            # Sync upserts by (company, handle). On a digest: a btree entry of a
            # whole handle would fail past PostgreSQL's ~2.7 kB limit.
            models.UniqueConstraint("company", MD5("handle"), name="job_unique_handle"),
        ]

    def __str__(self):
        return self.name
