"""Fault injection as seen on the wire, and the /_emulator/ control endpoints."""

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

from conftest import wait_for
from ipsemulator import server

from .soap import NS, SOAP_ENV, call, envelope, execute, fault, result

JOB = "47|My Test Job|"


def test_latency_delays_only_the_matching_call(ips_emulator, ips_clock):
    # ips_clock: the run executeJob starts stays listed, so active_runs() tells
    # whether executeJob has been executed yet.
    state = ips_emulator.state
    state.inject("latency", operation="executeJob", seconds=0.6)
    timings = {}

    def slow():
        t0 = time.monotonic()
        timings["resp"] = execute(ips_emulator)
        timings["slow"] = time.monotonic() - t0

    thread = threading.Thread(target=slow)
    thread.start()
    # A call is recorded just before its latency starts.
    wait_for(lambda: state.calls, "executeJob to reach the emulator")
    t0 = time.monotonic()
    result(call(ips_emulator, "getUserInfo"), "getUserInfo")
    fast = time.monotonic() - t0
    assert state.active_runs() == []  # served meanwhile: executeJob is still in its latency
    thread.join()
    result(timings["resp"], "executeJob")  # then answers normally
    assert [r["job_handle"] for r in state.active_runs()] == [JOB]
    assert timings["slow"] >= 0.6
    assert fast < 0.5
    assert [(c["operation"], c["injected"]) for c in state.calls] == [
        ("executeJob", "latency"), ("getUserInfo", None)]


def test_soap_fault_has_the_chosen_family_code_and_reason(ips_emulator):
    ips_emulator.state.inject("soap_fault", job_handle=JOB, code=20003,
                              reason="Nope, not you")
    f = fault(execute(ips_emulator))
    assert f == {"status": 500, "faultcode": "soapenv:Client", "faultstring": "AuthorizationException",
                 "family": "authorizationFault", "family_ns": NS, "code": 20003,
                 "reason": "Nope, not you"}
    result(execute(ips_emulator), "executeJob")  # consumed once


def test_soap_fault_family_may_be_named(ips_emulator):
    ips_emulator.state.inject("soap_fault", code=30000, fault="ipsApiFault", reason="Server exploded")
    f = fault(call(ips_emulator, "getUserInfo"))
    assert (f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        "soapenv:Server", "IpsApiException", "ipsApiFault", 30000)


def test_http_500_html(ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="executeJob")
    resp = execute(ips_emulator)
    assert resp.status_code == 500
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")


def test_malformed_xml(ips_emulator):
    ips_emulator.state.inject("malformed_xml")
    resp = execute(ips_emulator)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(resp.content)


def test_empty_body(ips_emulator):
    ips_emulator.state.inject("empty_body", operation="executeJob")
    resp = execute(ips_emulator)
    assert resp.status_code == 200
    root = etree.fromstring(resp.content)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None and len(body) == 0
    assert ips_emulator.state.active_runs() == []  # nothing was executed


def test_drop_connection_with_requests(ips_emulator):
    ips_emulator.state.inject("drop_connection", operation="executeJob")
    with pytest.raises(requests.exceptions.ConnectionError):
        execute(ips_emulator)
    result(execute(ips_emulator), "executeJob")  # the server is fine afterwards


def test_drop_connection_sends_nothing(ips_emulator):
    ips_emulator.state.inject("drop_connection")
    u = urlsplit(ips_emulator.base_url)
    body = envelope("getUserInfo")
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"POST /scene7/services/IpsApiService HTTP/1.1\r\nHost: x\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
    assert data == b""


def _raw_request(emu, body: bytes, timeout=5.0):
    """Send a SOAP POST on a raw socket; return the socket, the response head
    and the body bytes already received with it."""
    u = urlsplit(emu.base_url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    s.sendall(b"POST /scene7/services/IpsApiService HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: text/xml; charset=utf-8\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head.decode("latin-1"), rest


def _plain_reply(emu, operation):
    return call(emu, operation, headers={"Accept-Encoding": "identity"}).content


def test_trickle_answers_at_once_then_sends_a_byte_per_interval(ips_emulator):
    full = _plain_reply(ips_emulator, "getUserInfo")
    ips_emulator.state.inject("trickle", operation="getUserInfo", interval=0.1)
    t0 = time.monotonic()
    s, head, body = _raw_request(ips_emulator, envelope("getUserInfo"))
    with s:
        assert time.monotonic() - t0 < 0.5  # the headers do not wait
        lines = head.split("\r\n")
        assert lines[0].split(" ")[1] == "200"
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Content-Type"] == "text/xml; charset=utf-8"
        assert int(headers["Content-Length"]) == len(full)  # the whole reply's length
        t1 = time.monotonic()
        while len(body) < 4:
            chunk = s.recv(16)
            assert len(chunk) == 1  # one byte at a time
            body += chunk
        assert time.monotonic() - t1 >= 0.25  # three more bytes took three intervals
        assert body == full[:4]
    # hanging up ends the trickle quietly; the server goes on serving
    result(call(ips_emulator, "getUserInfo"), "getUserInfo")
    assert [c["injected"] for c in ips_emulator.state.calls] == [None, "trickle", None]


def test_trickle_never_trips_a_per_read_timeout(ips_emulator):
    ips_emulator.state.inject("trickle", operation="executeJob", interval=0.002)
    t0 = time.monotonic()
    resp = call(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", JOB)],
                headers={"Accept-Encoding": "identity"}, request_kwargs={"timeout": (5, 0.2)})
    elapsed = time.monotonic() - t0
    result(resp, "executeJob")  # a complete, valid reply, slowly
    assert elapsed >= len(resp.content) * 0.002 > 0.2
    assert [r["job_handle"] for r in ips_emulator.state.active_runs()] == [JOB]  # it was executed


def test_trickle_stops_when_the_state_is_reset(ips_emulator):
    ips_emulator.state.inject("trickle", interval=0.05)
    s, head, body = _raw_request(ips_emulator, envelope("getUserInfo"), timeout=3)
    with s:
        length = int(head.split("Content-Length: ")[1].split("\r\n")[0])
        while len(body) < 2:
            body += s.recv(16)
        ips_emulator.state.reset()
        t0 = time.monotonic()
        while chunk := s.recv(16):
            body += chunk
        assert time.monotonic() - t0 < 1  # the connection ends at once
    assert 2 <= len(body) < length


def test_injections_match_operation_and_job_and_count_times(ips_emulator):
    state = ips_emulator.state
    state.inject("http_500_html", operation="executeJob", job_handle="47|Nightly | Publish|", times=2)
    result(execute(ips_emulator), "executeJob")  # other job
    result(call(ips_emulator, "getScheduledJobs", [("companyHandle", "47"),
                                                   ("jobHandle", "47|Nightly | Publish|")]),
           "getScheduledJobs")  # other operation
    assert execute(ips_emulator, "47|Nightly | Publish|").status_code == 500
    assert execute(ips_emulator, "47|Nightly | Publish|").status_code == 500
    result(execute(ips_emulator, "47|Nightly | Publish|"), "executeJob")


def test_injection_forever_until_reset(ips_emulator):
    ips_emulator.state.inject("http_500_html", operation="getUserInfo", times=None)
    for _ in range(3):
        assert call(ips_emulator, "getUserInfo").status_code == 500
    ips_emulator.state.reset()
    result(call(ips_emulator, "getUserInfo"), "getUserInfo")


def test_injection_arguments_are_checked(ips_emulator):
    with pytest.raises(ValueError):
        ips_emulator.state.inject("explode")
    with pytest.raises(ValueError):
        ips_emulator.state.inject("latency")
    with pytest.raises(ValueError):
        ips_emulator.state.inject("soap_fault", reason="no code")
    with pytest.raises(ValueError):
        ips_emulator.state.inject("empty_body", operation="noSuchOperation")
    assert ips_emulator.state.inject("trickle").params == {"interval": 1.0}


DATA = """
[[companies]]
handle = "7"
name = "Seven"

[[jobs]]
company = "7"
name = "Slow"
type = "Cleanup"
inject = { kind = "latency", seconds = 0.3 }

[[jobs]]
company = "7"
name = "Broken"
type = "UrlUpload"
inject = [{ kind = "soap_fault", code = 30000, reason = "Disk full", operation = "executeJob" }]

[[users]]
email = "u@example.com"
password = "pw"
default_role = "IpsUser"
memberships = [{ company = "7", role = "IpsUser" }]
"""


def test_injections_from_the_data_file(tmp_path):
    path = tmp_path / "data.toml"
    path.write_text(DATA, encoding="utf-8")
    emu = server.start(data_path=path, job_duration=0.1)
    try:
        kw = {"user": "u@example.com", "password": "pw"}
        for _ in range(2):  # forever
            t0 = time.monotonic()
            result(call(emu, "getScheduledJobs", [("companyHandle", "7"), ("jobHandle", "7|Slow|")], **kw),
                   "getScheduledJobs")
            assert time.monotonic() - t0 >= 0.3
        for _ in range(2):
            f = fault(call(emu, "executeJob", [("companyHandle", "7"), ("jobHandle", "7|Broken|")], **kw))
            assert (f["code"], f["reason"], f["faultcode"]) == (30000, "Disk full", "soapenv:Server")
        result(call(emu, "getScheduledJobs", [("companyHandle", "7"), ("jobHandle", "7|Broken|")], **kw),
               "getScheduledJobs")
        assert [i["kind"] for i in emu.state.injections] == ["latency", "soap_fault"]
    finally:
        emu.stop()


# ------------------------------------------------------------ control endpoints
def _control(emu, name, payload=None):
    return requests.post(f"{emu.base_url}/_emulator/{name}", json=payload, timeout=10)


def test_control_inject_endpoint(ips_emulator):
    resp = _control(ips_emulator, "inject", {"kind": "soap_fault", "operation": "executeJob",
                                             "job_handle": JOB, "code": 30001, "reason": "Job is locked"})
    assert resp.status_code == 200
    assert resp.json()["injection"]["kind"] == "soap_fault"
    f = fault(execute(ips_emulator))
    assert (f["code"], f["reason"]) == (30001, "Job is locked")
    resp = _control(ips_emulator, "inject", {"kind": "latency", "seconds": 0.2, "times": None})
    assert resp.json()["injection"]["times"] is None
    for _ in range(2):
        t0 = time.monotonic()
        result(call(ips_emulator, "getUserInfo"), "getUserInfo")
        assert time.monotonic() - t0 >= 0.2


@pytest.mark.parametrize("payload", [{"kind": "nope"}, {"seconds": 1}, {"kind": "latency"},
                                     {"kind": "soap_fault"}, {"kind": "latency", "seconds": 1, "times": 0},
                                     {"kind": "trickle", "interval": -1}, {"kind": "trickle", "interval": "x"},
                                     {"kind": "latency", "seconds": 1, "bogus": 1, "operation": "fly"}])
def test_control_inject_rejects_bad_payloads(ips_emulator, payload):
    resp = _control(ips_emulator, "inject", payload)
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_control_calls_endpoint(ips_emulator):
    execute(ips_emulator)
    call(ips_emulator, "getUserInfo", user="ipsuser@example.com")
    resp = requests.get(f"{ips_emulator.base_url}/_emulator/calls", timeout=10)
    calls = resp.json()
    assert [(c["operation"], c["user"], c["companyHandle"], c["jobHandle"]) for c in calls] == [
        ("executeJob", "ipsadmin@example.com", "47", JOB),
        ("getUserInfo", "ipsuser@example.com", None, None)]
    assert all(c["time"] for c in calls)
    assert [c["operation"] for c in ips_emulator.state.calls] == ["executeJob", "getUserInfo"]


def test_control_config_and_reset_endpoints(ips_emulator):
    resp = _control(ips_emulator, "config", {"job_duration": 0.25})
    assert resp.json() == {"ok": True, "job_duration": 0.25}
    assert ips_emulator.state.job_duration == 0.25
    assert _control(ips_emulator, "config", {"job_duration": "slow"}).status_code == 400
    result(call(ips_emulator, "deleteJob", [("companyHandle", "47"), ("jobHandle", JOB)]), "deleteJob")
    ips_emulator.state.inject("http_500_html", times=None)
    assert _control(ips_emulator, "reset").json() == {"ok": True}
    assert ips_emulator.state.calls == []
    assert ips_emulator.state.injections == []
    assert JOB in ips_emulator.state.jobs
    result(execute(ips_emulator), "executeJob")


def test_control_endpoints_want_post(ips_emulator):
    assert requests.get(f"{ips_emulator.base_url}/_emulator/reset", timeout=10).status_code == 405
    assert _control(ips_emulator, "nothing").status_code == 404
    resp = requests.post(f"{ips_emulator.base_url}/_emulator/inject", data=b"{not json", timeout=10)
    assert resp.status_code == 400
