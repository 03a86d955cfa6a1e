"""IPS's own scheduler on the emulator's clock (no sleeping: a ManualClock), the Date header
in that clock, removing a job, and counting calls."""

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

import pytest
import requests

from ipsemulator.clock import ManualClock
from ipsemulator.schedule import next_after, next_or_none

from .soap import (NS_2014, active_jobs, call, envelope, execute, fault, items, job_logs, log_details,
                   post, result, scheduled_jobs)

BEAT = "47|Heartbeat Publish|"  # demo.toml's, loaded only with the scheduler on: every 2 minutes
PST = timezone(timedelta(hours=-8))


def _control(emu, name, payload=None, method="post", **kw):
    return requests.request(method, f"{emu.base_url}/_emulator/{name}", json=payload, timeout=10, **kw)


def _dt(text):
    return datetime.fromisoformat(text)


def _job(emu, handle=BEAT):
    (job,) = [j for j in scheduled_jobs(emu, ns=NS_2014) if j["jobHandle"] == handle]
    return job


def _active(emu, handle=BEAT):
    return [a for a in active_jobs(emu, [("companyHandle", "47")], ns=NS_2014)
            if a["originalName"] == handle.split("|")[1]]


def _logs(emu, handle=BEAT):
    name = handle.split("|")[1]
    return [log for log in job_logs(emu, [("companyHandle", "47")], ns=NS_2014)
            if log["originalJobName"] == name]


def _add_beat(state):
    """The demo's Heartbeat Publish, as manage.py ipsemulator loads it (the tests' emulator
    starts with the scheduler off, so without it)."""
    return state.add_job("47", "Heartbeat Publish", submit_user_email="ipsuser@example.com",
                         exec_schedule="00 */2 * * * ", time_zone="PST", files=2)


def _scheduler_on(emu):
    """Switch IPS's scheduler on (over HTTP), then add the heartbeat job: its next fire time
    is the next even minute."""
    resp = _control(emu, "config", {"scheduler": True})
    assert resp.status_code == 200 and resp.json()["scheduler"] is True, resp.text
    _add_beat(emu.state)


def _until(emu, clock, at: datetime, before: float = 0.0) -> None:
    """Advance the clock to ``before`` seconds before ``at`` (negative: after)."""
    clock.advance((at - emu.state.now()).total_seconds() - before)


# ------------------------------------------------------------------ the parser
AFTER = datetime(2026, 11, 29, 10, 4, 34, tzinfo=PST)  # a Sunday


@pytest.mark.parametrize("schedule, expected", [
    ("00 00 00 * * ", "2026-11-30T00:00:00"),        # the demo's forms
    ("00 15 * * * ", "2026-11-29T10:15:00"),
    ("00 00 01 * * 1", "2026-11-30T01:00:00"),       # Monday
    ("00 00 03 * * 0", "2026-12-06T03:00:00"),       # Sunday, today's 03:00 is past
    ("00 00 03 * * 7", "2026-12-06T03:00:00"),       # 7 is Sunday too
    ("00 00 11 * * 0", "2026-11-29T11:00:00"),
    ("00 00 04 1 * ", "2026-12-01T04:00:00"),
    ("00 */2 * * * ", "2026-11-29T10:06:00"),
    ("00 */15 * * * ", "2026-11-29T10:15:00"),
    ("00 00 */2 * * ", "2026-11-29T12:00:00"),
    ("00 00 03 1 */3 ", "2027-01-01T03:00:00"),     # January, April, July, October
    ("0,30 * * * * ", "2026-11-29T10:05:00"),        # lists
    ("40 04 10 * * ", "2026-11-29T10:04:40"),
    ("00 10-50/20 * * * ", "2026-11-29T10:10:00"),   # a range with a step: 10, 30, 50
    ("00 10-50/20 11 * * ", "2026-11-29T11:10:00"),
    ("00 0/25 * * * ", "2026-11-29T10:25:00"),       # from 0, every 25: 0, 25, 50
    ("00 00 09 * * 1-5", "2026-11-30T09:00:00"),     # weekdays
    ("00 00 09 * * 6,0", "2026-12-05T09:00:00"),     # Saturday before the next Sunday 09:00
    ("00 00 09 ? * MON", "2026-11-30T09:00:00"),     # Quartz's ? and a name
    ("00 00 00 1 JAN ", "2027-01-01T00:00:00"),
    ("00 00 00 29 2 ", "2028-02-29T00:00:00"),
    ("00 00 00 15 * 1", "2026-11-30T00:00:00"),      # both day fields: either matches
    ("00 00 00 1 1 * 2030", "2030-01-01T00:00:00"),  # a year
    ("34 04 10 29 11 ", "2027-11-29T10:04:34"),      # strictly after: not the moment itself
])
def test_next_after_reads_the_ips_schedule_forms(schedule, expected):
    assert next_after(schedule, AFTER, PST) == datetime.fromisoformat(expected).replace(tzinfo=PST)


def test_next_after_works_in_the_given_zone():
    utc_after = AFTER.astimezone(timezone.utc)
    assert next_after("00 00 00 * * ", utc_after, PST) == datetime(2026, 11, 30, tzinfo=PST)


@pytest.mark.parametrize("schedule", ["", "bogus", "00 00 00 * ", "00 61 * * * ", "00 00 00 L * ",
                                      "00 00 00 * * 1#2", "00 00 00 ? * 5L", "00 00 25 * * ",
                                      "00 00 00 * * 8", "00 50-10 * * * ", "00 */0 * * * ",
                                      "00 00 00 * * * 2030 x"])
def test_a_schedule_it_does_not_understand_is_an_error(schedule):
    with pytest.raises(ValueError):
        next_after(schedule, AFTER, PST)
    assert next_or_none(schedule, AFTER, PST) is None


def test_a_schedule_that_never_matches_has_no_next_time():
    assert next_after("00 00 00 31 2 ", AFTER, PST) is None
    assert next_after("00 00 00 1 1 * 2020", AFTER, PST) is None


# ------------------------------------------------------------------ firing
def test_a_job_fires_when_the_clock_passes_its_fire_time_not_before(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    _scheduler_on(ips_emulator)
    job = _job(ips_emulator)
    fire = _dt(job["nextFireTime"])
    assert timedelta(0) < fire - ips_emulator.state.now() <= timedelta(minutes=2)
    assert fire.second == 0 and fire.minute % 2 == 0

    _until(ips_emulator, clock, fire, before=0.5)
    assert not _active(ips_emulator) and not _logs(ips_emulator)
    assert _dt(_job(ips_emulator)["nextFireTime"]) == fire

    clock.advance(1)
    (run,) = _active(ips_emulator)
    assert run["name"] == f"Heartbeat Publish_{fire.astimezone(PST):%Y-%m-%d-%H:%M:%S}"
    assert run["jobHandle"] == f"47||{run['name']}"
    assert _dt(run["startDate"]) == fire and run["state"] == "New"
    assert run["submitUserEmail"] == job["submitUserEmail"] == "ipsuser@example.com"
    (log,) = _logs(ips_emulator)
    assert (log["jobHandle"], log["submitUserEmail"]) == (run["jobHandle"], "ipsuser@example.com")
    assert _dt(log["startDate"]) == fire and log["logType"] == "BeginImageServingPublish"
    assert _dt(_job(ips_emulator)["nextFireTime"]) == fire + timedelta(minutes=2)
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "executeJob"]

    # It runs to its end as any run does, and the next fire time starts the next one.
    _until(ips_emulator, clock, fire + timedelta(minutes=2), before=-0.5)
    runs = {log["jobHandle"]: log for log in _logs(ips_emulator)}
    assert runs[run["jobHandle"]]["logType"] == "ImageServingPublishSuccess"
    assert len(runs) == 2


def test_a_control_call_also_lets_the_schedule_catch_up(ips_emulator, clock):
    _scheduler_on(ips_emulator)
    fire = ips_emulator.state.jobs[BEAT].next_fire_time
    _until(ips_emulator, clock, fire, before=-0.1)
    assert not [r for r in ips_emulator.state.runs if r.job.handle == BEAT]  # nobody asked yet
    assert _control(ips_emulator, "clock", method="get").status_code == 200
    (run,) = [r for r in ips_emulator.state.runs if r.job.handle == BEAT]
    assert run.start == fire


def test_missed_fire_times_fire_once_then_the_next_is_after_now(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    _scheduler_on(ips_emulator)
    fire = _dt(_job(ips_emulator)["nextFireTime"])
    _until(ips_emulator, clock, fire + timedelta(minutes=9), before=-1)  # five fire times pass
    (log,) = _logs(ips_emulator)
    assert _dt(log["startDate"]) == fire and log["logType"] == "ImageServingPublishSuccess"
    assert _dt(_job(ips_emulator)["nextFireTime"]) == fire + timedelta(minutes=10)


def test_a_job_still_running_at_its_fire_time_skips_it(ips_emulator, clock):
    ips_emulator.state.job_duration = 150  # longer than the 2 minutes between fire times
    _scheduler_on(ips_emulator)
    fire = _dt(_job(ips_emulator)["nextFireTime"])
    _until(ips_emulator, clock, fire, before=-1)
    assert len(_active(ips_emulator)) == 1
    _until(ips_emulator, clock, fire + timedelta(minutes=2), before=-1)
    (run,) = _active(ips_emulator)
    assert run["state"] == "Running" and _dt(run["startDate"]) == fire
    assert len(_logs(ips_emulator)) == 1
    assert _dt(_job(ips_emulator)["nextFireTime"]) == fire + timedelta(minutes=4)
    _until(ips_emulator, clock, fire + timedelta(minutes=4), before=-1)
    assert len(_logs(ips_emulator)) == 2  # done by then: this one fires


def test_a_paused_job_does_not_fire_until_resumed(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    _scheduler_on(ips_emulator)
    params = [("companyHandle", "47"), ("jobHandle", BEAT)]
    result(call(ips_emulator, "pauseJob", params), "pauseJob")
    fire = _dt(_job(ips_emulator)["nextFireTime"])
    for n in range(3):
        _until(ips_emulator, clock, fire + timedelta(minutes=2 * n), before=-1)
        assert not _active(ips_emulator) and not _logs(ips_emulator)
        job = _job(ips_emulator)
        assert job["triggerState"] == "Paused" and _dt(job["nextFireTime"]) == fire
    clock.advance(10)
    resumed_at = ips_emulator.state.now()
    result(call(ips_emulator, "resumeJob", params), "resumeJob")
    job = _job(ips_emulator)
    after = _dt(job["nextFireTime"])
    assert job["triggerState"] == "Normal"
    assert after == fire + timedelta(minutes=6) and resumed_at < after  # the first after now
    assert not _active(ips_emulator) and not _logs(ips_emulator)  # the paused time is not made up
    _until(ips_emulator, clock, after, before=0.5)
    assert not _logs(ips_emulator)
    clock.advance(1)
    (log,) = _logs(ips_emulator)
    assert _dt(log["startDate"]) == after


def test_a_held_back_job_misses_its_fire_time_silently(ips_emulator, clock):
    _scheduler_on(ips_emulator)
    resp = _control(ips_emulator, "hold", {"job_handle": BEAT, "held": True})
    assert resp.status_code == 200 and resp.json()["held"] == [BEAT]
    fire = _dt(_job(ips_emulator)["nextFireTime"])
    _until(ips_emulator, clock, fire, before=-1)
    job = _job(ips_emulator)
    assert not _active(ips_emulator) and not _logs(ips_emulator)
    assert job["triggerState"] == "Normal" and _dt(job["nextFireTime"]) == fire + timedelta(minutes=2)

    ips_emulator.state.hold(BEAT, held=False)
    _until(ips_emulator, clock, fire + timedelta(minutes=2), before=-1)
    (log,) = _logs(ips_emulator)
    assert _dt(log["startDate"]) == fire + timedelta(minutes=2)


@pytest.mark.parametrize("payload, status", [
    ({"job_handle": "47|nope|"}, 404), ({}, 400), ({"job_handle": BEAT, "held": "yes"}, 400)])
def test_hold_rejects_bad_payloads(ips_emulator, payload, status):
    assert _control(ips_emulator, "hold", payload).status_code == status


def test_with_the_scheduler_off_nothing_fires(ips_emulator, clock):
    state = ips_emulator.state
    assert state.scheduler is False  # the default of EmulatorState and of the test fixture
    soon = state.now().replace(microsecond=0) + timedelta(minutes=1)
    _add_beat(state).next_fire_time = soon
    clock.advance(600)
    assert not _active(ips_emulator) and not _logs(ips_emulator)
    assert _dt(_job(ips_emulator)["nextFireTime"]) == soon


def test_switching_the_scheduler_on_rolls_past_fire_times_forward_without_firing(ips_emulator, clock):
    state = ips_emulator.state
    runs = len(state.runs)
    mine = state.jobs["47|My Test Job|"]  # "00 00 00 * * "
    assert mine.next_fire_time < state.now()  # the demo's, long past
    state.scheduler = True
    now = state.now()
    assert len(state.runs) == runs and not state.active_runs()
    for job in state.jobs.values():
        if job.exec_schedule:
            assert job.next_fire_time > now, job.name
    assert mine.next_fire_time == now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    # "Directory Publish" has no schedule: its next fire time is left as IPS gave it.
    given = datetime.fromisoformat("2026-12-24T18:00:00+09:00")
    assert state.jobs["52|Directory Publish|"].next_fire_time == given

    resp = _control(ips_emulator, "config", {"scheduler": False})
    assert resp.json()["scheduler"] is False and state.scheduler is False
    state.scheduler = True
    state.reset()
    assert state.scheduler is False  # reset() restores the constructor's value


def test_a_schedule_it_does_not_understand_never_fires(ips_emulator, clock):
    state = ips_emulator.state
    state.scheduler = True
    job = state.add_job("47", "Odd Schedule", exec_schedule="00 00 00 L * ", submit_user_email="ipsuser@example.com",
                        next_fire_time=state.now() + timedelta(seconds=30))
    clock.advance(120)
    assert _job(ips_emulator, job.handle)["name"] == "Odd Schedule"  # SOAP still answers
    assert not [r for r in state.runs if r.job.handle == job.handle]


def test_fire_still_starts_a_run_now_with_the_scheduler_on(ips_emulator, clock):
    _scheduler_on(ips_emulator)
    now = ips_emulator.state.now()
    resp = _control(ips_emulator, "fire", {"job_handle": BEAT})
    assert resp.status_code == 200, resp.text
    (run,) = _active(ips_emulator)
    assert run["jobHandle"] == resp.json()["run_handle"]
    assert abs(_dt(run["startDate"]) - now) < timedelta(milliseconds=1)


def test_the_demo_heartbeat_job_comes_with_the_scheduler_on(ips_emulator, start_emulator):
    # The tests' emulator starts with the scheduler off: no heartbeat, five jobs in 47.
    assert BEAT not in ips_emulator.state.jobs
    assert len(scheduled_jobs(ips_emulator)) == 5
    emu = start_emulator(scheduler=True, job_duration=1)
    emu.state.clock = clock = ManualClock()
    job = _job(emu)
    assert (job["execSchedule"], job["submitUserEmail"], job["triggerState"]) == (
        "00 */2 * * * ", "ipsuser@example.com", "Normal")
    fire = _dt(job["nextFireTime"])  # the data file's, long past, moved on
    assert timedelta(0) < fire - emu.state.now() <= timedelta(minutes=2)
    # (Not "no log yet": an even minute may have passed before the clock was frozen.)
    before = len(_logs(emu))
    _until(emu, clock, fire, before=-0.5)
    logs = _logs(emu)
    assert len(logs) == before + 1
    assert _dt(logs[0]["startDate"]) == fire and logs[0]["submitUserEmail"] == "ipsuser@example.com"
    emu.state.reset()  # back to the constructor's value: on, and the job is there again
    assert emu.state.scheduler is True and BEAT in emu.state.jobs


@pytest.mark.parametrize("args, on", [((), True), (("--no-scheduler",), False)])
def test_the_command_serves_with_the_scheduler_on_unless_told(monkeypatch, start_emulator, args, on):
    from django.core.management import call_command

    from ipsemulator.management.commands import ipsemulator as command
    seen = {}
    monkeypatch.setattr(command, "serve", lambda **kw: seen.update(kw))
    call_command("ipsemulator", *args)
    assert seen["scheduler"] is on
    assert start_emulator().state.scheduler is False  # tests' emulators: off


# ------------------------------------------------------------------ Date header
def _dates(resp) -> list[str]:
    return resp.raw.headers.getlist("Date")


def test_every_reply_has_one_date_header_in_the_emulators_clock(ips_emulator, clock):
    clock.advance(100)  # the emulator's time, not the real one
    now = ips_emulator.state.now()
    replies = {
        "soap": call(ips_emulator, "getUserInfo"),
        "fault": call(ips_emulator, "getUserInfo", password="wrong"),
        "wsdl": requests.get(ips_emulator.wsdl_url(), timeout=10),
        "service wsdl": requests.get(ips_emulator.service_url + "?wsdl", timeout=10),
        "control": _control(ips_emulator, "clock", method="get"),
        "not found": requests.get(ips_emulator.base_url + "/nowhere", timeout=10),
    }
    assert replies["soap"].status_code == 200 and replies["fault"].status_code == 500
    assert fault(replies["fault"])["code"] == 10001
    for what, resp in replies.items():
        dates = _dates(resp)
        assert len(dates) == 1, (what, dates)
        assert parsedate_to_datetime(dates[0]) == now.replace(microsecond=0), what
        assert dates[0].endswith(" GMT"), what


def test_the_date_header_follows_the_emulators_clock_back(ips_emulator, clock):
    state = ips_emulator.state
    real = datetime.now(timezone.utc)
    resp = _control(ips_emulator, "clock", {"shift": -3600})
    assert resp.status_code == 200, resp.text
    behind = state.now()
    assert abs((real - timedelta(hours=1) - behind).total_seconds()) < 60
    (date,) = _dates(call(ips_emulator, "getUserInfo"))
    assert date == format_datetime(behind.astimezone(timezone.utc).replace(microsecond=0), usegmt=True)
    assert parsedate_to_datetime(date) < real - timedelta(minutes=59)
    state.shift(3600)
    assert state.now() == behind + timedelta(hours=1)
    for payload in ({"shift": "later"}, {"shift": None}, {"shift": 1, "rewind": 2}):
        assert _control(ips_emulator, "clock", payload).status_code == 400


# ------------------------------------------------------------------ remove_job
def test_a_removed_job_leaves_getscheduledjobs_its_logs_stay(ips_emulator, clock):
    job = "47|My Test Job|"
    result(execute(ips_emulator), "executeJob")
    before = [log["jobHandle"] for log in job_logs(ips_emulator, [("companyHandle", "47")], ns=NS_2014)
              if log["originalJobName"] == "My Test Job"]
    assert len(before) == 3  # two from the data file, one just started

    resp = _control(ips_emulator, "remove_job", {"job_handle": job})
    assert resp.status_code == 200, resp.text
    assert job not in [j["jobHandle"] for j in scheduled_jobs(ips_emulator)]
    assert not items(result(call(ips_emulator, "getScheduledJobs", [("companyHandle", "47"), ("jobHandle", job)]),
                            "getScheduledJobs"), "jobArray")
    after = [log["jobHandle"] for log in job_logs(ips_emulator, [("companyHandle", "47")], ns=NS_2014)
             if log["originalJobName"] == "My Test Job"]
    assert after == before
    [(log, rows)] = log_details(ips_emulator, "47", "47||My Test Job_2026-11-27-00:00:00")
    assert log["jobName"] == "My Test Job_2026-11-27-00:00:00" and rows
    assert len(_active(ips_emulator, job)) == 1  # the run goes on
    assert fault(execute(ips_emulator))["code"] == 30001

    assert _control(ips_emulator, "remove_job", {"job_handle": job}).status_code == 404
    assert _control(ips_emulator, "remove_job", {}).status_code == 400
    ips_emulator.state.remove_job("47|Nightly | Publish|")
    assert [j["name"] for j in scheduled_jobs(ips_emulator)] == [
        "<b>Bold</b> Upload", "Übersicht Publish", "Video Sync"]
    with pytest.raises(ValueError):
        ips_emulator.state.remove_job("47|Nightly | Publish|")


def test_a_removed_job_no_longer_fires(ips_emulator, clock):
    _scheduler_on(ips_emulator)
    fire = ips_emulator.state.jobs[BEAT].next_fire_time
    ips_emulator.state.remove_job(BEAT)
    _until(ips_emulator, clock, fire, before=-1)
    assert not _logs(ips_emulator) and not _active(ips_emulator)


# ------------------------------------------------------------------ calls
def test_calls_can_be_filtered_and_counted(ips_emulator, clock):
    scheduled_jobs(ips_emulator)
    scheduled_jobs(ips_emulator, company="48", user="service@example.com")
    clock.advance(60)
    middle = ips_emulator.state.now()
    scheduled_jobs(ips_emulator)
    job_logs(ips_emulator, [("companyHandle", "47")])
    post(ips_emulator, envelope("getUserInfo"))

    def get(**params):
        resp = _control(ips_emulator, "calls", method="get", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    assert len(get()) == 5
    assert [c["companyHandle"] for c in get(operation="getScheduledJobs")] == ["47", "48", "47"]
    assert len(get(operation="getScheduledJobs", companyHandle="47")) == 2
    assert [c["companyHandle"] for c in get(user="SERVICE@example.com")] == ["48"]
    assert get(count="1") == {"count": 5, "operations": {"getScheduledJobs": 3, "getJobLogs": 1,
                                                         "getUserInfo": 1},
                              "companies": {"47": 3, "48": 1, "": 1}}
    assert get(count="1", companyHandle="47", since=middle.isoformat(timespec="milliseconds"))["count"] == 2
    assert get(count="1", until=middle.isoformat(timespec="milliseconds"))["count"] == 2
    unencoded = middle.astimezone(timezone(timedelta(hours=1))).isoformat(timespec="milliseconds")
    resp = requests.get(f"{ips_emulator.base_url}/_emulator/calls?count=1&since={unencoded}", timeout=10)
    assert resp.json()["count"] == 3  # the "+01:00" arrived as " 01:00"
    assert len(ips_emulator.state.calls_matching(operation="getJobLogs", since=middle)) == 1
    assert _control(ips_emulator, "calls", method="get", params={"since": "yesterday"}).status_code == 400
    assert _control(ips_emulator, "calls", method="get", params={"company": "47"}).status_code == 400


def test_only_with_scheduler_must_be_a_boolean():
    from ipsemulator.loader import load
    data = {"companies": [{"handle": "47", "name": "Demo"}],
            "jobs": [{"company": "47", "name": "J", "type": "Cleanup", "only_with_scheduler": "yes"}]}
    with pytest.raises(ValueError, match="only_with_scheduler"):
        load(data, PST, AFTER)
    data["jobs"][0]["only_with_scheduler"] = True
    assert not load(data, PST, AFTER).jobs and list(load(data, PST, AFTER, scheduler=True).jobs) == ["47|J|"]
