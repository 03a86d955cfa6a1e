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
then shows the raw string, never a guess. The words are in the active
language: each phrase is one msgid with placeholders (Italian orders and
inflects them its own way: "l'ultima domenica", "i giorni 1 e 15"), so a
weekday with an ordinal is a phrase of its own, not words glued together.
The raw string is always there on hover. No library: cron-descriptor and its kind word times in 12 hours,
know no IPS time zone text and fall back to prose we could not test.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _, gettext_lazy, ngettext, pgettext, pgettext_lazy

# Parsing reads English names (IPS's JAN, MON); the words shown are the translated ones.
_MONTH_KEYS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_MONTH_NAMES = {m: i + 1 for i, m in enumerate(_MONTH_KEYS)}
_DAY_KEYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_DAY_NAMES = {d: i for i, d in enumerate(_DAY_KEYS)}

# In a schedule: Italian writes months and weekdays in lower case ("ogni lunedì"), hence a context of their own.
MONTHS = [pgettext_lazy("schedule", "January"), pgettext_lazy("schedule", "February"),
          pgettext_lazy("schedule", "March"), pgettext_lazy("schedule", "April"), pgettext_lazy("schedule", "May"),
          pgettext_lazy("schedule", "June"), pgettext_lazy("schedule", "July"), pgettext_lazy("schedule", "August"),
          pgettext_lazy("schedule", "September"), pgettext_lazy("schedule", "October"),
          pgettext_lazy("schedule", "November"), pgettext_lazy("schedule", "December")]
DAYS = [pgettext_lazy("schedule", "Sunday"), pgettext_lazy("schedule", "Monday"), pgettext_lazy("schedule", "Tuesday"),
        pgettext_lazy("schedule", "Wednesday"), pgettext_lazy("schedule", "Thursday"),
        pgettext_lazy("schedule", "Friday"), pgettext_lazy("schedule", "Saturday")]

# A weekday with an ordinal, whole: the ordinal agrees with the day ("l'ultima domenica", "l'ultimo sabato").
# Indexed [ordinal][day], day 0 = Sunday; ordinal 0 = last.
_NTH_WEEKDAY = [
    [gettext_lazy("on the last Sunday of %(months)s"), gettext_lazy("on the last Monday of %(months)s"),
     gettext_lazy("on the last Tuesday of %(months)s"), gettext_lazy("on the last Wednesday of %(months)s"),
     gettext_lazy("on the last Thursday of %(months)s"), gettext_lazy("on the last Friday of %(months)s"),
     gettext_lazy("on the last Saturday of %(months)s")],
    [gettext_lazy("on the first Sunday of %(months)s"), gettext_lazy("on the first Monday of %(months)s"),
     gettext_lazy("on the first Tuesday of %(months)s"), gettext_lazy("on the first Wednesday of %(months)s"),
     gettext_lazy("on the first Thursday of %(months)s"), gettext_lazy("on the first Friday of %(months)s"),
     gettext_lazy("on the first Saturday of %(months)s")],
    [gettext_lazy("on the second Sunday of %(months)s"), gettext_lazy("on the second Monday of %(months)s"),
     gettext_lazy("on the second Tuesday of %(months)s"), gettext_lazy("on the second Wednesday of %(months)s"),
     gettext_lazy("on the second Thursday of %(months)s"), gettext_lazy("on the second Friday of %(months)s"),
     gettext_lazy("on the second Saturday of %(months)s")],
    [gettext_lazy("on the third Sunday of %(months)s"), gettext_lazy("on the third Monday of %(months)s"),
     gettext_lazy("on the third Tuesday of %(months)s"), gettext_lazy("on the third Wednesday of %(months)s"),
     gettext_lazy("on the third Thursday of %(months)s"), gettext_lazy("on the third Friday of %(months)s"),
     gettext_lazy("on the third Saturday of %(months)s")],
    [gettext_lazy("on the fourth Sunday of %(months)s"), gettext_lazy("on the fourth Monday of %(months)s"),
     gettext_lazy("on the fourth Tuesday of %(months)s"), gettext_lazy("on the fourth Wednesday of %(months)s"),
     gettext_lazy("on the fourth Thursday of %(months)s"), gettext_lazy("on the fourth Friday of %(months)s"),
     gettext_lazy("on the fourth Saturday of %(months)s")],
    [gettext_lazy("on the fifth Sunday of %(months)s"), gettext_lazy("on the fifth Monday of %(months)s"),
     gettext_lazy("on the fifth Tuesday of %(months)s"), gettext_lazy("on the fifth Wednesday of %(months)s"),
     gettext_lazy("on the fifth Thursday of %(months)s"), gettext_lazy("on the fifth Friday of %(months)s"),
     gettext_lazy("on the fifth Saturday of %(months)s")],
]


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
            part, _slash, step_text = part.partition("/")
            step = _number(step_text, 1, high)
            if part in ("*", ""):
                part = str(low)
        if "-" in part:
            start_text, _dash, end_text = part.partition("-")
            start, end = _number(start_text, low, high, names), _number(end_text, low, high, names)
        else:
            start = _number(part, low, high, names)
            end = high if step > 1 or "/" in text else start
        if end < start:
            raise _Unknown(part)
        values.update(range(start, end + 1, step))
    return sorted(values)


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return str(words[0])
    return _("%(list)s and %(last)s") % {"list": ", ".join(str(w) for w in words[:-1]), "last": words[-1]}


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


def _days_of_week(text: str, months: str | None) -> str:
    """"every Monday", "Monday to Friday", "on the last Friday of every month"; ``months`` None: every month."""
    upper = text.upper()
    of_months = months or _("every month")
    if re.fullmatch(r"[0-7A-Z]+#[1-5]", upper):
        day_text, _hash, nth = upper.partition("#")
        day = _number(day_text, 0, 7, _DAY_NAMES) % 7
        return _NTH_WEEKDAY[int(nth)][day] % {"months": of_months}
    if re.fullmatch(r"[0-7A-Z]+L", upper):
        day = _number(upper[:-1], 0, 7, _DAY_NAMES) % 7
        return _NTH_WEEKDAY[0][day] % {"months": of_months}
    # Monday first, as people read a week.
    days = sorted({v % 7 for v in _values(upper, 0, 7, _DAY_NAMES)}, key=lambda d: (d + 6) % 7)
    monday_based = [(d + 6) % 7 for d in days]
    if len(days) == 7:
        words = _("every day")
    elif len(days) > 2 and monday_based == list(range(monday_based[0], monday_based[-1] + 1)):
        words = _("%(first)s to %(last)s") % {"first": DAYS[days[0]], "last": DAYS[days[-1]]}
    else:
        words = _("every %(weekdays)s") % {"weekdays": _join([DAYS[d] for d in days])}
    return _("%(days)s in %(months)s") % {"days": words, "months": months} if months else words


def _ordinal(n: int) -> str:
    """"1st", "22nd": the day of a month (Italian says the number alone)."""
    if 10 <= n % 100 <= 20 or n % 10 not in (1, 2, 3):
        return pgettext("day of the month", "%(day)sth") % {"day": n}
    return {
        1: pgettext("day of the month", "%(day)sst"),
        2: pgettext("day of the month", "%(day)snd"),
        3: pgettext("day of the month", "%(day)srd"),
    }[n % 10] % {"day": n}


def _days_of_month(text: str, months: str | None) -> str:
    """"on the 1st of every month", "on the last day of January"."""
    upper = text.upper()
    of_months = months or _("every month")
    if upper == "L":
        return _("on the last day of %(months)s") % {"months": of_months}
    if upper == "LW":
        return _("on the last weekday of %(months)s") % {"months": of_months}
    if re.fullmatch(r"\d{1,2}W", upper):
        return _("on the weekday nearest the %(day)s of %(months)s") % {
            "day": _ordinal(_number(upper[:-1], 1, 31)), "months": of_months}
    days = _values(upper, 1, 31)
    return ngettext("on the %(days)s of %(months)s", "on the %(days)s of %(months)s", len(days)) % {
        "days": _join([_ordinal(d) for d in days]), "months": of_months}


def _time_of_day(seconds, minutes, hours) -> tuple[str, bool, bool]:
    """("at 02:30", True, False), ("every hour at :15", False, True), ("every 15 minutes", False, True),
    ("every hour from 08:00 to 18:00", True, True): the words, whether they name a clock time, and whether
    they repeat within a day (then set apart from the days by a comma)."""
    if seconds is None or len(seconds) != 1 or minutes is None:
        # Every second or every minute, or several seconds a minute: left raw.
        raise _Unknown("seconds")
    sec = f":{seconds[0]:02d}" if seconds[0] else ""
    if hours is None:
        step = _step_of(minutes, 0, 59)
        if step:
            return ngettext("every minute", "every %(n)s minutes", step) % {"n": step}, False, True
        return _("every hour at %(minutes)s") % {"minutes": _join([f":{m:02d}{sec}" for m in minutes])}, False, True
    if len(minutes) == 1 and len(hours) <= 4:
        times = [f"{h:02d}:{minutes[0]:02d}{sec}" for h in hours]
        return ngettext("at %(times)s", "at %(times)s", len(times)) % {"times": _join(times)}, True, False
    if len(minutes) == 1:
        runs = _runs(hours)
        if len(runs) == 1:
            first, last = runs[0]
            return _("every hour from %(first)s to %(last)s") % {
                "first": f"{first:02d}:{minutes[0]:02d}{sec}", "last": f"{last:02d}:{minutes[0]:02d}{sec}"}, True, True
        step = _step_of(hours, hours[0], 23)
        if step:
            return ngettext("every hour from %(first)s", "every %(n)s hours from %(first)s", step) % {
                "n": step, "first": f"{hours[0]:02d}:{minutes[0]:02d}{sec}"}, True, True
    raise _Unknown("times")


def describe(schedule: str, time_zone: str = "") -> str | None:
    """The schedule in words, in the active language, with its IPS time zone text as IPS gives it;
    None if not fully understood."""
    fields = (schedule or "").split()
    if not 5 <= len(fields) <= 7:
        return None
    seconds, minutes, hours, dom, month = fields[:5]
    dow = fields[5] if len(fields) > 5 else "?"
    year = fields[6] if len(fields) > 6 else "*"
    try:
        when, clock, repeats = _time_of_day(_values(seconds, 0, 59), _values(minutes, 0, 59), _values(hours, 0, 23))
        month_values = _values(month.upper(), 1, 12, _MONTH_NAMES)
        months = None if month_values is None else _join([MONTHS[m - 1] for m in month_values])
        if dom not in ("*", "?") and dow not in ("*", "?"):
            raise _Unknown("both day fields")
        if dom not in ("*", "?"):
            days = _days_of_month(dom, months)
        elif dow not in ("*", "?"):
            days = _days_of_week(dow, months)
        elif months is not None:
            days = _("every day in %(months)s") % {"months": months}
        else:
            days = _("every day") if clock else ""
        years = None if year in ("*", "?") else _values(year, 1970, 2199)
    except _Unknown:
        return None
    # A clock time means something only in a zone; "every 15 minutes" does not.
    if clock and time_zone:
        when = _("%(time)s %(zone)s") % {"time": when, "zone": time_zone}
    if not days:
        words = when
    elif not repeats:
        words = _("%(days)s %(time)s") % {"days": days, "time": when}
    else:
        words = _("%(days)s, %(time)s") % {"days": days, "time": when}
    if years:
        words = ngettext("%(schedule)s in %(years)s", "%(schedule)s in %(years)s", len(years)) % {
            "schedule": words, "years": _join([str(y) for y in years])}
    return words
