"""IPS schedules in words: "00 30 02 * * " in PST → "every day at 02:30 PST".

An IPS execSchedule is a cron string with seconds first: seconds, minutes,
hours, day of month, month, then day of week and year, both optional (the
reference's own example, "00 00 00 * * ", stops after the month). Fields
take ``*``, ``?`` (no value), numbers, names (JAN, MON), lists (``1,15``),
ranges (``MON-FRI``), steps (``0/15``, ``*/5``), and in the day fields
Quartz's ``L`` (last), ``W`` (nearest weekday) and ``#`` (nth weekday).
Days of the week are numbered as in cron, 0 and 7 for Sunday, 1 for
Monday: the emulator's next fire times agree (Quartz counts from 1 for
Sunday; names are the same in both, and the next fire time is shown beside).

describe() returns None for anything it does not fully understand: the page
then shows the raw string, never a guess. The raw string is always there on
hover. No library: cron-descriptor and its kind word times in 12 hours,
know no IPS time zone text and fall back to prose we could not test.
"""

from __future__ import annotations

import re

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
_MONTH_NAMES = {m[:3].upper(): i + 1 for i, m in enumerate(MONTHS)}
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_DAY_NAMES = {d[:3].upper(): i for i, d in enumerate(DAYS)}
_ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


class _Unknown(ValueError):
    """A field this module does not put into words."""


def _number(text: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise _Unknown(text)
    value = int(text)
    if not low <= value <= high:
        raise _Unknown(text)
    return value


def _values(text: str, low: int, high: int, names=None) -> list[int] | None:
    """The values of a field, sorted; None for "every value" (``*``, ``?``)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, _, step_text = part.partition("/")
            step = _number(step_text, 1, high)
            if part in ("*", ""):
                part = str(low)
        if "-" in part:
            start_text, _, end_text = part.partition("-")
            start, end = _number(start_text, low, high, names), _number(end_text, low, high, names)
        else:
            start = _number(part, low, high, names)
            end = high if step > 1 or "/" in text else start
        if end < start:
            raise _Unknown(part)
        values.update(range(start, end + 1, step))
    return sorted(values)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive values as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _step_of(values: list[int], low: int, high: int) -> int | None:
    """The step of an evenly spaced set starting at ``low`` and reaching the top, if it is one."""
    if len(values) < 2 or values[0] != low:
        return None
    step = values[1] - values[0]
    if all(b - a == step for a, b in zip(values, values[1:])) and values[-1] + step > high:
        return step
    return None


def _days_of_week(text: str, months: str) -> str:
    """"every Monday", "Monday to Friday", "on the last Friday of every month"."""
    upper = text.upper()
    in_months = f" in {months}" if months != "every month" else ""
    if re.fullmatch(r"[0-7A-Z]+#[1-5]", upper):
        day_text, _, nth = upper.partition("#")
        day = _number(day_text, 0, 7, _DAY_NAMES) % 7
        return f"on the {_ORDINAL[int(nth)]} {DAYS[day]} of {months}"
    if re.fullmatch(r"[0-7A-Z]+L", upper):
        day = _number(upper[:-1], 0, 7, _DAY_NAMES) % 7
        return f"on the last {DAYS[day]} of {months}"
    # Monday first, as people read a week.
    days = sorted({v % 7 for v in _values(upper, 0, 7, _DAY_NAMES)}, key=lambda d: (d + 6) % 7)
    if len(days) == 7:
        return "every day" + in_months
    monday_based = [(d + 6) % 7 for d in days]
    if len(days) > 2 and monday_based == list(range(monday_based[0], monday_based[-1] + 1)):
        return f"{DAYS[days[0]]} to {DAYS[days[-1]]}" + in_months
    return "every " + _join([DAYS[d] for d in days]) + in_months


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _days_of_month(text: str, months: str) -> str:
    """"on the 1st of every month", "on the last day of January"."""
    upper = text.upper()
    if upper == "L":
        return f"on the last day of {months}"
    if upper == "LW":
        return f"on the last weekday of {months}"
    if re.fullmatch(r"\d{1,2}W", upper):
        return f"on the weekday nearest the {_ordinal(_number(upper[:-1], 1, 31))} of {months}"
    return "on the " + _join([_ordinal(d) for d in _values(upper, 1, 31)]) + f" of {months}"


def _time_of_day(seconds, minutes, hours) -> tuple[str, bool]:
    """("at 02:30", True), ("every hour at :15", False), ("every 15 minutes", False),
    ("every hour from 08:00 to 18:00", True): the words, and whether they name a clock time."""
    if seconds is None or len(seconds) != 1 or minutes is None:
        # Every second or every minute, or several seconds a minute: left raw.
        raise _Unknown("seconds")
    sec = f":{seconds[0]:02d}" if seconds[0] else ""
    if hours is None:
        step = _step_of(minutes, 0, 59)
        if step:
            return f"every {step} minutes", False
        return "every hour at " + _join([f":{m:02d}{sec}" for m in minutes]), False
    if len(minutes) == 1 and len(hours) <= 4:
        return "at " + _join([f"{h:02d}:{minutes[0]:02d}{sec}" for h in hours]), True
    if len(minutes) == 1:
        runs = _runs(hours)
        if len(runs) == 1:
            first, last = runs[0]
            return f"every hour from {first:02d}:{minutes[0]:02d}{sec} to {last:02d}:{minutes[0]:02d}{sec}", True
        step = _step_of(hours, hours[0], 23)
        if step:
            return f"every {step} hours from {hours[0]:02d}:{minutes[0]:02d}{sec}", True
    raise _Unknown("times")


def describe(schedule: str, time_zone: str = "") -> str | None:
    """The schedule in words, with its IPS time zone text; None if not fully understood."""
    fields = (schedule or "").split()
    if not 5 <= len(fields) <= 7:
        return None
    seconds, minutes, hours, dom, month = fields[:5]
    dow = fields[5] if len(fields) > 5 else "?"
    year = fields[6] if len(fields) > 6 else "*"
    try:
        when, clock = _time_of_day(_values(seconds, 0, 59), _values(minutes, 0, 59), _values(hours, 0, 23))
        month_values = _values(month.upper(), 1, 12, _MONTH_NAMES)
        months = "every month" if month_values is None else _join([MONTHS[m - 1] for m in month_values])
        if dom not in ("*", "?") and dow not in ("*", "?"):
            raise _Unknown("both day fields")
        if dom not in ("*", "?"):
            days = _days_of_month(dom, months)
        elif dow not in ("*", "?"):
            days = _days_of_week(dow, months)
        elif month_values is not None:
            days = f"every day in {months}"
        else:
            days = "every day" if clock else ""
        years = "" if year in ("*", "?") else " in " + _join([str(y) for y in _values(year, 1970, 2199)])
    except _Unknown:
        return None
    if days and when.startswith("every"):
        days += ","
    words = " ".join(w for w in (days, when) if w)
    # A clock time means something only in a zone; "every 15 minutes" does not.
    if clock and time_zone:
        words += f" {time_zone}"
    return words + years
