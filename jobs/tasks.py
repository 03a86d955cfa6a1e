"""Background work, through Django's Tasks API (the django-tasks backport).

The tasks only call services, as views do; which backend runs them (the
database by default, RQ on Redis to scale out) is settings.TASKS' business.
On Django 6, ``from django_tasks import task`` becomes ``from django.tasks import task``.
"""

from __future__ import annotations

import datetime as dt
import logging

from django_tasks import task

from . import services

log = logging.getLogger(__name__)


def schedule_follow(execution_id: int, token: str, when: dt.datetime) -> None:
    """Enqueue one follow step of a run, to run at ``when``."""
    follow_run.using(run_after=when).enqueue(execution_id, token)


@task()
def follow_run(execution_id: int, token: str) -> str:
    """Poll IPS once for a run, record what it says, and schedule the next poll."""
    did = services.follow_step(execution_id, token, schedule_follow)
    log.info("follow of execution %s: %s", execution_id, did)
    return did


def schedule_chore(name: str, token: str, when: dt.datetime) -> None:
    CHORES[name].using(run_after=when).enqueue(token)


@task()
def refresh_memberships(token: str) -> str:
    """Read from IPS again the companies and user types of everyone who signs in with IPS."""
    did = services.refresh_memberships_chore(token, schedule_chore)
    log.info("membership refresh: %s", did)
    return did


CHORES = {services.REFRESH_MEMBERSHIPS: refresh_memberships}

