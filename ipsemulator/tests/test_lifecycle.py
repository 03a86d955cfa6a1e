"""A job run from executeJob to its final log, driven by a ManualClock (no
sleeping): states, progress, TaskProgress, the log from the run's start,
stop, outcomes, and the wall time following the clock."""

from datetime import datetime, timedelta

import pytest
import requests

from ipsemulator.clock import ManualClock

from .soap import (NS, NS_2014, active_jobs, as_dict, call, execute, fault, job_logs, log_details,
                   result)

JOB = "47|My Test Job|"  # ImageServingPublish, 4 files, outcome success


def _dt(text):
    return datetime.fromisoformat(text)


def _run(emu, ns=NS_2014, **kw):
    (run,) = active_jobs(emu, ns=ns, **kw)
    return run


def _log(emu, handle, ns=NS_2014, company="47", user="ipsadmin@example.com"):
    (log,) = [log for log in job_logs(emu, [("companyHandle", company)], ns=ns, user=user)
              if log["jobHandle"] == handle]
    return log


def _tasks(run):
    return [as_dict(t) for t in run["taskProgressArray"]]


def _counts(log):
    return tuple(int(log[k]) for k in ("fileSuccessCount", "fileWarningCount", "fileErrorCount",
                                       "totalFileCount"))


def test_the_manual_clock_only_moves_forward():
    clock = ManualClock(5.0)
    assert clock() == 5.0
    assert clock.advance(2.5) == 7.5 and clock() == 7.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_run_and_its_log_from_executejob_to_the_end(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator), "executeJob")

    run = _run(ips_emulator)
    handle = run["jobHandle"]
    assert handle == f"47||{run['name']}" and run["name"].startswith("My Test Job_")
    assert (run["state"], run["progress"], run["progressMessage"]) == ("New", "0", "Waiting to start")
    # The log exists from the start: Begin… type, nothing counted, no endDate.
    log = _log(ips_emulator, handle)
    assert (log["jobName"], log["originalJobName"]) == (run["name"], "My Test Job")
    assert log["logType"] == "BeginImageServingPublish"
    assert "endDate" not in log and log["startDate"] == run["startDate"]
    assert _counts(log) == (0, 0, 0, 0) and log["fatalError"] == "false"

    seen = []
    for _ in range(4):
        clock.advance(2.5)
        run, log = _run(ips_emulator), _log(ips_emulator, handle)
        seen.append((run["state"], int(run["progress"]), log["logType"], _counts(log),
                     "endDate" in log))
    assert seen == [
        ("Running", 25, "BeginImageServingPublish", (1, 0, 0, 0), False),
        ("Running", 50, "BeginImageServingPublish", (2, 0, 0, 0), False),
        ("Running", 75, "BeginImageServingPublish", (3, 0, 0, 0), False),
        ("Done", 100, "ImageServingPublishSuccess", (4, 0, 0, 4), True),
    ]
    assert _run(ips_emulator)["progressMessage"] == "Completed"
    assert _dt(log["endDate"]) - _dt(log["startDate"]) == timedelta(seconds=10)
    (_, rows), = log_details(ips_emulator, "47", handle, ns=NS_2014)
    assert [r["logType"] for r in rows] == ["BeginImageServingPublish", "OriginalJobName", "JobClient",
                                           "TotalFileCount"] + ["ImageServingPublishSuccess"] * 4 + [
        "EndImageServingPublish"]
    # Done is listed for a quarter of the duration, then the run is gone; its log stays.
    clock.advance(2.5)
    assert active_jobs(ips_emulator) == []
    assert _log(ips_emulator, handle)["logType"] == "ImageServingPublishSuccess"
    # earlier runs of the same job are other logs
    runs_of_job = [log for log in job_logs(ips_emulator, [("companyHandle", "47")], ns=NS_2014)
                   if log["originalJobName"] == "My Test Job"]
    assert len(runs_of_job) == 3 and len({log["jobHandle"] for log in runs_of_job}) == 3


def test_log_details_grow_with_the_run(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator), "executeJob")
    handle = _run(ips_emulator)["jobHandle"]

    def types():
        (log, rows), = log_details(ips_emulator, "47", handle, ns=NS_2014)
        assert log["detailTotalRows"] == str(len(rows))
        return [r["logType"] for r in rows]

    assert types() == ["BeginImageServingPublish", "OriginalJobName", "JobClient"]
    clock.advance(5)
    assert types() == ["BeginImageServingPublish", "OriginalJobName", "JobClient", "TotalFileCount",
                       "ImageServingPublishSuccess", "ImageServingPublishSuccess"]
    clock.advance(5)
    assert types()[-1] == "EndImageServingPublish"


def test_wall_timestamps_follow_the_clock(ips_emulator, clock):
    ips_emulator.state.job_duration = 100
    before = ips_emulator.state.now()
    result(execute(ips_emulator), "executeJob")
    run = _run(ips_emulator)
    start = _dt(run["startDate"])
    assert abs((start - before).total_seconds()) < 1
    assert run["jobHandle"].endswith(start.strftime("_%Y-%m-%d-%H:%M:%S"))
    clock.advance(30)  # instantly
    run = _run(ips_emulator)
    assert _dt(run["lastProgressUpdate"]) - start == timedelta(seconds=30)
    (task,) = _tasks(run)
    assert _dt(task["lastProgressUpdate"]) - start == timedelta(seconds=30)
    assert ips_emulator.state.now() - before >= timedelta(seconds=30)


def test_swapping_the_clock_keeps_the_wall_time(ips_emulator):
    state = ips_emulator.state
    before = state.now()
    state.clock = ManualClock(10_000.0)
    after = state.now()
    assert timedelta(0) <= after - before < timedelta(seconds=1)
    state.clock.advance(60)
    assert state.now() - after == timedelta(seconds=60)


@pytest.mark.parametrize("seconds, state, task_state, counts, item", [
    (0.5, "New", "New", (0, 0, 5), None),
    (3, "Running", "Processing", (1, 1, 3), "Größe-02.tif"),
    (9.5, "Running", "Processing", (4, 1, 0), "日本語.png"),
    (10, "Done", "Done", (5, 0, 0), None),
])
def test_task_progress_follows_the_run(ips_emulator, clock, seconds, state, task_state, counts, item):
    # Übersicht Publish: ImageRenderingPublish, 5 files
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator, "47|Übersicht Publish|"), "executeJob")
    clock.advance(seconds)
    run = _run(ips_emulator)
    assert run["state"] == state
    (task,) = _tasks(run)
    assert task["taskType"] == "ImageRenderingPublish"
    assert task["taskState"] == task_state
    assert float(task["progress"]) == int(run["progress"]) / 100
    assert 0.0 <= float(task["progress"]) <= 1.0
    numbers = (int(task["numProcessed"]), int(task["numProcessing"]), int(task["numPending"]))
    assert numbers == counts and sum(numbers) == 5
    item_array = task.get("taskItemProgressArray")
    processing = [as_dict(i) for i in item_array] if item_array is not None else []
    assert [i["itemName"] for i in processing] == ([item] if item else [])


def test_task_progress_is_not_in_the_unversioned_namespace(ips_emulator, clock):
    result(execute(ips_emulator), "executeJob")
    run = _run(ips_emulator, ns=NS)
    assert "taskProgressArray" not in run and "progress" in run


def test_a_fatal_run_fails(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator, "47|Video Sync|"), "executeJob")
    clock.advance(5)
    handle = _run(ips_emulator)["jobHandle"]
    assert _log(ips_emulator, handle)["fatalError"] == "false"  # not yet
    clock.advance(5)
    run = _run(ips_emulator)
    (task,) = _tasks(run)
    assert (run["state"], run["progressMessage"], task["taskState"]) == ("Done", "Failed", "Failed")
    log = _log(ips_emulator, handle)
    assert (log["logType"], log["fatalError"]) == ("FatalError", "true")


def test_cleanup_runs_have_no_tasks_and_no_job_detail(ips_emulator, clock):
    svc = "service@example.com"
    result(execute(ips_emulator, "52|Weekly Cleanup|", "52", user=svc, ns=NS_2014), "executeJob", NS_2014)
    clock.advance(0.5)
    run = _run(ips_emulator, user=svc)
    assert run["type"] == "Cleanup" and run["state"] == "Running"
    assert "taskProgressArray" not in run
    assert not [k for k in run if k.endswith("Job")]


def test_execute_job_while_it_runs_is_refused(ips_emulator, clock):
    result(execute(ips_emulator), "executeJob")
    f = fault(execute(ips_emulator, user="service@example.com"))
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "IpsApiException", "ipsApiFault", 30001)
    assert "already running" in f["reason"]
    assert len(active_jobs(ips_emulator)) == 1
    # another job of the same company may run meanwhile
    result(execute(ips_emulator, "47|Nightly | Publish|"), "executeJob")
    # a run listed as Done does not block the next one
    clock.advance(1.0)
    assert {r["state"] for r in active_jobs(ips_emulator)} == {"Done"}
    result(execute(ips_emulator), "executeJob")
    assert [r["state"] for r in active_jobs(ips_emulator, [("jobHandle", JOB)])] == ["Done", "New"]


def test_stop_job_stops_the_run(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator), "executeJob")
    clock.advance(5)
    # By the scheduled job's handle, as the reference's example (a run's: test_operations.py).
    result(call(ips_emulator, "stopJob", [("companyHandle", "47"), ("jobHandle", JOB)],
                user="ipscompanyadmin@example.com"), "stopJob")
    run = _run(ips_emulator)
    assert run["state"] == "Stopping"
    log = _log(ips_emulator, run["jobHandle"])
    assert log["logType"] == "BeginImageServingPublish" and "endDate" not in log
    clock.advance(1)
    run = _run(ips_emulator)
    assert (run["state"], run["progressMessage"]) == ("Done", "Stopped")
    (log, rows), = log_details(ips_emulator, "47", run["jobHandle"], ns=NS_2014)
    assert log["description"] == "Stopped by ipscompanyadmin@example.com"
    assert log["logType"] == "EndImageServingPublish"
    assert _counts(log) == (2, 0, 0, 4)
    assert _dt(log["endDate"]) - _dt(log["startDate"]) == timedelta(seconds=6)
    assert rows[-1]["logMessage"] == "Job stopped by ipscompanyadmin@example.com"
    clock.advance(10)
    f = fault(call(ips_emulator, "stopJob", [("companyHandle", "47"), ("jobHandle", JOB)]))
    assert f["code"] == 30001


@pytest.mark.parametrize("company, name, family, log_type, counts, fatal", [
    ("47", "My Test Job", "ImageServingPublish", "ImageServingPublishSuccess", (4, 0, 0, 4), "false"),
    ("47", "Nightly | Publish", "ImageServingPublish", "ImageServingPublishWarning", (4, 0, 2, 6), "false"),
    ("47", "<b>Bold</b> Upload", "Upload", "UploadError", (2, 1, 0, 3), "false"),
    ("47", "Video Sync", "VideoPublish", "FatalError", (0, 0, 0, 2), "true"),
    ("48", "Metadaten Import", "Upload", "UploadError", (4, 2, 0, 6), "false"),
])
def test_outcomes_show_in_the_logs(ips_emulator, clock, company, name, family, log_type, counts, fatal):
    user = "service@example.com"
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator, f"{company}|{name}|", company, user=user), "executeJob")
    clock.advance(10)
    log = _log(ips_emulator, _latest(ips_emulator, name), company=company, user=user)
    assert log["originalJobName"] == name and "endDate" in log
    assert log["logType"] == log_type
    assert (int(log["fileSuccessCount"]), int(log["fileErrorCount"]), int(log["fileWarningCount"]),
            int(log["totalFileCount"])) == counts
    assert log["fatalError"] == fatal
    (_, rows), = log_details(ips_emulator, company, log["jobHandle"], ns=NS_2014)
    types = [r["logType"] for r in rows]
    assert (types.count(f"{family}Success"), types.count(f"{family}Error"),
            types.count(f"{family}Warning")) == counts[:3]
    assert ("FatalError" in types) == (fatal == "true")
    for r in rows:
        if r.get("assetName"):
            assert r["assetType"] and r["assetHandle"]
            (aux,) = [as_dict(a) for a in r["auxArray"]]
            assert aux["logType"] == r["logType"] and aux["logMessage"] and aux["dateCreated"]


def _latest(emu, name):
    (run,) = [r for r in emu.state.runs if r.job.name == name and not r.history]
    return run.handle


def test_markup_asset_names_round_trip(ips_emulator, clock):
    ips_emulator.state.job_duration = 0
    result(execute(ips_emulator, "47|<b>Bold</b> Upload|"), "executeJob")
    handle = _latest(ips_emulator, "<b>Bold</b> Upload")
    (_, rows), = log_details(ips_emulator, "47", handle)
    assert [r["assetName"] for r in rows if r.get("assetName")] == ["logo<1>.png", "banner&co.jpg", "hero.jpg"]


# ---------------------------------------------------------- the HTTP clock
def _clock(emu, payload=None, method="post"):
    return getattr(requests, method)(f"{emu.base_url}/_emulator/clock", json=payload, timeout=10)


def test_the_clock_endpoint_drives_a_run_from_another_process(ips_emulator):
    assert _clock(ips_emulator, method="get").json()["manual"] is False
    resp = _clock(ips_emulator, {"advance": 0})  # freeze
    assert resp.status_code == 200 and resp.json()["manual"] is True
    ips_emulator.state.job_duration = 30
    result(execute(ips_emulator), "executeJob")
    assert _run(ips_emulator)["state"] == "New"
    frozen = _clock(ips_emulator, method="get").json()["now"]
    resp = _clock(ips_emulator, {"advance": 15})
    assert _dt(resp.json()["now"]) - _dt(frozen) == timedelta(seconds=15)
    assert (_run(ips_emulator)["state"], _run(ips_emulator)["progress"]) == ("Running", "50")
    _clock(ips_emulator, {"advance": 15})
    assert _run(ips_emulator)["state"] == "Done"
    # reset() puts the real clock back
    assert requests.post(f"{ips_emulator.base_url}/_emulator/reset", timeout=10).status_code == 200
    assert _clock(ips_emulator, method="get").json()["manual"] is False


@pytest.mark.parametrize("payload", [{"advance": -1}, {"advance": "soon"}, {"rewind": 3}, [1]])
def test_the_clock_endpoint_rejects_bad_payloads(ips_emulator, payload):
    resp = _clock(ips_emulator, payload)
    assert resp.status_code == 400 and "error" in resp.json()
    assert _clock(ips_emulator, method="get").json()["manual"] is False


def test_the_ips_scheduler_starts_runs_of_its_own(ips_emulator, clock):
    """A run nobody asked for by executeJob: listed, logged, with the job's submit user."""
    url = ips_emulator.base_url + "/_emulator/fire"
    resp = requests.post(url, json={"job_handle": "47|Nightly | Publish|"}, timeout=5)
    assert resp.status_code == 200, resp.text
    handle = resp.json()["run_handle"]
    assert handle.startswith("47||Nightly | Publish_")
    [active] = [a for a in active_jobs(ips_emulator, [("companyHandle", "47")]) if a["jobHandle"] == handle]
    job = ips_emulator.state.jobs["47|Nightly | Publish|"]
    assert active["submitUserEmail"] == job.submit_user_email
    assert not [c for c in ips_emulator.state.calls if c["operation"] == "executeJob"]
    again = requests.post(url, json={"job_handle": "47|Nightly | Publish|"}, timeout=5)
    assert again.status_code == 409 and "already running" in again.json()["error"]
    clock.advance(ips_emulator.state.job_duration * 2)
    assert handle in [log["jobHandle"] for log in job_logs(ips_emulator, [("companyHandle", "47")])]
    assert requests.post(url, json={"job_handle": "nope"}, timeout=5).status_code == 409
    assert requests.post(url, json={}, timeout=5).status_code == 400
