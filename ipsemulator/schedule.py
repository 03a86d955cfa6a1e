"""IPS's execSchedule: parse it and find its next fire time.

The text is Quartz-like cron with seconds first: ``seconds minutes hours
day-of-month month [day-of-week [year]]`` (the reference's "00 00 00 * * "
stops after the month), read in the server's time zone. Each field takes
``*`` (or ``?``), numbers, names (JAN, MON), lists ``a,b``, ranges ``a-b``
and steps ``*/n``, ``a/n``, ``a-b/n``. Days of the week are numbered as in
cron, 0 and 7 for Sunday, 1 for Monday (as jobs/schedules.py reads them),
not as Quartz (1 for Sunday). When both day fields are restricted, a day
matching either fires (cron's rule). Quartz's ``L``, ``W`` and ``#`` are not
understood: :func:`parse` raises ValueError and the job never fires by
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache

_MONTHS = {m: i + 1 for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_YEARS = (1970, 2199)
# A schedule without a year repeats every 28 years (weekdays and leap years together):
# no match within that many years means none ever (31 February).
_CYCLE_YEARS = 28


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    years: frozenset[int] | None
    any_day: bool  # day-of-month was * or ?
    any_weekday: bool  # day-of-week was * or ? (or absent)

    def day_matches(self, d: datetime) -> bool:
        in_month = d.day in self.days
        in_week = (d.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_week
        if self.any_weekday:
            return in_month
        return in_month or in_week


def _number(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    if text in ("*", "?"):
        return frozenset(range(low, high + 1))
    values: set[int] = set()
    for part in text.split(","):
        part, slash, step_text = part.partition("/")
        step = _number(step_text, 1, high, None) if slash else 1
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, _, b = part.partition("-")
            start, end = _number(a, low, high, names), _number(b, low, high, names)
            if end < start:
                raise ValueError(f"backward range {part!r}")
        else:
            start = _number(part, low, high, names)
            end = high if slash else start  # "a/n": from a to the top
        values.update(range(start, end + 1, step))
    return frozenset(values)


@lru_cache(maxsize=256)
def parse(text: str) -> Schedule:
    """The schedule; ValueError when it is not understood."""
    fields = (text or "").split()
    if not 5 <= len(fields) <= 7:
        raise ValueError(f"expected 5 to 7 fields, not {len(fields)}: {text!r}")
    seconds, minutes, hours, dom, month = fields[:5]
    dow = fields[5] if len(fields) > 5 else "?"
    year = fields[6] if len(fields) > 6 else "*"
    return Schedule(
        seconds=_field(seconds, 0, 59), minutes=_field(minutes, 0, 59), hours=_field(hours, 0, 23),
        days=_field(dom, 1, 31), months=_field(month.upper(), 1, 12, _MONTHS),
        weekdays=frozenset(d % 7 for d in _field(dow.upper(), 0, 7, _DAYS)),
        years=None if year in ("*", "?") else _field(year, *_YEARS),
        any_day=dom in ("*", "?"), any_weekday=dow in ("*", "?"))


def _next_in(values: frozenset[int], current: int) -> int | None:
    later = [v for v in values if v >= current]
    return min(later) if later else None


def next_after(schedule: str | Schedule, after: datetime, tz: tzinfo) -> datetime | None:
    """The first time strictly after ``after`` (whole seconds) that the schedule matches, in
    ``tz``; None when there is none (a year long past, 31 February). ValueError when the
    text is not understood."""
    s = parse(schedule) if isinstance(schedule, str) else schedule
    # Local wall time in the server's zone (a fixed offset here, so no DST gaps).
    t = after.astimezone(tz).replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
    last_year = max(s.years) if s.years else t.year + _CYCLE_YEARS
    while t.year <= last_year:
        if (s.years is not None and t.year not in s.years) or t.month not in s.months:
            month = _next_in(s.months, t.month + 1) if t.month < 12 else None
            t = t.replace(month=month, day=1, hour=0, minute=0, second=0) if month and (
                s.years is None or t.year in s.years) else datetime(t.year + 1, 1, 1)
            continue
        if not s.day_matches(t):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        hour = _next_in(s.hours, t.hour)
        if hour is None:
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if hour != t.hour:
            t = t.replace(hour=hour, minute=0, second=0)
        minute = _next_in(s.minutes, t.minute)
        if minute is None:
            t = t.replace(minute=0, second=0) + timedelta(hours=1)
            continue
        if minute != t.minute:
            t = t.replace(minute=minute, second=0)
        second = _next_in(s.seconds, t.second)
        if second is None:
            t = t.replace(second=0) + timedelta(minutes=1)
            continue
        return t.replace(second=second, tzinfo=tz)
    return None


def next_or_none(schedule: str, after: datetime, tz: tzinfo) -> datetime | None:
    """:func:`next_after`, or None for a schedule that is not understood."""
    try:
        return next_after(schedule, after, tz)
    except ValueError:
        return None
