"""Background work and after-commit events: the one seam between the use cases and the task backend.

Services schedule background work here (``schedule(CHORE, …)``) and never
know which backend runs it: jobs/tasks.py registers how each kind is
enqueued when the app is ready. What services announce (``run_ended``) is
sent after the transaction that recorded it commits, and never for one that
rolls back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

#: Kinds of background work: one run of a chore (name, token). Runs in IPS are watched by
#: `manage.py watch_ips` (services.watch), which needs no chain of tasks.
CHORE = "chore"
#: One notification's delivery (services.notify.deliver), by its pk.
NOTIFICATION = "notification"

#: kind -> enqueue(*args, when): filled by jobs/tasks.py (JobsConfig.ready imports it).
SCHEDULERS: dict[str, Callable[..., None]] = {}

#: Sent once per run, after the commit that recorded its IPS result (by the company's
#: watcher), with ``execution_id`` and ``result``.
run_ended = Signal()
#: Sent once per press, after the commit that recorded its outcome, with ``execution_id``, ``outcome``
#: and ``operation`` (a refusal here included: receivers pick what they care about, without a query).
press_ended = Signal()
#: Sent once per missed fire of a scheduled job (its fire time plus the job's grace passed with no
#: run in IPS), after the commit that recorded it, with ``missed_id`` (a MissedRun's pk).
run_missed = Signal()


def register(kind: str, enqueue: Callable[..., None]) -> None:
    SCHEDULERS[kind] = enqueue


def schedule(kind: str, *args, when: dt.datetime) -> None:
    """Enqueue background work to run at ``when``, once the current transaction commits.

    A kind nobody registered fails here, loudly, not later in silence."""
    try:
        enqueue = SCHEDULERS[kind]
    except KeyError:
        raise ImproperlyConfigured(f"no task backend registered for {kind!r} work (jobs/tasks.py)") from None

    def send():
        try:
            enqueue(*args, when=when)
        except Exception:
            # The chore's row stands; `manage.py start_chores` starts its chain again.
            log.exception("could not schedule %s work %r", kind, args)

    transaction.on_commit(send)


def _announce(signal: Signal, name: str, **kwargs) -> None:
    """``signal``, after the current transaction commits; a receiver's failure is logged, not raised."""
    if not signal.has_listeners():
        return

    def send():
        for receiver, error in signal.send_robust(sender=None, **kwargs):
            if isinstance(error, Exception):
                log.error("%s receiver %r failed for %s: %r", name, receiver, kwargs, error)

    transaction.on_commit(send)


def announce_run_ended(execution_id: int, result: str) -> None:
    _announce(run_ended, "run_ended", execution_id=execution_id, result=result)


def announce_press_ended(execution_id: int, outcome: str, operation: str) -> None:
    _announce(press_ended, "press_ended", execution_id=execution_id, outcome=outcome, operation=operation)


def announce_run_missed(missed_id: int) -> None:
    _announce(run_missed, "run_missed", missed_id=missed_id)
