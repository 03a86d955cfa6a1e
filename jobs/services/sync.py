"""The job catalogue, kept in step with getScheduledJobs: a job gone from IPS is marked gone, never deleted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import ips
from ..models import Company, Job
from .base import english, fit
from .connections import Deadline, OutOfTime

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    company: Company
    created: int = 0
    updated: int = 0
    gone: int = 0
    error: str | Promise = ""
    #: "field of job …" (lazy) for each value cut to fit its column.
    cut: list = field(default_factory=list)

    def __str__(self):
        # Said in the language active when shown; the log line asks for English (_english).
        if self.error:
            return f"{self.company}: {self.error}"
        text = gettext("{company}: {created} new, {updated} updated, {gone} gone from IPS").format(
            company=self.company, created=self.created, updated=self.updated, gone=self.gone
        )
        if self.cut:
            shown = "; ".join(str(c) for c in self.cut[:3])
            if len(self.cut) > 3:
                shown = gettext("{shown}; and {count} more").format(shown=shown, count=len(self.cut) - 3)
            cut = ngettext(
                "{count} value too long for the dashboard, shortened (the jobs still run): {shown}",
                "{count} values too long for the dashboard, shortened (the jobs still run): {shown}",
                len(self.cut),
            ).format(count=len(self.cut), shown=shown)
            text = f"{text}. {cut}"
        return text


def _fit(values: dict, handle: str, cut: list) -> dict:
    """Cut text to its column's size, so one odd job never fails a company's sync."""
    for name, value in values.items():
        fitted = fit(Job, name, value)
        if fitted is not value:
            values[name] = fitted
            cut.append(format_lazy(
                _("{field} of {job} ({count} characters)"),
                field=name, job=f"{handle[:60]}{'…' if len(handle) > 60 else ''}", count=len(value),
            ))
    return values


_SYNC_FIELDS = [
    "name",
    "original_name",
    "type",
    "description",
    "submit_user_email",
    "exec_schedule",
    "next_fire_time",
    "time_zone",
    "trigger_state",
]


#: Trigger states in which IPS fires no run of the job: none is expected of it, none is missed.
NOT_FIRING = frozenset({"Paused", "Complete", "None"})


def fires(trigger_state: str) -> bool:
    return trigger_state not in NOT_FIRING


def _expect(job: Job) -> None:
    """The fire time the watcher checks next (services.watch.check_missed). Only once the one before
    is accounted for (the watcher clears it): IPS's next fire time replaced before its grace ended
    must not be lost. A job IPS does not fire expects none."""
    if not fires(job.trigger_state):
        job.expected_fire_at = None
    elif job.expected_fire_at is None:
        job.expected_fire_at = job.next_fire_time


def sync_company(company: Company) -> SyncResult:
    """Upsert the company's jobs from getScheduledJobs; mark missing ones gone."""
    result = SyncResult(company)
    try:
        scheduled = ips.client_for(company.connection).get_scheduled_jobs(company.handle)
    except ips.IpsError as error:
        result.error = format_lazy(_("sync failed: {error}"), error=str(error))
        log.warning("sync of company %s failed: %s", company.handle, error)
        # Kept on the company until a sync succeeds: the jobs page and the admin show it.
        Company.objects.filter(pk=company.pk).update(
            sync_error=str(error), sync_failed_at=timezone.now()
        )
        return result
    now = timezone.now()
    with transaction.atomic():
        # The company row serializes concurrent syncs of it (new jobs have no row to lock yet).
        Company.objects.select_for_update().filter(pk=company.pk).exists()
        existing = {j.handle: j for j in Job.objects.select_for_update().filter(company=company)}
        seen = set()
        for s in scheduled:
            seen.add(s.job_handle)
            values = {
                "name": s.name or s.job_handle,
                "original_name": s.original_name or "",
                "type": s.type or "",
                "description": s.description or "",
                "submit_user_email": s.submit_user_email or "",
                "exec_schedule": s.exec_schedule or "",
                "next_fire_time": s.next_fire_time,
                "time_zone": s.time_zone or "",
                "trigger_state": s.trigger_state or "",
            }
            _fit(values, s.job_handle, result.cut)
            job = existing.get(s.job_handle)
            if job is None:
                existing[s.job_handle] = Job.objects.create(
                    company=company, handle=s.job_handle, last_synced_at=now,
                    expected_fire_at=values["next_fire_time"] if fires(values["trigger_state"]) else None, **values
                )
                result.created += 1
                continue
            if job.exec_schedule != values["exec_schedule"] or job.time_zone != values["time_zone"]:
                job.expected_fire_at = None  # rescheduled in IPS: the old fire time is nobody's to miss
            for k, v in values.items():
                setattr(job, k, v)
            job.is_gone, job.gone_at, job.last_synced_at = False, None, now
            _expect(job)
            job.save(update_fields=[*_SYNC_FIELDS, "is_gone", "gone_at", "last_synced_at", "expected_fire_at"])
            result.updated += 1
        for handle, job in existing.items():
            if handle not in seen and not job.is_gone:
                job.is_gone, job.gone_at, job.expected_fire_at = True, now, None  # a job gone misses nothing
                job.save(update_fields=["is_gone", "gone_at", "expected_fire_at"])
                result.gone += 1
        Company.objects.filter(pk=company.pk).update(last_synced_at=now, sync_error="", sync_failed_at=None)
    log.info("sync: %s", english(lambda: result))
    return result


def sync_companies(companies, deadline: Deadline | None = None) -> list[SyncResult]:
    """Sync each company; with a ``deadline`` (a web request's), the first always, each next
    one only if its call can end in time: the others say they were not asked."""
    results = []
    for company in companies:
        try:
            if deadline is not None and results:  # the first is always asked
                deadline.check(1, company.connection)
        except OutOfTime:
            log.warning("sync of company %s not asked: %.1f s left of the request's %g s",
                        company.handle, deadline.remaining(), deadline.seconds)
            results.append(SyncResult(company, error=format_lazy(
                _("not synced: IPS answered too slowly for every company to be synced within one request "
                  "({seconds} s); sync it again."),
                seconds=f"{deadline.seconds:g}",
            )))
            continue
        results.append(sync_company(company))
    return results

