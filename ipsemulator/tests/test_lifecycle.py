"""A job run from executeJob to its log; stop; outcomes."""

import time

import pytest

from .soap import (active_jobs, as_dict, call, execute, fault, items, job_logs, result)


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock(ips_emulator):
    fake = FakeClock()
    ips_emulator.state.clock = fake
    yield fake
    ips_emulator.state.clock = time.monotonic


def _details(emu, company, handle):
    ret = result(call(emu, "getJobLogDetails", [("companyHandle", company), ("jobHandle", handle)]),
                 "getJobLogDetails")
    (log,) = items(ret, "jobLogArray")
    return log, [as_dict(d) for d in log["detailArray"]]


def test_a_run_goes_new_running_done_then_leaves_a_log(ips_emulator):
    ips_emulator.state.job_duration = 0.3
    result(execute(ips_emulator), "executeJob")
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        runs = active_jobs(ips_emulator, [("companyHandle", "47")])
        if not runs:
            break
        (run,) = runs
        seen.append((run["state"], int(run["progress"]), run["jobHandle"]))
        time.sleep(0.02)
    assert seen, "the run never showed up"
    order = {"New": 0, "Running": 1, "Done": 2}
    states = [order[s] for s, _, _ in seen]
    assert states == sorted(states)
    progress = [p for _, p, _ in seen]
    assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    handle = seen[0][2]
    (log,) = [log for log in job_logs(ips_emulator, [("companyHandle", "47")]) if log["jobHandle"] == handle]
    assert log["originalJobName"] == "My Test Job"
    assert log["logType"] == "ImageServingPublishSuccess"
    assert (log["fileSuccessCount"], log["fileErrorCount"], log["totalFileCount"]) == ("4", "0", "4")
    assert log["submitUserEmail"] == "ipsadmin@example.com"
    assert log["startDate"] <= log["endDate"]
    _, rows = _details(ips_emulator, "47", handle)
    assert rows[0]["logType"] == "BeginImageServingPublish"
    assert rows[-1]["logType"] == "EndImageServingPublish"


def test_run_states_by_the_clock(ips_emulator, clock):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator), "executeJob")

    def run():
        (r,) = active_jobs(ips_emulator)
        return r["state"], r["progress"], r["progressMessage"]

    assert run() == ("New", "0", "Waiting to start")
    clock.t += 5
    state, progress, message = run()
    assert (state, progress) == ("Running", "50") and message.startswith("Processing file")
    (r,) = active_jobs(ips_emulator)
    assert r["taskProgressArray"] is not None and r["lastProgressUpdate"] > r["startDate"]
    assert not [log for log in job_logs(ips_emulator) if log["jobHandle"] == r["jobHandle"]]
    clock.t += 5
    assert run() == ("Done", "100", "Completed")
    assert [log for log in job_logs(ips_emulator) if log["jobHandle"] == r["jobHandle"]]
    # a Done run does not block a new one
    clock.t += 10
    assert active_jobs(ips_emulator) == []
    result(execute(ips_emulator), "executeJob")
    (again,) = active_jobs(ips_emulator)
    assert again["jobHandle"] != r["jobHandle"]


def test_execute_job_while_it_runs_is_refused(ips_emulator, clock):
    result(execute(ips_emulator), "executeJob")
    f = fault(execute(ips_emulator, user="service@example.com"))
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "IpsApiException", "ipsApiFault", 30001)
    assert "already running" in f["reason"]
    assert len(active_jobs(ips_emulator)) == 1
    # another job of the same company may run meanwhile
    result(execute(ips_emulator, "47|Nightly | Publish|"), "executeJob")


@pytest.mark.parametrize("by", ["run", "scheduled"])
def test_stop_job_stops_the_run(ips_emulator, clock, by):
    ips_emulator.state.job_duration = 10
    result(execute(ips_emulator), "executeJob")
    clock.t += 5
    (run,) = active_jobs(ips_emulator)
    handle = run["jobHandle"] if by == "run" else "47|My Test Job|"
    result(call(ips_emulator, "stopJob", [("companyHandle", "47"), ("jobHandle", handle)],
                user="ipscompanyadmin@example.com"), "stopJob")
    (run,) = active_jobs(ips_emulator)
    assert run["state"] == "Stopping"
    clock.t += 1
    (run,) = active_jobs(ips_emulator)
    assert (run["state"], run["progressMessage"]) == ("Done", "Stopped")
    log, rows = _details(ips_emulator, "47", run["jobHandle"])
    assert log["description"] == "Stopped by ipscompanyadmin@example.com"
    assert log["logType"] == "EndImageServingPublish"
    assert int(log["fileSuccessCount"]) < 4
    assert rows[-1]["logMessage"] == "Job stopped by ipscompanyadmin@example.com"
    clock.t += 10
    f = fault(call(ips_emulator, "stopJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")]))
    assert f["code"] == 30001


@pytest.mark.parametrize("company, name, family, log_type, counts, fatal", [
    ("47", "My Test Job", "ImageServingPublish", "ImageServingPublishSuccess", (4, 0, 0, 4), "false"),
    ("47", "Nightly | Publish", "ImageServingPublish", "ImageServingPublishWarning", (4, 0, 2, 6), "false"),
    ("47", "<b>Bold</b> Upload", "Upload", "UploadError", (2, 1, 0, 3), "false"),
    ("47", "Video Sync", "VideoPublish", "FatalError", (0, 0, 0, 2), "true"),
    ("48", "Metadaten Import", "Upload", "UploadError", (4, 2, 0, 6), "false"),
])
def test_outcomes_show_in_the_logs(ips_emulator, company, name, family, log_type, counts, fatal):
    user = "service@example.com"
    before = {log["jobHandle"] for log in job_logs(ips_emulator, user=user)}
    ips_emulator.state.job_duration = 0
    result(execute(ips_emulator, f"{company}|{name}|", company, user=user), "executeJob")
    (log,) = [log for log in job_logs(ips_emulator, [("companyHandle", company)], user=user)
              if log["jobHandle"] not in before]
    assert log["originalJobName"] == name
    assert log["logType"] == log_type
    assert (int(log["fileSuccessCount"]), int(log["fileErrorCount"]), int(log["fileWarningCount"]),
            int(log["totalFileCount"])) == counts
    assert log["fatalError"] == fatal
    _, rows = _details(ips_emulator, company, log["jobHandle"])
    types = [r["logType"] for r in rows]
    assert (types.count(f"{family}Success"), types.count(f"{family}Error"),
            types.count(f"{family}Warning")) == counts[:3]
    assert ("FatalError" in types) == (fatal == "true")
    for r in rows:
        if r.get("assetName"):
            assert r["assetType"] and r["assetHandle"]


def test_markup_asset_names_round_trip(ips_emulator):
    ips_emulator.state.job_duration = 0
    result(execute(ips_emulator, "47|<b>Bold</b> Upload|"), "executeJob")
    (log,) = [log for log in job_logs(ips_emulator) if log["originalJobName"] == "<b>Bold</b> Upload"]
    _, rows = _details(ips_emulator, "47", log["jobHandle"])
    assert [r["assetName"] for r in rows if r.get("assetName")] == ["logo<1>.png", "banner&co.jpg", "hero.jpg"]
