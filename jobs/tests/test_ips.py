"""jobs/ips/ over real HTTP against the IPS emulator (ipsemulator/).

No database, no mocks of the wire: every test builds an ``ips.Endpoint`` that
points at the session's emulator (``ips_emulator`` fixture, root conftest.py)
and talks SOAP to it. Misbehaviour comes from the emulator's fault injection.

Each namespace answers in its own version's shapes (shared/ips-api.md, "What
changed between versions"): tests over ``api`` assert what the unversioned
(pre-4.0) namespace and 2014-04-03 really carry. The emulator's clock is
frozen for every test (``clock``): a run moves only when a test advances it.

The emulator records who called what (``state.calls``) but not the authHeader's
appName/appVersion, so ``wire`` spies on the emulator's request parser to keep
the raw request bodies as they arrived over the socket; ``replies`` keeps the
reply envelopes as the emulator wrote them.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest
import zeep
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from lxml import etree

from ipsemulator import app as emulator_app
from ipsemulator.clock import ManualClock
from ipsemulator.state import Job as EmulatorJob
from jobs import ips
from jobs.models import Connection

SERVICE = "service@example.com"
DEMO_PASSWORD = "demo"
# Distinctive passwords: if they show up anywhere, it is a leak.
SECRET = "Zq7!s3cr3t-Pässwörd-9f1c"
OTHER_SECRET = "Xy8?another-s3cret-77ab"

MY_JOB = "47|My Test Job|"
NIGHTLY = "47|Nightly | Publish|"
BOLD = "47|<b>Bold</b> Upload|"
UEBERSICHT = "47|Übersicht Publish|"
VIDEO = "47|Video Sync|"
MY_JOB_LOG = "47||My Test Job_2026-11-28-00:00:00"  # a past run in the demo data

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS_2014 = "http://www.scene7.com/IpsApi/xsd/2014-04-03"
BODY_NAMESPACE = {"": ips.IPS_NS, "2014-04-03": NS_2014}
PST = dt.timezone(dt.timedelta(hours=-8))

#: How long a run takes on the emulator's (manual) clock in this module.
RUN_SECONDS = 10.0

# (api_version, WSDL from the emulator instead of the bundled file)
UNVERSIONED = [
    pytest.param(("", False), id="unversioned-bundled-wsdl"),
    pytest.param(("", True), id="unversioned-remote-wsdl"),
]
V2014 = [
    pytest.param(("2014-04-03", False), id="2014-04-03-bundled-wsdl"),
    pytest.param(("2014-04-03", True), id="2014-04-03-remote-wsdl"),
]
API_CONFIGS = UNVERSIONED + V2014
#: Narrow a test over ``api`` to the versions where a shape exists.
only_unversioned = pytest.mark.parametrize("api", UNVERSIONED, indirect=True)
only_2014 = pytest.mark.parametrize("api", V2014, indirect=True)


# --------------------------------------------------------------- helpers


def make_endpoint(
    emulator,
    user=SERVICE,
    password=DEMO_PASSWORD,
    *,
    api_version="",
    remote_wsdl=False,
    connect_timeout=2.0,
    read_timeout=5.0,
    service_url=None,
    **extra,
) -> ips.Endpoint:
    return ips.Endpoint(
        service_url=service_url or emulator.service_url,
        user=user,
        password=password,
        api_version=api_version,
        wsdl_url=emulator.wsdl_url(api_version or None) if remote_wsdl else "",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        **extra,
    )


def as_user(emulator, email, password=DEMO_PASSWORD, **kwargs) -> ips.IpsClient:
    return ips.get_client(make_endpoint(emulator, email, password, **kwargs))


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_aware(value):
    assert isinstance(value, dt.datetime), value
    assert value.tzinfo is not None and value.utcoffset() is not None, value


def assert_int(value):
    assert isinstance(value, int) and not isinstance(value, bool), value


def assert_secret_absent(exc: BaseException, *secrets):
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def by_handle(items):
    return {i.job_handle: i for i in items}


def log_of(client: ips.IpsClient, run: ips.ActiveJob) -> ips.JobLog:
    """The run's own log as getJobLogs lists it (matched by the run's handle)."""
    (log,) = [log for log in client.get_job_logs(run.company_handle) if log.job_handle == run.job_handle]
    return log


def element_names(envelope: bytes) -> set[str]:
    return {etree.QName(e).localname for e in etree.fromstring(envelope).iter() if isinstance(e.tag, str)}


def exercise_every_operation(client: ips.IpsClient) -> list[str]:
    """Call each client method once (in an order that makes them all valid);
    returns the IPS operation names in call order."""
    client.get_scheduled_jobs("47")
    client.execute_job("47", MY_JOB)
    client.get_active_jobs("47")
    client.stop_job("47", MY_JOB)
    client.get_job_logs("47")
    client.get_job_log_details("47", job_handle=MY_JOB)
    client.pause_job("47", NIGHTLY)
    client.resume_job("47", NIGHTLY)
    client.delete_job("47", VIDEO)
    client.check_login(SERVICE, DEMO_PASSWORD)
    client.get_company_info("47")
    client.get_user_info()
    client.get_company_membership()
    return [
        "getScheduledJobs",
        "executeJob",
        "getActiveJobs",
        "stopJob",
        "getJobLogs",
        "getJobLogDetails",
        "pauseJob",
        "resumeJob",
        "deleteJob",
        "checkLogin",
        "getCompanyInfo",
        "getUserInfo",
        "getCompanyMembership",
    ]


# --------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def clock(ips_emulator):
    """The emulator's clock, frozen before anything runs: a run started in a
    test moves only by ``clock.advance(seconds)`` and lasts RUN_SECONDS."""
    ips_emulator.state.clock = manual = ManualClock()
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


@pytest.fixture(params=API_CONFIGS)
def api(request):
    """(api_version, remote_wsdl) — every combination the client supports."""
    return request.param


@pytest.fixture
def client(ips_emulator, api):
    """The service account's client, over each API version and WSDL source."""
    version, remote = api
    return ips.get_client(make_endpoint(ips_emulator, api_version=version, remote_wsdl=remote))


@pytest.fixture
def wire(monkeypatch):
    """Raw SOAP request bodies as the emulator received them."""
    bodies: list[bytes] = []
    parse = emulator_app.parse_soap

    def spy(body, *args, **kwargs):
        bodies.append(bytes(body))
        return parse(body, *args, **kwargs)

    monkeypatch.setattr(emulator_app, "parse_soap", spy)
    return bodies


@pytest.fixture
def replies(monkeypatch):
    """Result envelopes as the emulator wrote them (before any gzip)."""
    bodies: list[bytes] = []
    write = emulator_app.result_envelope

    def spy(*args, **kwargs):
        bodies.append(write(*args, **kwargs))
        return bodies[-1]

    monkeypatch.setattr(emulator_app, "result_envelope", spy)
    return bodies


# ------------------------------------------------------ results: the jobs


def test_it_lists_scheduled_jobs_as_dataclasses(client, api):
    version, _ = api
    jobs = client.get_scheduled_jobs("47")

    assert isinstance(jobs, list)
    assert all(isinstance(j, ips.ScheduledJob) for j in jobs)
    assert {j.job_handle for j in jobs} == {MY_JOB, NIGHTLY, BOLD, UEBERSICHT, VIDEO}
    job = by_handle(jobs)[MY_JOB]
    assert job.company_handle == "47"
    assert job.name == "My Test Job"
    assert job.original_name == "My Test Job"
    assert job.type == "ImageServingPublish"
    assert job.submit_user_email == "ipsadmin@example.com"
    if version:
        assert job.locale == "en_US"
        assert job.description == "The job from the executeJob reference example"
    else:  # pre-4.0 jobs have neither
        assert (job.locale, job.description) == (None, None)
    assert job.exec_schedule == "00 00 00 * * "
    assert job.time_zone == "PST"
    assert job.trigger_state == "Normal"
    assert_aware(job.next_fire_time)
    assert job.next_fire_time == dt.datetime(2026, 11, 30, 0, 0, tzinfo=PST)
    for j in jobs:
        for name in ("company_handle", "job_handle", "name", "time_zone", "trigger_state"):
            assert isinstance(getattr(j, name), str), (j, name)


def test_it_reads_the_job_detail_element_of_each_scheduled_job(client, api):
    version, _ = api
    jobs = by_handle(sum((client.get_scheduled_jobs(c) for c in ("47", "48", "52")), []))
    # urlArray in every version (the unversioned WSDL has it), numUrls 4.5+; optimizeImagesJob is 4.0+.
    urls = {"emailSetting": "None", "overwrite": True, "readyForPublish": True, "urlArray": {"items": [
        {"sourceUrl": "https://assets.example.com/logo%3C1%3E.png", "destPath": "DemoCompany/logo<1>.png"},
        {"sourceUrl": "https://assets.example.com/banner%26co.jpg", "destPath": "DemoCompany/banner&co.jpg"},
        {"sourceUrl": "https://assets.example.com/hero.jpg", "destPath": "DemoCompany/hero.jpg"},
    ]}}
    if version:
        urls["numUrls"] = 3

    full = {"publishType": "Full", "emailSetting": "None"}
    assert jobs[MY_JOB].detail == ips.JobDetail("imageServingPublishJob", full)
    assert jobs[NIGHTLY].detail == ips.JobDetail("imageServingPublishJob", {
        "publishType": "Incremental",
        "emailSetting": "ErrorAndWarning",
        "httpCompletionUrl": "https://hooks.example.com/ips?job=nightly&kind=<publish>",
    })
    assert jobs[BOLD].detail == ips.JobDetail("uploadUrlsJob", urls)
    assert jobs[UEBERSICHT].detail == ips.JobDetail("imageRenderingPublishJob", {"emailSetting": "None"})
    assert jobs["48|Menü Bilder Upload|"].detail == ips.JobDetail("uploadDirectoryJob", {
        "destFolder": "CafeZurich/menu/",
        "emailSetting": "JobCompletion",
        "includeSubfolders": "true",  # xsd:boolean before 4.0, xsd:string since: read as text
        "overwrite": "true",
        "readyForPublish": True,
        "serverDir": "/ips/upload/48/menu/",
    })
    assert jobs["52|Weekly Cleanup|"].detail is None  # a Cleanup job has no job-detail element
    assert jobs["52|Optimize: Catalog 2026|"].detail == (
        ips.JobDetail("optimizeImagesJob", {"emailSetting": "None"}) if version else None
    )


def test_it_round_trips_pipes_markup_and_non_ascii_exactly(client, api):
    version, _ = api
    jobs = by_handle(client.get_scheduled_jobs("47"))

    assert jobs[NIGHTLY].name == "Nightly | Publish"
    assert jobs[BOLD].name == "<b>Bold</b> Upload"
    assert jobs[BOLD].trigger_state == "Paused"
    assert jobs[UEBERSICHT].name == "Übersicht Publish"
    assert jobs[UEBERSICHT].next_fire_time.utcoffset() == dt.timedelta(hours=1)
    descriptions = (jobs[BOLD].description, jobs[UEBERSICHT].description)
    if version:
        assert descriptions == ("Name with <markup> & an ampersand", "Übersicht der Produktbilder – täglich")
    else:
        assert descriptions == (None, None)


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"job_handle": MY_JOB}, [MY_JOB]),
        ({"job_handle": NIGHTLY}, [NIGHTLY]),
        ({"job_handle": BOLD}, [BOLD]),
        ({"original_name": "Übersicht Publish"}, [UEBERSICHT]),
        ({"original_name": "<b>Bold</b> Upload"}, [BOLD]),
        ({"original_name": "No such job"}, []),
    ],
    ids=["handle", "handle-with-pipe", "handle-with-markup", "name-non-ascii", "name-markup", "no-match"],
)
def test_it_filters_scheduled_jobs(client, filters, expected):
    jobs = client.get_scheduled_jobs("47", **filters)

    assert [j.job_handle for j in jobs] == expected


def test_it_lists_another_companys_jobs(ips_emulator):
    client = as_user(ips_emulator, SERVICE)

    jobs = client.get_scheduled_jobs("48")

    assert {j.name for j in jobs} == {"Menü Bilder Upload", "Metadaten Import", "Template Publish"}
    assert all(j.company_handle == "48" for j in jobs)


def test_it_lists_no_active_jobs_as_an_empty_list(client):
    assert client.get_active_jobs("47") == []
    assert client.get_active_jobs() == []


def test_it_executes_a_job_and_lists_it_as_active(client, api):
    version, _ = api
    assert client.execute_job("47", NIGHTLY) is None

    active = client.get_active_jobs("47")

    assert len(active) == 1
    run = active[0]
    assert isinstance(run, ips.ActiveJob)
    assert run.company_handle == "47"
    assert run.job_handle.startswith("47||Nightly | Publish_")
    assert run.name == run.job_handle.removeprefix("47||")
    assert run.original_name == "Nightly | Publish"
    assert run.type == "ImageServingPublish"
    assert run.state == "New"
    assert run.submit_user_email == SERVICE
    assert isinstance(run.server_name, str) and run.server_name
    assert_aware(run.start_date)
    assert run.last_progress_update == run.start_date
    assert run.total_size == 6 * 1_048_576
    assert_int(run.progress)
    assert run.progress == 0
    assert run.progress_message == "Waiting to start"
    if version:
        assert (run.locale, run.description) == ("en_US", "Nightly publish to Image Serving")
    else:
        assert (run.locale, run.description) == (None, None)
    # The run carries its job's job-detail element.
    assert run.detail == client.get_scheduled_jobs("47", job_handle=NIGHTLY)[0].detail
    assert run.detail.element == "imageServingPublishJob"
    assert run.detail.values["publishType"] == "Incremental"


def test_it_reads_a_running_jobs_detail_of_another_type(client):
    client.execute_job("48", "48|Menü Bilder Upload|")

    (run,) = client.get_active_jobs("48")

    assert run.type == "UploadFromServerDirectory"
    assert run.detail.element == "uploadDirectoryJob"
    assert run.detail.values["serverDir"] == "/ips/upload/48/menu/"


@only_2014
def test_it_reads_task_progress_with_its_types(client, clock):
    client.execute_job("47", MY_JOB)  # 4 files
    tasks = []
    for seconds in (0, RUN_SECONDS / 2, RUN_SECONDS / 2):
        clock.advance(seconds)
        (run,) = client.get_active_jobs("47", job_handle=MY_JOB)
        (task,) = run.task_progress
        tasks.append((run, task))

    for run, task in tasks:
        assert isinstance(task, ips.TaskProgress)
        assert task.task_type == "ImageServingPublish"
        for count in (task.num_processed, task.num_processing, task.num_pending):
            assert_int(count)
        assert task.num_processed + task.num_processing + task.num_pending == 4
        assert type(task.progress) is float and 0.0 <= task.progress <= 1.0
        assert task.progress == run.progress / 100
        assert task.progress_message == run.progress_message
        assert task.last_progress_update == run.last_progress_update
    summary = [
        (run.state, task.task_state, task.progress, task.num_processed, task.num_processing, task.num_pending)
        for run, task in tasks
    ]
    assert summary == [
        ("New", "New", 0.0, 0, 0, 4),
        ("Running", "Processing", 0.5, 2, 1, 1),
        ("Done", "Done", 1.0, 4, 0, 0),
    ]
    (item,) = tasks[1][1].items  # the file being processed
    assert isinstance(item, ips.TaskItemProgress)
    assert item.item_name == "asset-003.jpg"
    assert type(item.progress) is float and 0.0 <= item.progress <= 1.0
    assert_aware(item.last_progress_update)
    assert tasks[0][1].items == tasks[2][1].items == []


@only_unversioned
def test_it_reads_no_task_progress_before_4_0(client, clock):
    client.execute_job("47", MY_JOB)
    clock.advance(RUN_SECONDS / 2)

    (run,) = client.get_active_jobs("47", job_handle=MY_JOB)

    assert (run.state, run.progress) == ("Running", 50)
    assert run.task_progress == []  # pre-4.0 ActiveJob has no taskProgressArray


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, ["My Test Job", "Nightly | Publish"]),
        ({"company_handle": "47"}, ["My Test Job", "Nightly | Publish"]),
        ({"company_handle": "48"}, []),
        ({"job_handle": MY_JOB}, ["My Test Job"]),
        ({"job_handle": NIGHTLY}, ["Nightly | Publish"]),
        ({"original_name": "Nightly | Publish"}, ["Nightly | Publish"]),
    ],
    ids=["no-filter", "company", "other-company", "scheduled-handle", "handle-with-pipe", "original-name"],
)
def test_it_filters_active_jobs(ips_emulator, filters, expected):
    client = as_user(ips_emulator, SERVICE)
    client.execute_job("47", MY_JOB)
    client.execute_job("47", NIGHTLY)

    active = client.get_active_jobs(**filters)

    assert sorted(a.original_name for a in active) == expected


def test_it_lists_job_logs(client, api):
    version, _ = api
    logs = client.get_job_logs("47")

    assert all(isinstance(log, ips.JobLog) for log in logs)
    assert [log.job_handle for log in logs] == [  # newest first
        "47||Nightly | Publish_2026-11-28-02:30:00",
        MY_JOB_LOG,
        "47||My Test Job_2026-11-27-00:00:00",
    ]
    log = by_handle(logs)[MY_JOB_LOG]
    assert log.company_handle == "47"
    assert log.job_name == "My Test Job_2026-11-28-00:00:00"
    assert log.submit_user_email == "ipsadmin@example.com"
    assert log.log_type == "ImageServingPublishSuccess"
    assert log.start_date == dt.datetime(2026, 11, 28, 0, 0, tzinfo=PST)
    assert log.fatal_error is False
    for value in (log.file_success_count, log.file_error_count, log.file_warning_count):
        assert_int(value)
    assert (log.file_success_count, log.file_error_count, log.file_warning_count) == (4, 0, 0)
    assert log.details == []  # getJobLogs carries no detailArray
    # In every version: totalFileCount, and the duplicate and update counts (before 4.0,
    # getJobLogs says 0 for both: only getJobLogDetails fills them).
    assert (log.total_file_count, log.file_duplicate_count, log.file_update_count) == (4, 0, 0)
    added_in_4_0 = {
        "original_job_name": "My Test Job",
        "job_sub_type": "full",
        "description": "The job from the executeJob reference example",
        "detail_total_rows": 9,
        "transfer_success_count": 4,  # 4.4
        "transfer_error_count": 0,
        "transfer_warning_count": 0,
    }
    got = {name: getattr(log, name) for name in added_in_4_0}
    if version:
        assert got == added_in_4_0
        for name in added_in_4_0:
            if name.endswith(("_count", "_rows")):
                assert_int(got[name])
        assert_aware(log.end_date)
        assert log.end_date > log.start_date
        assert log.is_final
    else:
        assert got == dict.fromkeys(added_in_4_0)
        assert log.end_date is None  # pre-4.0 getJobLogs leaves endDate out
        assert not log.is_final


def test_it_reads_the_job_sub_type_of_image_serving_publish_logs_only(client, api):
    version, _ = api

    logs = client.get_job_logs()  # companies 47 and 48

    sub_types = {log.job_name: log.job_sub_type for log in logs}
    expected = {
        "Nightly | Publish_2026-11-28-02:30:00": "increment",  # publishType Incremental
        "My Test Job_2026-11-28-00:00:00": "full",
        "My Test Job_2026-11-27-00:00:00": "full",
        "Menü Bilder Upload_2026-11-28-05:45:00": None,  # an upload has no sub type
    }
    assert sub_types == (expected if version else dict.fromkeys(expected))


def test_it_passes_job_log_filters(ips_emulator):
    client = as_user(ips_emulator, SERVICE)

    one = client.get_job_logs("47", sort_by="StartDate", sort_direction="Ascending", num_rows=1)
    by_name = client.get_job_logs("47", sort_by="JobName", sort_direction="Descending")
    late = client.get_job_logs("47", start_date=dt.datetime(2026, 11, 28, 0, 0, tzinfo=PST))
    early = client.get_job_logs("47", end_date=dt.datetime(2026, 11, 27, 12, 0, tzinfo=PST))
    everywhere = client.get_job_logs()

    assert len(one) == 1 and one[0].start_date == dt.datetime(2026, 11, 27, 0, 0, tzinfo=PST)
    assert [log.job_name for log in by_name] == [
        "Nightly | Publish_2026-11-28-02:30:00",
        "My Test Job_2026-11-28-00:00:00",
        "My Test Job_2026-11-27-00:00:00",
    ]
    assert sorted(log.job_name for log in late) == [
        "My Test Job_2026-11-28-00:00:00",
        "Nightly | Publish_2026-11-28-02:30:00",
    ]
    assert [log.start_date for log in early] == [dt.datetime(2026, 11, 27, 0, 0, tzinfo=PST)]
    assert {log.company_handle for log in everywhere} == {"47", "48"}


def test_it_pages_a_busy_companys_logs_by_start_date_window(ips_emulator, api):
    version, remote = api
    client = as_user(ips_emulator, "busy@example.com", api_version=version, remote_wsdl=remote)

    def job_of(log):  # originalJobName is 4.0+: the run's name is "<job>_<start>"
        return log.job_name.rpartition("_")[0]

    newest = client.get_job_logs("60", num_rows=50)
    assert len(newest) == 50
    assert [log.start_date for log in newest] == sorted((log.start_date for log in newest), reverse=True)
    assert "Quarterly Archive" not in {job_of(log) for log in newest}

    # Page back: each window ends at the oldest start of the page before
    # (inclusive, as runs can share a start), until a page brings nothing new.
    seen: dict[str, ips.JobLog] = {}
    end = None
    for _ in range(10):
        page = client.get_job_logs(
            "60", sort_by="StartDate", sort_direction="Descending", end_date=end, num_rows=50
        )
        new = {log.job_handle: log for log in page if log.job_handle not in seen}
        if not new:
            break
        seen.update(new)
        end = page[-1].start_date
    assert len(seen) == 140
    counts = {}
    for log in seen.values():
        counts[job_of(log)] = counts.get(job_of(log), 0) + 1
    assert counts == {
        "Feed Upload": 60,
        "Catalog Publish": 40,
        "Render Previews": 24,
        "Video Encode Sync": 12,
        "Quarterly Archive": 4,
    }

    # A startDate/endDate window finds the old runs directly.
    now = ips_emulator.state.now()
    window = client.get_job_logs("60", start_date=now - dt.timedelta(days=30), end_date=now - dt.timedelta(days=1))
    starts = sorted(log.start_date for log in window)
    assert {job_of(log) for log in window} == {"Quarterly Archive"}
    assert [b - a for a, b in zip(starts, starts[1:])] == [dt.timedelta(days=7)] * 3


def test_it_reads_job_log_details(client, api):
    version, _ = api
    logs = client.get_job_log_details("47", job_handle=MY_JOB)

    assert [log.job_handle for log in logs] == [MY_JOB_LOG, "47||My Test Job_2026-11-27-00:00:00"]
    log = logs[0]
    assert isinstance(log, ips.JobLog)
    assert log.is_final  # getJobLogDetails fills endDate in every version
    assert log.end_date > log.start_date
    assert all(isinstance(d, ips.JobLogDetail) for d in log.details)
    assert all(isinstance(d.log_message, str) for d in log.details)
    assert [d.log_type for d in log.details] == [
        "BeginImageServingPublish",
        "OriginalJobName",
        "JobClient",
        "TotalFileCount",
        *["ImageServingPublishSuccess"] * 4,
        "EndImageServingPublish",
    ]
    assets = [d for d in log.details if d.asset_name]
    assert [d.asset_name for d in assets] == ["asset-001.jpg", "asset-002.jpg", "asset-003.jpg", "asset-004.jpg"]
    assert {d.asset_type for d in assets} == {"Image"}
    if not version:
        # No originalJobName, detailTotalRows (4.0), assetHandle (4.0) or auxArray (4.5).
        assert (log.original_job_name, log.detail_total_rows) == (None, None)
        assert all(d.asset_handle is None and d.aux == [] for d in log.details)
        return
    assert log.original_job_name == "My Test Job"
    assert log.detail_total_rows == len(log.details) == 9
    assert all(isinstance(d.asset_handle, str) and d.asset_handle for d in assets)
    for d in assets:
        (aux,) = d.aux
        assert isinstance(aux, ips.JobLogDetailAux)
        assert aux.log_message == f"Stored as DemoCompany/{d.asset_name}"
        assert aux.log_type == "ImageServingPublishSuccess"
        assert_aware(aux.date_created)
        assert log.start_date < aux.date_created <= log.end_date
    assert all(d.aux == [] for d in log.details if not d.asset_name)


@only_2014
def test_it_passes_job_log_detail_filters(client, api):
    version, _ = api

    only_names = client.get_job_log_details("47", original_name="My Test Job", log_types=["OriginalJobName"])
    paged = client.get_job_log_details(
        "47", job_handle=MY_JOB, records_per_page=2, results_page=2, sort_by="LogType",
        sort_direction="Descending",
    )

    assert len(only_names) == 2
    for log in only_names:
        assert [(d.log_type, d.log_message) for d in log.details] == [("OriginalJobName", "My Test Job")]
        assert log.detail_total_rows == 1
    assert len(paged) == 2
    for log in paged:
        # Descending by type: TotalFileCount, OriginalJobName | JobClient, the newest success | ...
        assert [d.log_type for d in log.details] == ["JobClient", "ImageServingPublishSuccess"]
        assert log.detail_total_rows == 9  # all rows, not the page's


@only_unversioned
def test_it_sends_no_job_log_detail_filter_its_version_does_not_declare(ips_emulator, client, api):
    # The unversioned getJobLogDetailsParam: companyHandle, jobHandle, originalName, nothing else.
    assert [p for p in ("companyHandle", "jobHandle", "originalName", "recordsPerPage", "logTypeArray")
            if client.declares("getJobLogDetails", p)] == ["companyHandle", "jobHandle", "originalName"]
    with pytest.raises(ips.IpsError, match="has no parameter recordsPerPage; nothing was sent"):
        client.get_job_log_details("47", job_handle=MY_JOB, records_per_page=2)
    assert ips_emulator.state.calls == []


def test_it_round_trips_markup_and_non_ascii_asset_names_in_details(ips_emulator, clock):
    client = as_user(ips_emulator, SERVICE)
    client.execute_job("47", BOLD)
    clock.advance(RUN_SECONDS)

    (log,) = client.get_job_log_details("47", job_handle=BOLD)

    assert log.is_final
    names = [d.asset_name for d in log.details if d.asset_name]
    assert names == ["logo<1>.png", "banner&co.jpg", "hero.jpg"]


def test_it_pauses_and_resumes_a_job(client):
    assert client.pause_job("47", NIGHTLY) is None
    assert client.get_scheduled_jobs("47", job_handle=NIGHTLY)[0].trigger_state == "Paused"

    assert client.resume_job("47", NIGHTLY) is None
    assert client.get_scheduled_jobs("47", job_handle=NIGHTLY)[0].trigger_state == "Normal"


def test_it_stops_a_running_job(client, api, clock):
    version, _ = api
    client.execute_job("47", MY_JOB)
    clock.advance(RUN_SECONDS / 2)

    assert client.stop_job("47", MY_JOB) is None

    (run,) = client.get_active_jobs("47", job_handle=MY_JOB)
    assert run.state == "Stopping"
    assert run.progress_message == f"Stopping (requested by {SERVICE})"
    clock.advance(RUN_SECONDS / 10)  # stopping takes a tenth of the duration
    (run,) = client.get_active_jobs("47", job_handle=MY_JOB)
    assert (run.state, run.progress) == ("Done", 50)
    (log,) = client.get_job_log_details("47", job_handle=run.job_handle)
    assert log.is_final
    assert log.log_type == "EndImageServingPublish"
    assert log.file_success_count == 2  # the files processed until the stop
    assert log.description == (f"Stopped by {SERVICE}" if version else None)


def test_it_deletes_a_job(client):
    assert client.delete_job("47", VIDEO) is None

    assert VIDEO not in by_handle(client.get_scheduled_jobs("47"))
    assert client.get_scheduled_jobs("47", job_handle=VIDEO) == []


def test_it_runs_a_job_through_its_whole_lifecycle(client, clock):
    client.execute_job("47", MY_JOB)
    steps = []
    for seconds in (0, RUN_SECONDS / 2, RUN_SECONDS / 2):
        clock.advance(seconds)
        (run,) = client.get_active_jobs("47", job_handle=MY_JOB)
        steps.append((run.state, run.progress, run.last_progress_update - run.start_date))

    assert steps == [
        ("New", 0, dt.timedelta(0)),
        ("Running", 50, dt.timedelta(seconds=RUN_SECONDS / 2)),
        ("Done", 100, dt.timedelta(seconds=RUN_SECONDS)),
    ]
    clock.advance(RUN_SECONDS / 4)  # listed as Done for a quarter of the duration
    assert client.get_active_jobs("47", job_handle=MY_JOB) == []
    (log,) = client.get_job_log_details("47", job_handle=run.job_handle)
    assert (log.job_name, log.submit_user_email) == (run.name, SERVICE)
    assert log.is_final
    assert log.end_date == run.start_date + dt.timedelta(seconds=RUN_SECONDS)
    assert [d.log_type for d in log.details].count("ImageServingPublishSuccess") == 4


def test_it_reads_a_running_runs_log_with_partial_counts(client, api, clock):
    version, _ = api
    client.execute_job("47", MY_JOB)
    (run,) = client.get_active_jobs("47", job_handle=MY_JOB)

    at_start = log_of(client, run)  # the log exists from the run's start
    clock.advance(RUN_SECONDS / 2)
    halfway = log_of(client, run)
    (detailed,) = client.get_job_log_details("47", job_handle=run.job_handle)

    for log in (at_start, halfway, detailed):
        assert log.job_name == run.name
        assert log.start_date == run.start_date
        assert log.log_type == "BeginImageServingPublish"
        assert log.end_date is None and not log.is_final
        assert log.fatal_error is False
        assert log.total_file_count == 0  # 0 until the log is final
        assert log.original_job_name == ("My Test Job" if version else None)
    assert at_start.file_success_count == 0
    assert (halfway.file_success_count, halfway.file_error_count, halfway.file_warning_count) == (2, 0, 0)
    assert detailed.file_success_count == 2
    assert [d.log_type for d in detailed.details] == [
        "BeginImageServingPublish",
        "OriginalJobName",
        "JobClient",
        "TotalFileCount",
        "ImageServingPublishSuccess",
        "ImageServingPublishSuccess",
    ]


def test_it_reads_the_final_log_when_the_run_ends(client, api, clock):
    version, _ = api
    client.execute_job("47", MY_JOB)
    (run,) = client.get_active_jobs("47", job_handle=MY_JOB)
    clock.advance(RUN_SECONDS)

    listed = log_of(client, run)
    (detailed,) = client.get_job_log_details("47", job_handle=run.job_handle)

    end = run.start_date + dt.timedelta(seconds=RUN_SECONDS)
    assert detailed.is_final and detailed.end_date == end
    for log in (listed, detailed):
        assert log.log_type == "ImageServingPublishSuccess"
        assert (log.file_success_count, log.file_error_count, log.file_warning_count) == (4, 0, 0)
        assert log.total_file_count == 4
    assert detailed.details[-1].log_type == "EndImageServingPublish"
    if version:
        assert listed.is_final and listed.end_date == end
    else:
        # Before 4.0 getJobLogs leaves endDate out: final only as getJobLogDetails reads it.
        assert listed.end_date is None and not listed.is_final


def test_it_runs_a_job_whose_name_has_a_pipe_markup_and_non_ascii(ips_emulator, api, client, clock):
    version, _ = api
    name = "Ünïcødé | <b>Bold</b> & 日本語 > done"
    handle = f"47|{name}|"
    # The emulator has no public way to add a job: put one in its (reset) data.
    ips_emulator.state.jobs[handle] = EmulatorJob(
        company="47", handle=handle, name=name, type="UrlUpload", description=f"<i>{name}</i>"
    )

    (scheduled,) = client.get_scheduled_jobs("47", job_handle=handle)
    assert (scheduled.job_handle, scheduled.name) == (handle, name)
    assert scheduled.description == (f"<i>{name}</i>" if version else None)
    client.execute_job("47", handle)
    (run,) = client.get_active_jobs("47", original_name=name)
    assert run.original_name == name
    assert run.job_handle.startswith(f"47||{name}_")

    clock.advance(RUN_SECONDS)
    (log,) = client.get_job_log_details("47", job_handle=run.job_handle)
    assert log.is_final
    assert log.job_name == run.name
    assert log.original_job_name == (name if version else None)
    assert ("OriginalJobName", name) in [(d.log_type, d.log_message) for d in log.details]


# ---------------------------------------------------- results: the account


def test_it_checks_a_valid_login(client):
    assert client.check_login(SERVICE, DEMO_PASSWORD) is True
    assert client.check_login("ipsuser@example.com", DEMO_PASSWORD, company_handle="47") is True


@pytest.mark.parametrize(
    "email, password, company",
    [
        (SERVICE, "not-the-password", None),
        ("nobody@example.com", DEMO_PASSWORD, None),
        ("ipsuser@example.com", DEMO_PASSWORD, "52"),  # not a member there
    ],
    ids=["wrong-password", "unknown-user", "not-a-member"],
)
def test_it_checks_an_invalid_login(client, email, password, company):
    assert client.check_login(email, password, company_handle=company) is False


@pytest.mark.parametrize(
    "kwargs",
    [{"company_handle": "48"}, {"company_name": "Café Zürich"}],
    ids=["by-handle", "by-name"],
)
def test_it_reads_company_info(client, kwargs):
    info = client.get_company_info(**kwargs)

    assert isinstance(info, ips.CompanyInfo)
    assert info.company_handle == "48"
    assert info.name == "Café Zürich"
    assert info.root_path == "CafeZurich/"
    assert_aware(info.expires)
    assert info.expires == dt.datetime(2029, 6, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def test_it_reads_the_callers_user_info(client, api, replies):
    version, _ = api

    info = client.get_user_info()

    assert isinstance(info, ips.UserInfo)
    assert info.email == SERVICE
    assert info.first_name == "Service"
    assert info.last_name == "Account"
    assert info.default_role == "IpsUser"
    assert info.is_valid is True
    assert isinstance(info.user_handle, str) and info.user_handle
    # ``role`` until 6.0, ``defaultRole`` since: default_role reads whichever came.
    (reply,) = replies
    names = element_names(reply) & {"role", "defaultRole"}
    assert names == ({"defaultRole"} if version else {"role"})


def test_it_reads_another_users_info_by_email_and_handle(ips_emulator, api):
    version, remote = api
    admin = as_user(ips_emulator, "ipsadmin@example.com", api_version=version, remote_wsdl=remote)

    by_email = admin.get_user_info(email="imageportalcontribuser@example.com")
    again = admin.get_user_info(by_email.user_handle)

    assert by_email.first_name == "Zoë"
    assert by_email.default_role == "ImagePortalContribUser"
    assert again == by_email


def test_it_reads_company_memberships(client, api, replies):
    version, _ = api

    memberships = client.get_company_membership()

    assert all(isinstance(m, ips.CompanyMembership) for m in memberships)
    assert all(isinstance(m.company, ips.CompanyInfo) for m in memberships)
    # Before 6.0: a companyArray of Company, no role per company (the user's one role applies).
    role = "IpsUser" if version else None
    assert sorted((m.company.company_handle, m.role, m.is_active) for m in memberships) == [
        ("47", role, True),
        ("48", role, True),
        ("52", role, True),
    ]
    names = {m.company.company_handle: m.company.name for m in memberships}
    assert names["52"] == "Nordlicht & Søn"
    assert all(m.company.expires.tzinfo is not None for m in memberships)
    (reply,) = replies
    arrays = element_names(reply) & {"companyArray", "membershipArray"}
    assert arrays == ({"membershipArray"} if version else {"companyArray"})


def test_it_reads_an_inactive_membership(ips_emulator, api):
    version, remote = api
    admin = as_user(ips_emulator, "ipsadmin@example.com", api_version=version, remote_wsdl=remote)
    handle = admin.get_user_info(email="ipsuser@example.com").user_handle

    memberships = admin.get_company_membership(handle)

    rows = sorted((m.company.company_handle, m.role, m.is_active) for m in memberships)
    if version:
        assert rows == [("47", "IpsUser", True), ("48", "IpsUser", False)]
    else:
        # A pre-6.0 companyArray has no isActive: it lists only the companies
        # the user may work in, each read as active with no role of its own.
        assert rows == [("47", None, True)]


# ------------------------------------------------------ versions and WSDLs


def test_it_speaks_the_namespace_of_its_api_version(ips_emulator, api, client):
    version, _ = api

    client.get_scheduled_jobs("47", job_handle=MY_JOB)
    client.execute_job("47", MY_JOB)

    calls = ips_emulator.state.calls
    assert [c["operation"] for c in calls] == ["getScheduledJobs", "executeJob"]
    assert {c["namespace"] for c in calls} == {BODY_NAMESPACE[version]}
    assert calls[1]["job_handle"] == MY_JOB
    assert calls[1]["company_handle"] == "47"


def test_it_refuses_an_api_version_without_a_bundled_wsdl(ips_emulator):
    with pytest.raises(ips.IpsError, match="No bundled WSDL"):
        ips.get_client(make_endpoint(ips_emulator, api_version="2010-01-31"))


def test_it_reports_an_unreachable_wsdl_as_unavailable(ips_emulator):
    url = f"http://127.0.0.1:{closed_port()}/scene7/webservice/IpsApi.wsdl"
    endpoint = ips.Endpoint(service_url=ips_emulator.service_url, user=SERVICE, password=SECRET, wsdl_url=url)

    with pytest.raises(ips.IpsUnavailable) as info:
        ips.IpsClient(endpoint)

    assert info.value.request_sent is False
    assert_secret_absent(info.value, SECRET)


def test_it_parses_each_wsdl_once_per_process(ips_emulator, api, monkeypatch):
    version, remote = api
    first = as_user(ips_emulator, SERVICE, api_version=version, remote_wsdl=remote)
    first.get_scheduled_jobs("47")
    parses = ips.stats["wsdl_parses"]
    # Count zeep's WSDL documents too, not only the module's own counter.
    documents = []
    real_init = zeep.wsdl.Document.__init__

    def counting_init(self, *args, **kwargs):
        documents.append(args[0] if args else kwargs.get("location"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zeep.wsdl.Document, "__init__", counting_init)

    for n in range(5):
        ips.clear_clients()
        ips.get_client(make_endpoint(ips_emulator, api_version=version, remote_wsdl=remote))
    clients = [
        ips.get_client(make_endpoint(ips_emulator, user, api_version=version, remote_wsdl=remote,
                                     read_timeout=4.0 + n))
        for n, user in enumerate(["ipsuser@example.com", "ipsadmin@example.com", SERVICE])
    ]
    clients.append(ips.IpsClient(make_endpoint(ips_emulator, api_version=version, remote_wsdl=remote,
                                               app_name="other")))
    for c in clients:
        for _ in range(3):
            c.get_scheduled_jobs("47", job_handle=MY_JOB)
            c.get_user_info()

    assert ips.stats["wsdl_parses"] == parses
    assert documents == []


def test_it_returns_the_same_client_for_equal_endpoints(ips_emulator):
    a = ips.get_client(make_endpoint(ips_emulator))
    b = ips.get_client(make_endpoint(ips_emulator))
    other_password = ips.get_client(make_endpoint(ips_emulator, password="other"))
    other_timeout = ips.get_client(make_endpoint(ips_emulator, read_timeout=1.0))
    other_version = ips.get_client(make_endpoint(ips_emulator, api_version="2014-04-03"))

    assert a is b
    assert len({id(a), id(other_password), id(other_timeout), id(other_version)}) == 4
    assert other_timeout.endpoint.read_timeout == 1.0
    ips.clear_clients()
    assert ips.get_client(make_endpoint(ips_emulator)) is not a


def _unsaved_connection(emulator, **fields) -> Connection:
    # Never saved: client_for reads only the connection's fields and the settings.
    c = Connection(name="Emulator", region=Connection.Region.CUSTOM, service_url=emulator.service_url,
                   username=SERVICE, **fields)
    c.set_password(DEMO_PASSWORD)
    return c


def test_client_for_a_connection_is_the_cached_client_of_its_endpoint(ips_emulator, settings):
    settings.IPS_READ_TIMEOUT = 4.5
    settings.IPS_APP_NAME = "ipsadmin-tests"
    conn = _unsaved_connection(ips_emulator, api_version="2014-04-03")
    expected = ips.Endpoint(
        service_url=ips_emulator.service_url,
        user=SERVICE,
        password=DEMO_PASSWORD,
        api_version="2014-04-03",
        wsdl_url="",
        connect_timeout=settings.IPS_CONNECT_TIMEOUT,
        read_timeout=4.5,
        app_name="ipsadmin-tests",
        app_version=settings.IPS_APP_VERSION,
    )

    client = ips.client_for(conn)

    assert ips.endpoint_for(conn) == expected
    assert client is ips.get_client(expected)
    assert client is ips.client_for(conn)
    assert client.get_user_info().email == SERVICE


def test_client_for_a_connection_whose_password_cannot_be_decrypted_is_an_ips_error(ips_emulator, settings):
    settings.IPSADMIN_ENCRYPTION_KEY = Fernet.generate_key().decode()
    conn = _unsaved_connection(ips_emulator)
    settings.IPSADMIN_ENCRYPTION_KEY = Fernet.generate_key().decode()

    with pytest.raises(ImproperlyConfigured) as cause:
        ips.endpoint_for(conn)
    with pytest.raises(ips.IpsError) as info:
        ips.client_for(conn)

    assert str(info.value) == f"connection “Emulator”: {cause.value}"
    assert "cannot be decrypted" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ------------------------------------------------------------ authHeader


def test_it_sends_an_auth_header_with_app_name_and_version_on_every_call(ips_emulator, api, wire):
    version, remote = api
    client = ips.get_client(
        make_endpoint(ips_emulator, api_version=version, remote_wsdl=remote,
                      app_name="ipsadmin-tests", app_version="1.2.3")
    )

    operations = exercise_every_operation(client)

    assert [c["operation"] for c in ips_emulator.state.calls] == operations
    assert all(c["user"] == SERVICE for c in ips_emulator.state.calls)
    assert len(wire) == len(operations)
    for body, operation in zip(wire, operations):
        envelope = etree.fromstring(body)
        (header,) = envelope.findall(f"{{{SOAP_ENV}}}Header/{{{ips.IPS_NS}}}authHeader")
        fields = [(etree.QName(c).localname, c.text) for c in header]
        names = [n for n, _ in fields]
        assert names[:2] == ["user", "password"], operation
        assert names[2:] in (["appName", "appVersion"], ["locale", "appName", "appVersion"]), operation
        values = dict(fields)
        assert values["user"] == SERVICE
        assert values["password"] == DEMO_PASSWORD
        assert values["appName"] == "ipsadmin-tests"
        assert values["appVersion"] == "1.2.3"
        (param,) = envelope.find(f"{{{SOAP_ENV}}}Body")
        assert param.tag == f"{{{BODY_NAMESPACE[version]}}}{operation}Param"


def test_it_sends_the_locale_when_set(ips_emulator, wire):
    client = ips.get_client(make_endpoint(ips_emulator, locale="de_DE"))

    client.get_user_info()

    header = etree.fromstring(wire[-1]).find(f"{{{SOAP_ENV}}}Header/{{{ips.IPS_NS}}}authHeader")
    assert [etree.QName(c).localname for c in header] == ["user", "password", "locale", "appName", "appVersion"]
    assert header.find(f"{{{ips.IPS_NS}}}locale").text == "de_DE"


# --------------------------------------------------------------- faults


def assert_fault(exc, cls, family, code, operation):
    assert type(exc) is cls
    assert isinstance(exc, ips.IpsFault) and isinstance(exc, ips.IpsError)
    assert exc.family == family
    assert exc.code == code
    assert isinstance(exc.code, int)
    assert isinstance(exc.reason, str) and exc.reason
    assert exc.operation == operation
    assert str(code) in str(exc)
    assert ips.FAULT_NAMES[code] in str(exc)


@pytest.mark.parametrize(
    "user, code",
    [(SERVICE, 10001), ("nobody@example.com", 10002)],
    ids=["wrong-password", "unknown-user"],
)
def test_it_maps_authentication_faults(ips_emulator, api, user, code):
    version, remote = api
    client = as_user(ips_emulator, user, SECRET, api_version=version, remote_wsdl=remote)

    with pytest.raises(ips.IpsAuthenticationFault) as info:
        client.get_scheduled_jobs("47")

    assert_fault(info.value, ips.IpsAuthenticationFault, "authenticationFault", code, "getScheduledJobs")
    assert user in info.value.reason
    assert info.value.fault_string == "AuthenticationException"
    assert_secret_absent(info.value, SECRET)


@pytest.mark.parametrize(
    "user, call, code",
    [
        ("webserviceuser@example.com", lambda c: c.get_scheduled_jobs("47"), 20003),
        ("webserviceuser@example.com", lambda c: c.get_user_info(), 20003),
        ("ipscompanyadmin@example.com", lambda c: c.execute_job("47", MY_JOB), 20003),
        ("imageportaluser@example.com", lambda c: c.get_active_jobs("47"), 20003),
        ("ipsuser@example.com", lambda c: c.get_scheduled_jobs("48"), 20006),  # inactive member
        ("ipsuser@example.com", lambda c: c.execute_job("52", "52|Weekly Cleanup|"), 20006),  # no member
        (SERVICE, lambda c: c.get_scheduled_jobs("999"), 20000),
        (SERVICE, lambda c: c.get_company_info(company_name="No Such Company"), 20000),
        (SERVICE, lambda c: c.get_user_info(email="ipsadmin@example.com"), 20007),
    ],
    ids=[
        "webserviceuser-lists-jobs",
        "webserviceuser-reads-itself",
        "companyadmin-executes",
        "portaluser-lists-active",
        "inactive-member",
        "not-a-member",
        "unknown-company",
        "unknown-company-name",
        "other-user",
    ],
)
def test_it_maps_authorization_faults(ips_emulator, user, call, code):
    client = as_user(ips_emulator, user)

    with pytest.raises(ips.IpsAuthorizationFault) as info:
        call(client)

    assert info.value.family == "authorizationFault"
    assert info.value.code == code
    assert info.value.fault_string == "AuthorizationException"
    assert str(code) in str(info.value)


def test_it_maps_a_refused_operation_like_the_reference_example(ips_emulator):
    client = as_user(ips_emulator, "webserviceuser@example.com")

    with pytest.raises(ips.IpsAuthorizationFault) as info:
        client.execute_job("47", MY_JOB)

    assert_fault(info.value, ips.IpsAuthorizationFault, "authorizationFault", 20003, "executeJob")
    assert "executeJob" in info.value.reason
    assert "20003 NO_OPERATION_PERMISSION" in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.execute_job("47", "47|No Such Job|"),
        lambda c: c.pause_job("47", "47|No Such Job|"),
        lambda c: c.delete_job("47", "48|Metadaten Import|"),  # another company's job
        lambda c: c.stop_job("47", MY_JOB),  # not running
        lambda c: c.get_job_logs("47", sort_by="Nonsense"),
    ],
    ids=["execute-unknown", "pause-unknown", "other-company", "stop-not-running", "bad-sort"],
)
def test_it_maps_invalid_parameters_to_api_faults(client, call):
    with pytest.raises(ips.IpsApiFault) as info:
        call(client)

    assert info.value.family == "ipsApiFault"
    assert info.value.code == 30001
    assert "30001 INVALID_PARAMETER" in str(info.value)


def test_it_maps_an_unknown_job_handle_to_api_fault_30001(client):
    with pytest.raises(ips.IpsApiFault) as info:
        client.execute_job("47", "47|No Such Job|")

    assert_fault(info.value, ips.IpsApiFault, "ipsApiFault", 30001, "executeJob")
    assert "47|No Such Job|" in info.value.reason


def test_it_maps_executing_a_running_job_to_api_fault_30001(client):
    client.execute_job("47", MY_JOB)

    with pytest.raises(ips.IpsApiFault) as info:
        client.execute_job("47", MY_JOB)

    assert info.value.code == 30001
    assert "already running" in info.value.reason


@pytest.mark.parametrize(
    "call, operation",
    [
        (lambda c: c.get_company_info(), "getCompanyInfo"),
        (lambda c: c.execute_job("47", ""), "executeJob"),
        (lambda c: c.check_login("", ""), "checkLogin"),
    ],
    ids=["company-info-without-handle-or-name", "empty-job-handle", "empty-login"],
)
def test_it_maps_missing_parameters_to_api_fault_30002(client, call, operation):
    with pytest.raises(ips.IpsApiFault) as info:
        call(client)

    assert_fault(info.value, ips.IpsApiFault, "ipsApiFault", 30002, operation)


@pytest.mark.parametrize(
    "family, code, cls",
    [
        ("authenticationFault", 10000, ips.IpsAuthenticationFault),
        ("authorizationFault", 20009, ips.IpsAuthorizationFault),
        ("ipsApiFault", 30000, ips.IpsApiFault),
    ],
)
def test_it_maps_an_injected_fault_of_each_family(ips_emulator, api, family, code, cls):
    version, remote = api
    reason = f"Injected <{family}> – Grüße & co"
    ips_emulator.state.inject("soap_fault", operation="executeJob", fault=family, code=code, reason=reason)
    client = as_user(ips_emulator, SERVICE, api_version=version, remote_wsdl=remote)

    with pytest.raises(cls) as info:
        client.execute_job("47", MY_JOB)

    assert_fault(info.value, cls, family, code, "executeJob")
    assert info.value.reason == reason
    # The injection was used up: the next call succeeds.
    client.execute_job("47", MY_JOB)


def test_it_keeps_an_unknown_fault_code_without_a_name(ips_emulator):
    ips_emulator.state.inject("soap_fault", fault="ipsApiFault", code=39999, reason="Something new")
    client = as_user(ips_emulator, SERVICE)

    with pytest.raises(ips.IpsApiFault) as info:
        client.get_user_info()

    assert info.value.code == 39999
    assert info.value.reason == "Something new"


# ---------------------------------------------------- transport failures


INJECTED_OPERATIONS = pytest.mark.parametrize(
    "operation, call",
    [
        ("getScheduledJobs", lambda c: c.get_scheduled_jobs("47")),
        ("executeJob", lambda c: c.execute_job("47", MY_JOB)),
    ],
    ids=["getScheduledJobs", "executeJob"],
)


@INJECTED_OPERATIONS
def test_it_maps_latency_beyond_the_read_timeout_to_a_timeout(ips_emulator, operation, call):
    ips_emulator.state.inject("latency", operation=operation, seconds=1.5)
    client = as_user(ips_emulator, SERVICE, SECRET, read_timeout=0.3)

    with pytest.raises(ips.IpsTimeout) as info:
        call(client)

    assert info.value.request_sent is True
    assert info.value.whole_reply is False  # a silent read, not a slow whole reply
    assert "0.3" in str(info.value)
    assert "deadline" not in str(info.value)
    assert_secret_absent(info.value, SECRET)


def test_it_tolerates_latency_within_the_read_timeout(ips_emulator):
    ips_emulator.state.inject("latency", operation="getScheduledJobs", seconds=0.2)
    client = as_user(ips_emulator, SERVICE, read_timeout=3.0)

    assert len(client.get_scheduled_jobs("47")) == 5


@pytest.fixture
def trickled(monkeypatch):
    """Sizes of the bodies the emulator trickles out (as sent: gzipped or not)."""
    sizes: list[int] = []
    trickle = emulator_app._trickle

    def spy(body, *args, **kwargs):
        sizes.append(len(body))
        return trickle(body, *args, **kwargs)

    monkeypatch.setattr(emulator_app, "_trickle", spy)
    return sizes


@INJECTED_OPERATIONS
def test_it_gives_up_on_a_trickling_reply_at_the_whole_reply_deadline(ips_emulator, trickled, operation, call):
    # Each byte comes well within the read timeout; the whole reply takes far
    # longer than connect + read timeout, the deadline for a whole reply.
    interval = 0.1
    ips_emulator.state.add_user("trickle@example.com", SECRET, "IpsUser", {"47": "IpsUser"})
    ips_emulator.state.inject("trickle", operation=operation, interval=interval)
    endpoint = ips.Endpoint(
        service_url=ips_emulator.service_url,
        user="trickle@example.com",
        password=SECRET,
        connect_timeout=0.2,
        read_timeout=0.3,
    )
    client = ips.get_client(endpoint)

    started = time.monotonic()
    with pytest.raises(ips.IpsTimeout) as info:
        call(client)
    elapsed = time.monotonic() - started

    (size,) = trickled
    assert elapsed < size * interval  # it did not wait for the whole trickle
    assert info.value.whole_reply is True
    assert info.value.request_sent is True  # the job may have run
    assert "the deadline for a whole reply" in str(info.value)
    assert operation in str(info.value)
    assert_secret_absent(info.value, SECRET)


def test_it_knows_a_trickled_execute_job_ran(ips_emulator):
    ips_emulator.state.inject("trickle", operation="executeJob", interval=0.1)
    client = as_user(ips_emulator, SERVICE, connect_timeout=0.2, read_timeout=0.3)

    with pytest.raises(ips.IpsTimeout) as info:
        client.execute_job("47", MY_JOB)

    assert info.value.whole_reply and info.value.request_sent
    assert [r["state"] for r in ips_emulator.state.active_runs(MY_JOB)] == ["New"]


def test_it_decodes_gzip_replies(ips_emulator, client, monkeypatch):
    encodings = []
    respond = emulator_app.EmulatorApp._soap_response

    def spy(body, status, use_gzip, **kwargs):
        response = respond(body, status, use_gzip, **kwargs)
        encodings.append(dict(response.headers).get("Content-Encoding"))
        return response

    monkeypatch.setattr(emulator_app.EmulatorApp, "_soap_response", staticmethod(spy))

    jobs = client.get_scheduled_jobs("47")
    with pytest.raises(ips.IpsAuthorizationFault) as info:
        client.get_scheduled_jobs("999")

    assert encodings == ["gzip", "gzip"]  # the client accepts gzip; the emulator sends it
    assert by_handle(jobs)[UEBERSICHT].name == "Übersicht Publish"
    assert info.value.code == 20000


@INJECTED_OPERATIONS
def test_it_maps_a_refused_connection_to_unavailable(ips_emulator, operation, call):
    url = f"http://127.0.0.1:{closed_port()}/scene7/services/IpsApiService"
    client = as_user(ips_emulator, SERVICE, SECRET, service_url=url)

    with pytest.raises(ips.IpsUnavailable) as info:
        call(client)

    assert info.value.request_sent is False
    assert "refused" in str(info.value)
    assert_secret_absent(info.value, SECRET)


# Injected broken reply -> exception type, and words its message must have.
INJECTED_BREAKS = {
    "http_500_html": (ips.IpsHttpError, "500"),
    "malformed_xml": (ips.IpsMalformedReply, "invalid XML"),
    "empty_body": (ips.IpsMalformedReply, "not a valid"),
    "drop_connection": (ips.IpsUnavailable, "closed the connection"),
}


@INJECTED_OPERATIONS
@pytest.mark.parametrize("kind", list(INJECTED_BREAKS))
def test_it_maps_a_broken_reply_to_its_type_as_sent(ips_emulator, operation, call, kind):
    if (kind, operation) == ("empty_body", "executeJob"):
        # "Response: None": an empty Body is executeJob's success (test_ips_envelopes.py).
        operation, call = "getActiveJobs", lambda c: c.get_active_jobs("47")
    ips_emulator.state.inject(kind, operation=operation)
    client = as_user(ips_emulator, SERVICE, SECRET)
    error_type, words = INJECTED_BREAKS[kind]

    with pytest.raises(error_type) as info:
        call(client)

    assert type(info.value) is error_type
    assert info.value.request_sent is True  # the job may have run
    assert words in str(info.value)
    assert_secret_absent(info.value, SECRET)


def test_it_recovers_after_an_injected_failure(ips_emulator):
    ips_emulator.state.inject("drop_connection", operation="getScheduledJobs")
    client = as_user(ips_emulator, SERVICE)
    with pytest.raises(ips.IpsUnavailable):
        client.get_scheduled_jobs("47")

    assert len(client.get_scheduled_jobs("47")) == 5


def test_it_maps_injections_matched_by_job_handle(ips_emulator):
    ips_emulator.state.inject("soap_fault", job_handle=NIGHTLY, code=30000, reason="Disk full", times=2)
    client = as_user(ips_emulator, SERVICE)

    client.execute_job("47", MY_JOB)
    for _ in range(2):
        with pytest.raises(ips.IpsApiFault, match="Disk full"):
            client.execute_job("47", NIGHTLY)
    client.execute_job("47", NIGHTLY)


def test_it_maps_a_connect_timeout_to_a_timeout_before_sending(ips_emulator):
    # A listening socket whose accept queue is full: the kernel drops further
    # SYNs, so connecting hangs (real TCP, no emulator involved).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            with socket.socket() as probe:
                probe.settimeout(0.2)
                try:
                    probe.connect(("127.0.0.1", port))
                except (TimeoutError, socket.timeout):
                    pass
                else:
                    pytest.skip("this kernel accepts connections beyond the backlog")
            url = f"http://127.0.0.1:{port}/scene7/services/IpsApiService"
            client = as_user(ips_emulator, SERVICE, SECRET, service_url=url, connect_timeout=0.3, read_timeout=0.3)

            with pytest.raises(ips.IpsTimeout) as info:
                client.execute_job("47", MY_JOB)
        finally:
            for s in fillers:
                s.close()

    assert info.value.request_sent is False
    assert_secret_absent(info.value, SECRET)


def test_it_does_not_blame_ips_for_a_request_it_could_not_build(ips_emulator):
    client = as_user(ips_emulator, SERVICE)

    # jobHandle is required by the WSDL: zeep refuses to build the request.
    with pytest.raises(ips.IpsError) as info:
        client.execute_job("47", None)

    assert ips_emulator.state.calls == []
    assert info.value.request_sent is False
    assert not isinstance(info.value, ips.IpsMalformedReply)


# Replies the emulator cannot produce (it answers or drops, nothing in
# between): a one-shot raw HTTP server that reads the request and answers
# these bytes. The request reached the server, so the job may have run.
BROKEN_REPLIES = {
    "truncated-body": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 1000\r\n\r\n"
        b"<?xml version='1.0'?><soapenv:Envelope"
    ),
    "garbage-status-line": b"garbage\r\n\r\n",
    "broken-gzip": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 10\r\n\r\n0123456789"
    ),
}


@pytest.fixture
def broken_server():
    servers = []

    def serve(reply: bytes) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        servers.append(listener)

        def run():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"Envelope>" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(reply)

        threading.Thread(target=run, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/scene7/services/IpsApiService"

    yield serve
    for listener in servers:
        listener.close()


@pytest.mark.parametrize("reply", BROKEN_REPLIES.values(), ids=BROKEN_REPLIES.keys())
def test_it_knows_the_request_was_sent_when_the_reply_breaks_off(ips_emulator, broken_server, reply):
    client = as_user(ips_emulator, SERVICE, SECRET, service_url=broken_server(reply), read_timeout=2.0)

    with pytest.raises(ips.IpsError) as info:
        client.execute_job("47", MY_JOB)

    assert isinstance(info.value, (ips.IpsUnavailable, ips.IpsMalformedReply))
    assert info.value.request_sent is True
    assert_secret_absent(info.value, SECRET)


# ------------------------------------------------------------ concurrency


def test_it_shares_one_client_and_one_wsdl_between_threads(ips_emulator):
    ips.get_client(make_endpoint(ips_emulator)).get_user_info()
    parses = ips.stats["wsdl_parses"]
    ips.clear_clients()

    def work(n):
        client = ips.get_client(make_endpoint(ips_emulator))
        jobs = client.get_scheduled_jobs("47", job_handle=NIGHTLY)
        return client, [j.name for j in jobs]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(32)))

    assert len({id(client) for client, _ in results}) == 1
    assert all(names == ["Nightly | Publish"] for _, names in results)
    assert ips.stats["wsdl_parses"] == parses


# ------------------------------------------------------ the password


def test_it_keeps_the_password_out_of_reprs(ips_emulator):
    endpoint = make_endpoint(ips_emulator, password=SECRET)
    client = ips.get_client(endpoint)

    for text in (repr(endpoint), str(endpoint), repr(client), str(client), repr(endpoint.cache_key())):
        assert SECRET not in text
    assert SERVICE in repr(client)


@pytest.mark.parametrize("password", ["<&>\"' ]]> ä€😀", "  spaces around  "], ids=["markup-and-unicode", "spaces"])
def test_it_sends_any_password_exactly(ips_emulator, password):
    ips_emulator.state.add_user("odd@example.com", password, "IpsUser", {"47": "IpsUser"})
    client = as_user(ips_emulator, "odd@example.com", password)

    assert client.get_user_info().email == "odd@example.com"
    assert client.check_login("odd@example.com", password) is True
    assert client.check_login("odd@example.com", password.strip() + "x") is False


def _all_loggers_at_debug(caplog):
    """DEBUG everywhere: root, zeep, zeep.transports, urllib3, jobs.ips and
    every other logger that exists by now."""
    caplog.set_level(logging.DEBUG)
    names = {"zeep", "zeep.transports", "zeep.wsdl", "zeep.xsd", "urllib3", "requests", "jobs", "jobs.ips"}
    names |= {n for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    for name in sorted(names):
        caplog.set_level(logging.DEBUG, logger=name)


def _assert_logs_clean(caplog, *secrets):
    assert any(r.levelno == logging.DEBUG for r in caplog.records), "no DEBUG record: the test proves nothing"
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text
    assert "password>" not in text.lower()  # no envelope with a <password> element
    assert f">{DEMO_PASSWORD}<" not in text


def test_it_keeps_the_password_out_of_logs(ips_emulator, caplog):
    ips_emulator.state.add_user("logger@example.com", SECRET, "IpsUser", {"47": "IpsUser"})
    _all_loggers_at_debug(caplog)
    good = ips.get_client(make_endpoint(ips_emulator, "logger@example.com", SECRET))
    demo = ips.get_client(make_endpoint(ips_emulator, SERVICE, DEMO_PASSWORD))
    bad = ips.get_client(make_endpoint(ips_emulator, SERVICE, OTHER_SECRET))

    good.get_scheduled_jobs("47")
    good.execute_job("47", MY_JOB)
    assert good.check_login("logger@example.com", SECRET) is True
    assert demo.get_user_info().email == SERVICE
    with pytest.raises(ips.IpsAuthenticationFault) as info:
        bad.execute_job("47", MY_JOB)

    _assert_logs_clean(caplog, SECRET, OTHER_SECRET)
    assert_secret_absent(info.value, SECRET, OTHER_SECRET)


def test_it_keeps_the_password_out_of_logs_of_failed_calls(ips_emulator, caplog):
    _all_loggers_at_debug(caplog)
    client = ips.get_client(make_endpoint(ips_emulator, SERVICE, SECRET, read_timeout=0.3))
    ips_emulator.state.inject("http_500_html", operation="getScheduledJobs")
    ips_emulator.state.inject("malformed_xml", operation="getScheduledJobs")
    ips_emulator.state.inject("drop_connection", operation="getScheduledJobs")
    ips_emulator.state.inject("latency", operation="getScheduledJobs", seconds=1.0)

    errors = []
    for _ in range(4):
        with pytest.raises(ips.IpsError) as info:
            client.get_scheduled_jobs("47")
        errors.append(info.value)

    assert [type(e) for e in errors] == [ips.IpsHttpError, ips.IpsMalformedReply, ips.IpsUnavailable, ips.IpsTimeout]
    _assert_logs_clean(caplog, SECRET)
    for e in errors:
        assert_secret_absent(e, SECRET)
