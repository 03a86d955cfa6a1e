"""IPS schedules in words (jobs/schedules.py), and on the jobs page with the raw string on hover."""

import pytest
from django.urls import reverse

from jobs.models import Job
from jobs.schedules import describe


@pytest.mark.parametrize(
    "schedule, zone, words",
    [
        # The reference's own example, and the emulator's jobs.
        ("00 00 00 * * ", "PST", "every day at 00:00 PST"),
        ("00 30 02 * * ", "PST", "every day at 02:30 PST"),
        ("00 15 * * * ", "PST", "every hour at :15"),
        ("00 00 01 * * 1", "PST", "every Monday at 01:00 PST"),
        ("00 00 03 * * 0", "JST", "every Sunday at 03:00 JST"),
        ("00 00 03 * * 7", "JST", "every Sunday at 03:00 JST"),
        ("00 00 04 1 * ", "JST", "on the 1st of every month at 04:00 JST"),
        # Quartz forms.
        ("0 30 2 ? * MON-FRI", "PST", "Monday to Friday at 02:30 PST"),
        ("0 30 2 ? * mon-fri", "PST", "Monday to Friday at 02:30 PST"),
        ("0 0 12 ? * MON,WED,FRI", "", "every Monday, Wednesday and Friday at 12:00"),
        ("0 0 4 ? * SAT,SUN", "CET", "every Saturday and Sunday at 04:00 CET"),
        ("0 0 4 ? * 6L", "CET", "on the last Saturday of every month at 04:00 CET"),
        ("0 0 4 ? * FRI#2", "CET", "on the second Friday of every month at 04:00 CET"),
        ("0 0 4 L * ?", "CET", "on the last day of every month at 04:00 CET"),
        ("0 0 4 LW * ?", "CET", "on the last weekday of every month at 04:00 CET"),
        ("0 0 4 15W * ?", "CET", "on the weekday nearest the 15th of every month at 04:00 CET"),
        ("0 0 4 1,15 * ?", "CET", "on the 1st and 15th of every month at 04:00 CET"),
        ("0 0 4 1 1,7 ?", "CET", "on the 1st of January and July at 04:00 CET"),
        ("0 0 4 * JAN ?", "CET", "every day in January at 04:00 CET"),
        ("0 0 4 ? * MON-FRI 2027", "PST", "Monday to Friday at 04:00 PST in 2027"),
        # Several times a day, or every few minutes: a clock time only where there is one.
        ("0 0/15 * * * ?", "PST", "every 15 minutes"),
        ("0 */20 * * * ?", "PST", "every 20 minutes"),
        ("0 15,45 * * * ?", "PST", "every hour at :15 and :45"),
        ("0 0 6,18 * * ?", "CET", "every day at 06:00 and 18:00 CET"),
        ("0 0 */6 * * ?", "UTC", "every day at 00:00, 06:00, 12:00 and 18:00 UTC"),
        ("0 0 8-18 * * MON-FRI", "CET", "Monday to Friday, every hour from 08:00 to 18:00 CET"),
        ("0 0/30 * * * MON-FRI", "CET", "Monday to Friday, every 30 minutes"),
        ("15 30 2 * * ?", "PST", "every day at 02:30:15 PST"),
    ],
)
def test_schedules_in_words(schedule, zone, words):
    assert describe(schedule, zone) == words


@pytest.mark.parametrize(
    "schedule",
    [
        "",
        "garbage",
        "0 0",  # too short
        "0 0 0 * * ? 2026 extra",  # too long
        "* * * * * ?",  # every second
        "0 * * * * ?",  # every minute
        "0 0 25 * * ?",  # no such hour
        "0 61 2 * * ?",
        "0 0 4 1 * MON",  # both day fields
        "0 0 4 ? * MON-SUN",  # a range that wraps
        "0 0 4 ? * FUNDAY",
        "0 0 9-17/2 * * ?",  # every two hours between: left raw rather than half said
    ],
)
def test_anything_not_fully_understood_is_left_raw(schedule):
    assert describe(schedule, "PST") is None


def test_the_jobs_page_says_the_schedule_in_words_with_the_raw_string_on_hover(client, login, synced):
    Job.objects.filter(handle="47|Nightly | Publish|").update(exec_schedule="0 0 9-17/2 * * ?")
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert '<span class="schedule" title="IPS schedule: 00 00 00 * *  (PST)">every day at 00:00 PST</span>' in body
    # Not understood: shown as IPS gives it.
    assert '<code title="IPS schedule, as IPS gives it">0 0 9-17/2 * * ?</code>' in body
