import datetime as dt
import functools

from django import template
from django.urls import get_script_prefix, reverse
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.dateformat import _datetime_ambiguous_or_imaginary
from django.utils.translation import get_language, gettext, gettext_lazy
from django.utils import formats, timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe

from jobs.schedules import describe
from jobs.services import status

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
    return _described(job.exec_schedule, job.time_zone, get_language())


@functools.lru_cache(maxsize=1024)
def _described(schedule: str, time_zone: str, language: str) -> str:
    # A page repeats a few schedules many times: cached per language (describe() speaks the active one).
    return describe(schedule, time_zone) or ""


#: A key no row has, reversed once in its place: the address of any row is then a join of strings.
_KEY = 2_147_483_647


@functools.lru_cache(maxsize=64)
def _around_key(name: str, script_prefix: str, *args) -> tuple[str, str]:
    head, tail = reverse(name, args=[_KEY, *args]).split(str(_KEY))
    return head, tail


@register.filter
def url_for(pk, name: str) -> str:
    """``{% url name pk %}`` for the rows of a long table, without a reverse() per row."""
    head, tail = _around_key(name, get_script_prefix())
    return f"{head}{int(pk)}{tail}"


@register.filter
def press_url(job, action: str) -> str:
    """The address of a job action on ``job`` (``{% url 'jobs:press' job.pk action %}``), as url_for."""
    head, tail = _around_key("jobs:press", get_script_prefix(), action)
    return f"{head}{int(job.pk)}{tail}"


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


@register.filter(expects_localtime=True)
def stamp(value, style: str = "seconds") -> str:
    """An instant as the ``date`` filter writes it with "c" (``iso``), "Y-m-d H:i:s T" (``seconds``) or
    "D Y-m-d H:i T" (``day``), at a fraction of its cost: the jobs page has a few in every row."""
    if not isinstance(value, dt.datetime):
        return ""
    if style == "iso":
        return value.isoformat()
    zone = "" if value.tzinfo is None or _datetime_ambiguous_or_imaginary(value, value.tzinfo) else str(value.tzname())
    if style == "day":
        return f"{WEEKDAYS_ABBR[value.weekday()]} {value:%Y-%m-%d %H:%M} {zone}"
    return f"{value:%Y-%m-%d %H:%M:%S} {zone}"


@functools.lru_cache(maxsize=64)
def _choice_labels(model, field: str, language: str | None) -> dict:
    return {value: str(label) for value, label in model._meta.get_field(field).flatchoices}


@register.filter
def label(obj, field: str) -> str:
    """``obj.get_<field>_display()`` from a table per language: Django's hashes every (lazy) choice per call."""
    value = getattr(obj, field)
    return _choice_labels(type(obj), field, get_language()).get(value, value)


@register.filter
def buttons(job, section) -> list[tuple[dict, tuple[str, str] | None]]:
    """The buttons of a job's action cell: (a, None) for the action's form, (a, (title, label)) for a
    disabled button; ``a`` is one of ``section["actions"]``. Stop on a run IPS is running; Run
    (disabled while one runs); Pause or Resume by the trigger state IPS last reported.

    The cell's rules, in Python: a template would weigh them once per action per row."""
    active = getattr(job, "active_in_ips", None)
    paused = job.trigger_state == "Paused"
    out = []
    for a in section["actions"]:
        action = a["action"]
        offered = action.offered
        if offered == "active":
            if active and a["allowed"]:
                out.append((a, None))
        elif offered == "idle" or (offered == "unpaused" and not paused) or (offered == "paused" and paused):
            if not a["allowed"]:
                out.append((a, (a["reason"], action.label)))
            elif job.is_gone:
                out.append((a, (gettext("This job no longer exists in IPS."), action.label)))
            elif offered == "idle" and getattr(job, "run_in_flight", False):
                out.append((a, (gettext("A run of this job is being started."), action.busy_label or action.label)))
            elif offered == "idle" and active:
                out.append((a, (gettext("IPS reports this job running: wait for it to finish."), gettext("Running in IPS"))))
            else:
                out.append((a, None))
    return out


@register.filter
def result_label(ex) -> str:
    """``ex.ips_result_label``, its plain results (ok, fatal, …) from label's table."""
    if ex.ips_result in ("warnings", "errors", "no_result"):
        return ex.ips_result_label
    return label(ex, "ips_result") if ex.ips_result else ""


@register.simple_tag
def run_badge(ex):
    """A run's one status (services.status.run_badge: the rule for every page), the press's own outcome after it."""
    badge = status.run_badge(ex)
    html = format_html('<span class="run-status run-status-{}">{}</span>', badge.tone, badge.text)
    if badge.press:
        html += format_html(' <span class="press-outcome">{}</span>', gettext("request: %(outcome)s") % {"outcome": badge.press})
    return html


@register.filter
def fire_time_is_stale(job) -> bool:
    """The next fire time IPS last gave has passed by more than the job's missed-run grace: IPS's answer is old."""
    if job.next_fire_time is None:
        return False
    return job.next_fire_time + job.missed_grace < timezone.now()


#: A job action's button as a screen reader names it: its verb and the job, one sentence per language
#: (the visible label stays the short verb; templates/jobs/job_list.html#action-form).
_NAMED = {
    "run": gettext_lazy("Run {job}"),
    "stop": gettext_lazy("Stop {job}"),
    "pause": gettext_lazy("Pause {job}"),
    "resume": gettext_lazy("Resume {job}"),
}


@functools.lru_cache(maxsize=64)
def _named_words(action: str, label: str, language: str | None) -> str:
    words = _NAMED.get(action)
    return str(words) if words is not None else label + " {job}"


@register.filter
def named(action, job) -> str:
    """The accessible name of ``action``'s button on ``job``: "Run My Test Job" ("Esegui My Test Job")."""
    return _named_words(action.name, str(action.label), get_language()).replace("{job}", job.name)
