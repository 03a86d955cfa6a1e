"""IPS calls that do not depend on each other, made at the same time: a request waits for
the slowest of them, not for their sum (sign-in with IPS: getUserInfo and
getCompanyMembership as the person, once checkLogin has said yes).

Each call is an IpsClient operation, so it goes through the client like any
other and keeps its own whole-reply deadline (transport). The first runs in
the calling thread, the others in threads of their own that touch no database:
callers do their database work after ``at_once`` returns, in their own thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Outcome:
    """What one call gave: its value, or what it raised."""

    value: Any = None
    error: BaseException | None = None

    def result(self):
        """The value, or the call's exception raised again (read outcomes in the order the
        calls were once made one after the other, and the first failure decides as it did)."""
        if self.error is not None:
            raise self.error
        return self.value


def _run(call: Callable[[], Any], into: list, index: int) -> None:
    try:
        into[index] = Outcome(value=call())
    except Exception as error:  # noqa: BLE001  (handed to the caller, raised there)
        into[index] = Outcome(error=error)


def at_once(*calls: Callable[[], Any]) -> list[Outcome]:
    """Make each call (an IpsClient operation with its arguments bound) at the same time and
    wait for all of them; their outcomes, in the order given. Never raises what a call raised:
    ``Outcome.result()`` does, when the caller reads it."""
    outcomes: list = [None] * len(calls)
    threads = [
        threading.Thread(target=_run, args=(call, outcomes, i), name=f"ips-at-once-{i}", daemon=True)
        for i, call in enumerate(calls[1:], start=1)
    ]
    for thread in threads:
        thread.start()
    if calls:
        _run(calls[0], outcomes, 0)
    for thread in threads:
        # Bounded: each call ends by its own whole-reply deadline (connect + read timeout).
        thread.join()
    return outcomes
