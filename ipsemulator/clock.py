"""Time in the emulator: a swappable monotonic clock and the wall time on it.

A run's whole life (states, progress, its log) is computed from the time
elapsed on one clock, so a test drives it by advancing a :class:`ManualClock`
instead of sleeping. Wall-clock timestamps in replies are "start wall time +
elapsed on that clock", so advancing the clock advances them too.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, tzinfo
from typing import Callable


class ManualClock:
    """A monotonic-style clock that moves only when told: ``clock()`` returns
    seconds, ``clock.advance(seconds)`` moves it forward."""

    def __init__(self, start: float = 0.0):
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError("a clock does not go back: seconds must not be negative")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"


class Timeline:
    """Maps a monotonic clock to wall time (an aware datetime).

    Swapping the clock keeps the wall time continuous: the new clock starts
    where the old one left the wall time."""

    def __init__(self, tz: tzinfo, clock: Callable[[], float] = time.monotonic,
                 wall: datetime | None = None):
        self._clock = clock
        self._wall_anchor = wall or datetime.now(tz)
        self._mono_anchor = clock()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        wall = self.now()
        self._clock = clock
        self._wall_anchor = wall
        self._mono_anchor = clock()

    def shift(self, seconds: float) -> None:
        """Move the wall time (not the clock): as when a server's clock is set."""
        self._wall_anchor += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self._wall_anchor + timedelta(seconds=self._clock() - self._mono_anchor)
