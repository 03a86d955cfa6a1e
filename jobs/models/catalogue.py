"""The scheduled IPS jobs, as getScheduledJobs lists them."""

from __future__ import annotations

import datetime as dt

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Count, F, OuterRef, Q, Subquery, Window
from django.db.models.functions import MD5, RowNumber
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .connections import Company
from .executions import Execution


class JobQuerySet(models.QuerySet):
    def with_last_run(self) -> list[Job]:
        """The jobs, each with its latest run sent to IPS and that run's state.

        Three queries, whatever the count. Sets on each job: ``last_execution``
        (or None), ``run_in_flight`` (a live run is being started), ``follow``
        (a run accepted lately, to follow in IPS after a reload) and
        ``open_missed`` (its MissedRun not cleared yet, or None).
        """
        latest = Execution.objects.filter(job=OuterRef("pk")).sent().order_by("-requested_at", "-id").values("id")[:1]
        jobs = list(self.annotate(last_execution_id=Subquery(latest)))
        last = Execution.objects.in_bulk([j.last_execution_id for j in jobs if j.last_execution_id])
        # Served by missedrun_one_open (at most one per job).
        missed = {m.job_id: m for m in MissedRun.objects.filter(job__in=[j.pk for j in jobs], cleared_at__isnull=True)}
        now = timezone.now()
        for job in jobs:
            job.open_missed = missed.get(job.pk)
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

    company = models.ForeignKey(Company, verbose_name=_("company"), on_delete=models.PROTECT, related_name="jobs")
    # Handles and names are kept whole whatever their length: IPS is called
    # with them (jobHandle, originalName). Other fields are cut to their
    # column by sync, which says so.
    handle = models.TextField(_("handle"))
    name = models.TextField(_("name"))
    original_name = models.TextField(_("original name"), blank=True)
    type = models.CharField(_("type"), max_length=100, blank=True)
    description = models.TextField(_("description"), blank=True)
    submit_user_email = models.CharField(_("submit user email"), max_length=254, blank=True)
    exec_schedule = models.CharField(_("schedule"), max_length=255, blank=True)
    next_fire_time = models.DateTimeField(_("next fire time"), null=True, blank=True)
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    trigger_state = models.CharField(_("trigger state"), max_length=64, blank=True)
    is_gone = models.BooleanField(_("gone from IPS"), default=False)
    gone_at = models.DateTimeField(_("gone at"), null=True, blank=True)
    last_synced_at = models.DateTimeField(_("last synced at"), null=True, blank=True)
    missed_grace = models.DurationField(
        _("grace before a run counts as missed"), default=dt.timedelta(minutes=15),
        help_text=_("How long after a fire time IPS may take to start the run (hh:mm:ss)."),
        validators=[MinValueValidator(dt.timedelta(0))],
    )
    # The earliest fire time not yet accounted for (by a run, a MissedRun, a pause):
    # sync moves next_fire_time on as IPS does, but this only once the watcher has
    # accounted for it, so a fire time replaced before its grace ends is not lost.
    expected_fire_at = models.DateTimeField(_("expected fire at"), null=True, blank=True, editable=False)

    objects = JobQuerySet.as_manager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["company", "name"]
        constraints = [
            # Sync upserts by (company, handle). On a digest: a btree entry of a
            # whole handle would fail past PostgreSQL's ~2.7 kB limit.
            models.UniqueConstraint("company", MD5("handle"), name="job_unique_handle"),
        ]
        indexes = [
            # The watcher's look for the company's jobs whose expected fire time is due (check_missed).
            models.Index(fields=["company", "expected_fire_at"], condition=Q(expected_fire_at__isnull=False),
                         name="job_expected_fire"),
        ]

    def __str__(self):
        return self.name


class MissedRunQuerySet(models.QuerySet):
    def open_per_company(self, company_ids) -> dict[int, int]:
        """{company id: its missed runs not cleared yet}, in one query (missedrun_open_by_company);
        none asked for, no query."""
        if not company_ids:
            return {}
        return dict(self.filter(company_id__in=company_ids, cleared_at__isnull=True).order_by()
                    .values("company_id").annotate(n=Count("id")).values_list("company_id", "n"))


class MissedRun(models.Model):
    """A fire time of a scheduled job that passed, plus the job's grace, with no run of it in IPS.

    Recorded by the company's watcher (services.watch) on IPS's clock; cleared
    when a run of the job arrives. Further fire times missed while one is open
    are counted on it (``fires_missed``), not recorded apart: one outage, one
    event, whatever the schedule's pace."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="missed_runs")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="missed_runs")
    fire_time = models.DateTimeField(help_text="The first fire time that passed with no run.")
    last_fire_time = models.DateTimeField(help_text="The latest fire time this one stands for.")
    fires_missed = models.PositiveIntegerField(default=1)
    detected_at = models.DateTimeField(help_text="On IPS's clock.")
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by_execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="cleared_missed_runs"
    )

    objects = MissedRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("missed run")
        verbose_name_plural = _("missed runs")
        ordering = ["-fire_time"]
        constraints = [
            # Once per fire time, whichever watcher sees it first (two watchers, retries).
            # Also serves a job's page: its missed runs, latest first.
            models.UniqueConstraint(fields=["job", "fire_time"], name="missedrun_once_per_fire"),
            # One open per job: later misses are counted on it. Serves the jobs page's
            # "open missed run of these jobs" and the watcher's clearing.
            models.UniqueConstraint(fields=["job"], condition=Q(cleared_at__isnull=True), name="missedrun_one_open"),
        ]
        indexes = [
            # The company card's count of open missed runs.
            models.Index(fields=["company"], condition=Q(cleared_at__isnull=True), name="missedrun_open_by_company"),
        ]

    def __str__(self):
        return f"{self.job} missed {self.fire_time:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None
