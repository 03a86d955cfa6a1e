"""Background work, through Django's Tasks API (the django-tasks backport).

The tasks only call services, as views do; which backend runs them (the
database by default, RQ on Redis to scale out) is settings.TASKS' business.
Services schedule work through jobs/events.py; this module registers how
each kind is enqueued (JobsConfig.ready imports it).
On Django 6, ``from django_tasks import task`` becomes ``from django.tasks import task``.
"""

from __future__ import annotations

import datetime as dt
import logging

from django_tasks import task

from . import events, exporting
from .services import chores, exports

log = logging.getLogger(__name__)


@task()
def refresh_memberships(token: str) -> str:
    """Read from IPS again the companies and user types of everyone who signs in with IPS."""
    did = chores.refresh_memberships_chore(token)
    log.info("membership refresh: %s", did)
    return did


@task()
def clean_history_exports(token: str) -> str:
    """Delete export files past their keep; fail exports whose worker stopped."""
    did = chores.clean_exports_chore(token)
    log.info("export cleanup: %s", did)
    return did


@task()
def export_history(export_id: int) -> str:
    """Write one history export's CSV file, with its progress (exporting.run_export)."""
    did = exporting.run_export(export_id)
    log.info("history export %s: %s", export_id, did)
    return did


def enqueue_export(export_id: int, *, when: dt.datetime) -> None:
    export_history.enqueue(export_id)  # at once: the user is watching its progress


CHORES = {chores.REFRESH_MEMBERSHIPS: refresh_memberships, chores.CLEAN_EXPORTS: clean_history_exports}
assert set(CHORES) == set(chores.NAMES), "every chore has its task"


def enqueue_chore(name: str, token: str, *, when: dt.datetime) -> None:
    CHORES[name].using(run_after=when).enqueue(token)


events.register(events.CHORE, enqueue_chore)
events.register(exports.EXPORT, enqueue_export)
