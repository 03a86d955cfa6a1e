import datetime as dt

from django import template
from django.utils import formats, timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe

from jobs.schedules import describe

register = template.Library()


@register.filter
def duration(value: dt.timedelta | None) -> str:
    """A run's length in words: "850 ms", "42 s", "3 min 5 s", "2 h 10 min"."""
    if value is None:
        return ""
    ms = int(value.total_seconds() * 1000)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@register.filter
def schedule_words(job) -> str:
    """The job's IPS schedule in words ("every day at 00:00 PST"); "" when not understood (show it raw)."""
    return describe(job.exec_schedule, job.time_zone) or ""


@register.filter
def confirm_for(action, job) -> str:
    """A job action's confirm question about ``job``: its words as translated, the job's values escaped."""
    values = {"job": job.name, "handle": job.company.handle, "company": job.company.name}
    return mark_safe(str(action.confirm) % {k: conditional_escape(v) for k, v in values.items()})


@register.filter
def percent(value: float | None) -> str:
    """A rate in whole percent ("97 %"), a tenth below 10 % or above 90 % where it matters ("99.5 %")."""
    if value is None:
        return ""
    places = 0 if value in (0, 100) or 10 <= value <= 90 else 1
    # In the page's language: 99,5 % in Italian.
    return f"{formats.number_format(round(value, places), places)} %"


@register.simple_tag
def when(value, same_day_as=None):
    """An instant as a <time> in the active zone, with its date and zone ("2026-11-29 04:00:00 PST");
    the time alone when it falls on the day of ``same_day_as`` (the row's request, shown beside it).

    One call where the ``date`` filter would take five: history rows have three of these."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    exact = f"{local:%Y-%m-%d %H:%M:%S.%f} {local.tzname()}"
    if same_day_as is not None and timezone.localtime(same_day_as).date() == local.date():
        text = f"{local:%H:%M:%S}"
    else:
        text = f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), exact, text)
