"""The IPS door against an odd or hostile IPS: every endpoint's URL checked (not only the
admin's paths), a remote WSDL capped and kept to its origin, numbers from IPS stored
whatever they are, empty void replies, Stop's fallback to the run's handle, and the
SOAP version check at startup."""

from __future__ import annotations

import re
import socket
import tracemalloc

import pytest

from ipsemulator import app as emulator_app
from jobs import checks, ips
from jobs.ips import transport
from jobs.models import CompanyWatch, Connection, Execution
from jobs.services import actions, base, sync

from .conftest import RUN_SECONDS, look, press_run, soap_calls
from .test_deadline import raw_server  # noqa: F401  (the fixture)

MY_JOB = "47|My Test Job|"


@pytest.fixture
def listener():
    """A real listening socket on 127.0.0.1: what connected to it is queued, accepted or not."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def _nothing_arrived(sock) -> bool:
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def _store(connection, **fields):
    # As a row saved before the form checked URLs: the model's save, no form.
    Connection.objects.filter(pk=connection.pk).update(**fields)
    connection.refresh_from_db()


def _two_readings(port: int) -> str:
    # urlsplit reads 127.0.0.1; requests connects to 127.1:port (the address).
    return f"http://127.1:{port}\\@127.0.0.1/scene7/services/IpsApiService"


def test_a_stored_url_that_reads_as_two_hosts_gets_no_sync(listener, company, ips_emulator):
    _store(company.connection, service_url=_two_readings(listener.getsockname()[1]))

    result = sync.sync_company(company)

    assert result.error and "service URL is refused" in str(result.error)
    assert "nothing was sent" in str(result.error)
    assert _nothing_arrived(listener)
    assert ips_emulator.state.calls == []


def test_a_stored_url_that_reads_as_two_hosts_gets_no_run(listener, job, users, ips_emulator):
    _store(job.company.connection, service_url=_two_readings(listener.getsockname()[1]))
    ips_emulator.state.reset()

    execution = press_run(job, users["IpsUser"])

    assert execution.outcome == "error"
    assert "service URL is refused" in execution.message and "Nothing was sent" in execution.message
    assert _nothing_arrived(listener)
    assert ips_emulator.state.calls == []


@pytest.mark.parametrize("field", ["service_url", "wsdl_url"])
def test_a_stored_plain_http_url_elsewhere_gets_no_client(field, connection, listener):
    _store(connection, **{field: f"http://example.com:{listener.getsockname()[1]}/scene7/IpsApi"})

    with pytest.raises(ips.IpsError, match="refused, nothing was sent: Plain http:// is for this machine only"):
        ips.client_for(connection)


def test_password_may_go_to_still_reads_the_url_as_the_http_client_does(connection, listener):
    from jobs.services import people

    assert people.password_may_go_to(connection)
    _store(connection, service_url=_two_readings(listener.getsockname()[1]))
    assert not people.password_may_go_to(connection)


# --- Numbers from IPS --------------------------------------------------------------


def _rewriting(monkeypatch, values: dict[str, str]):
    """The emulator's replies with each named element's text replaced (any prefix)."""
    write = emulator_app.result_envelope

    def rewritten(*args, **kwargs):
        body = write(*args, **kwargs)
        text = body.decode() if isinstance(body, bytes) else body
        for name, value in values.items():
            text = re.sub(rf"(<(?:\w+:)?{name}>)[^<]*(</)", rf"\g<1>{value}\2", text)
        return text.encode() if isinstance(body, bytes) else text

    monkeypatch.setattr(emulator_app, "result_envelope", rewritten)


COUNTS = ["fileSuccessCount", "fileErrorCount", "fileWarningCount", "fileDuplicateCount", "fileUpdateCount",
          "totalFileCount"]


@pytest.mark.parametrize("progress, count, stored_progress, stored_count", [
    ("-1", "-5", 0, 0),
    ("101", "4294967296", 100, 2147483647),
    ("99999999999", "2147483648", 100, 2147483647),
], ids=["negative", "past-int32", "past-int64-progress"])
def test_numbers_out_of_range_are_recorded_clamped(progress, count, stored_progress, stored_count,
                                                    monkeypatch, clock, job, users, ips_emulator):
    execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    _rewriting(monkeypatch, {"progress": progress, **dict.fromkeys(COUNTS, count)})

    clock.advance(RUN_SECONDS / 2)
    look(job.company)  # the watcher reads them: getActiveJobs, getJobLogs
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_state == "Running"
    assert execution.ips_progress == stored_progress
    assert execution.ips_success_count == execution.ips_total_count == stored_count

    clock.advance(RUN_SECONDS)
    assert look(job.company).ended == 1
    execution.refresh_from_db()
    assert execution.ips_ended_at is not None and execution.ips_result  # the result is recorded
    assert execution.ips_success_count == execution.ips_total_count == stored_count
    assert execution.ips_warning_count == execution.ips_error_count == stored_count
    assert execution.ips_duplicate_count == execution.ips_update_count == stored_count


@pytest.mark.parametrize("started, ended", [
    ("2031-01-01T00:00:00.000Z", "2030-12-31T23:59:00.000Z"),  # ends before it starts
], ids=["end-before-start"])
def test_a_run_that_ends_before_it_starts_is_recorded_with_no_negative_runtime(
    started, ended, monkeypatch, clock, job, users, ips_emulator
):
    execution = press_run(job, users["IpsUser"])
    look(job.company)  # named before IPS's dates go odd
    clock.advance(RUN_SECONDS * 2)
    _rewriting(monkeypatch, {"startDate": started, "endDate": ended})
    assert look(job.company).ended == 1
    execution.refresh_from_db()
    assert execution.ips_result and execution.ips_runtime_ms == 0


def test_a_run_dated_in_the_future_does_not_move_the_watchers_place_in_the_logs_past_now(
    monkeypatch, clock, job, ips_emulator
):
    """One reply dates a run years ahead (a bug, a clock set wrong at IPS): the watcher's place in the
    logs (CompanyWatch.log_cursor) stays within IPS's own time, so the runs that follow are still found
    in the logs, even those that start and end between two looks."""
    look(job.company)
    ips_emulator.state.fire_schedule("47|Nightly | Publish|")
    clock.advance(1)
    honest = emulator_app.result_envelope
    _rewriting(monkeypatch, {"startDate": "2031-01-01T00:00:00.000Z"})
    look(job.company)
    monkeypatch.setattr(emulator_app, "result_envelope", honest)
    clock.advance(RUN_SECONDS * 3)
    later = ips_emulator.state.fire_schedule(job.handle)
    clock.advance(RUN_SECONDS * 3)  # over, and gone from getActiveJobs: only the logs know of it
    assert not ips_emulator.state.active_runs()
    look(job.company)
    cursor = CompanyWatch.objects.get(pk=job.company.pk).log_cursor
    rows = list(Execution.objects.filter(ips_run_handle=later))
    assert [r.ips_result for r in rows] == ["ok"], f"log_cursor {cursor:%Y-%m-%d %H:%M:%S}"


@pytest.mark.parametrize("code", [2**31, -(2**31) - 1, 10**20])
def test_a_fault_code_out_of_int32_is_recorded_without_one(code, job, users, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="executeJob", code=code, reason="Odd", fault="ipsApiFault")

    execution = press_run(job, users["IpsUser"])

    assert execution.outcome == "refused", execution.message
    assert execution.fault_code is None
    assert "Odd" in execution.message


def test_a_fault_code_in_int32_is_kept(job, users, ips_emulator):
    ips_emulator.state.inject("soap_fault", operation="executeJob", code=30000, reason="Disk full")

    assert press_run(job, users["IpsUser"]).fault_code == 30000


# --- Stop: the job's handle, else the run's ----------------------------------------


def _stop(job, user):
    access = job.company.access(user, "stopJob")
    return actions.stop_job(job, access, user, base.RequestInfo(request_id="stop-0001")).execution


def _named_run(job, users):
    """A press of Run, its run named by the company's watcher."""
    run = press_run(job, users["IpsUser"])
    look(job.company)
    run.refresh_from_db()
    assert run.ips_run_handle
    return run


def test_stop_sends_the_jobs_handle_once_where_ips_takes_it(clock, job, users, ips_emulator):
    run = _named_run(job, users)
    clock.advance(RUN_SECONDS / 2)

    stop = _stop(job, users["IpsUser"])

    assert stop.outcome == "accepted", stop.message
    assert [c["job_handle"] for c in soap_calls(ips_emulator, "stopJob")] == [MY_JOB]
    assert [r["state"] for r in ips_emulator.state.active_runs(MY_JOB)] == ["Stopping"]
    assert stop.ips_run_handle == run.ips_run_handle


def test_stop_retries_with_the_runs_handle_where_ips_takes_only_that(clock, job, users, ips_emulator):
    run = _named_run(job, users)
    clock.advance(RUN_SECONDS / 2)
    ips_emulator.state.stop_takes_run_handles_only = True

    stop = _stop(job, users["IpsUser"])

    assert stop.outcome == "accepted", stop.message
    assert [c["job_handle"] for c in soap_calls(ips_emulator, "stopJob")] == [MY_JOB, run.ips_run_handle]
    assert [r["state"] for r in ips_emulator.state.active_runs(MY_JOB)] == ["Stopping"]


def test_stop_does_not_retry_another_refusal(clock, job, users, ips_emulator):
    press_run(job, users["IpsUser"])
    clock.advance(RUN_SECONDS / 2)
    ips_emulator.state.inject("soap_fault", operation="stopJob", code=30000, reason="Disk full")

    stop = _stop(job, users["IpsUser"])

    assert stop.outcome == "refused"
    assert len(soap_calls(ips_emulator, "stopJob")) == 1


# --- IPS_SOAP_VERSION at startup ---------------------------------------------------


@pytest.mark.parametrize("value, errors", [("", 0), ("1.2", 0), ("1.1", 1), ("soap12", 1), ("1.3", 1)])
def test_ips_soap_version_is_checked_at_startup(value, errors, settings):
    settings.IPS_SOAP_VERSION = value

    found = checks.ips_soap_version_check()

    assert [e.id for e in found] == ["jobs.E010"] * errors
    assert all(value in e.msg for e in found)


# --- A remote WSDL: capped, no redirect, imports from its own origin only ---------------


def _http(status: str, body: bytes = b"", headers: str = "Content-Type: text/xml\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _client(service_url, **kwargs):
    endpoint = ips.Endpoint(service_url=service_url, user="service@example.com", password="S3cret-pw",
                            connect_timeout=2, read_timeout=5, **kwargs)
    return ips.IpsClient(endpoint)


def test_a_wsdl_gzip_bomb_is_cut_off_at_the_cap_without_the_memory_it_inflates_to(raw_server, ips_emulator):
    bomb = emulator_app.gzip_bomb(ips.IPS_NS, "wsdl", 10 * transport.MAX_REPLY_BYTES)
    reply = _http("200 OK", bomb, "Content-Type: text/xml\r\nContent-Encoding: gzip\r\n")
    server = raw_server(lambda conn, _, stop: conn.sendall(reply))

    tracemalloc.start()
    try:
        with pytest.raises(ips.IpsReplyTooLarge) as info:
            _client(ips_emulator.service_url, wsdl_url=server.url("/IpsApi.wsdl"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert str(info.value) == "The WSDL URL sent a document larger than 20 MB; the dashboard stopped reading it"
    assert info.value.url == server.url("/IpsApi.wsdl")
    assert transport.MAX_REPLY_BYTES < info.value.inflated_bytes <= transport.MAX_REPLY_BYTES + 65536
    assert peak < 1.25 * transport.MAX_REPLY_BYTES, peak
    assert ips_emulator.state.calls == []


def test_a_wsdl_redirect_is_not_followed(raw_server, ips_emulator):
    elsewhere = raw_server(lambda conn, _, stop: conn.sendall(_http("200 OK", b"<x/>")))
    moved = f"HTTP/1.1 302 Found\r\nLocation: {elsewhere.url('/IpsApi.wsdl')}\r\nContent-Length: 0\r\n\r\n".encode()
    server = raw_server(lambda conn, _, stop: conn.sendall(moved))

    with pytest.raises(ips.IpsUnavailable, match="redirect"):
        _client(ips_emulator.service_url, wsdl_url=server.url("/IpsApi.wsdl"))

    assert elsewhere.requests == []


@pytest.mark.parametrize("kind", ["wsdl:import", "xsd:import"])
def test_a_remote_wsdl_imports_nothing_from_another_origin(kind, raw_server, listener, ips_emulator):
    other = f"http://127.0.0.1:{listener.getsockname()[1]}/other"
    if kind == "wsdl:import":
        inner = f'<wsdl:import namespace="urn:other" location="{other}.wsdl"/>'
    else:
        inner = (f'<wsdl:types><xsd:schema targetNamespace="urn:x"><xsd:import namespace="urn:other" '
                 f'schemaLocation="{other}.xsd"/></xsd:schema></wsdl:types>')
    wsdl = ('<?xml version="1.0"?><wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">'
            f"{inner}</wsdl:definitions>").encode()
    server = raw_server(lambda conn, _, stop: conn.sendall(_http("200 OK", wsdl)))

    with pytest.raises(ips.IpsError, match="imports a document from another address"):
        _client(ips_emulator.service_url, wsdl_url=server.url("/IpsApi.wsdl"))

    assert _nothing_arrived(listener)


# --- An empty 2xx answering a void operation ------------------------------------------


@pytest.mark.parametrize("status", ["202 Accepted", "204 No Content", "200 OK"])
@pytest.mark.parametrize("operation", ["execute_job", "stop_job", "pause_job", "resume_job", "delete_job"])
def test_an_empty_2xx_is_a_void_operations_success(operation, status, raw_server):
    server = raw_server(lambda conn, _, stop: conn.sendall(_http(status, headers="")))

    assert getattr(_client(server.url()), operation)("47", MY_JOB) is None
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", ["202 Accepted", "204 No Content"])
def test_an_empty_2xx_is_no_reply_to_another_operation(status, raw_server):
    server = raw_server(lambda conn, _, stop: conn.sendall(_http(status, headers="")))

    with pytest.raises(ips.IpsHttpError, match=f"HTTP {status[:3]}"):
        _client(server.url()).get_active_jobs("47")


def test_an_empty_202_answering_run_is_accepted(raw_server, job, users):
    server = raw_server(lambda conn, request, stop: conn.sendall(
        _http("202 Accepted", headers="") if b"executeJob" in request
        else _http("200 OK", _empty_active_jobs(request))))
    _store(job.company.connection, service_url=server.url())

    execution = press_run(job, users["IpsUser"])

    assert execution.outcome == "accepted", execution.message


def _empty_active_jobs(request) -> bytes:
    ns = re.search(rb'xmlns:\w+="(http://www\.scene7\.com/IpsApi/xsd[^"]*)"', request).group(1).decode()
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            f'<getActiveJobsReturn xmlns="{ns}"/></s:Body></s:Envelope>').encode()
