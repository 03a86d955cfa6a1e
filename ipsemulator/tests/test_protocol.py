"""SOAP protocol: body forms, namespaces, SOAPAction, authentication, faults,
faultHttpStatusCode, gzip, escaping."""

import base64
import gzip as gzip_module
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

from .soap import (ADMIN, NS, NS_2014, SOAP_ENV, call, envelope, fault, items, post,
                   result, scheduled_jobs)

SEED_REQUEST = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Header>
    <authHeader xmlns="http://www.scene7.com/IpsApi/xsd">
      <user>ipsadmin@example.com</user>
      <password>demo</password>
    </authHeader>
  </soapenv:Header>
  <soapenv:Body>
<executeJobParam xmlns="http://www.scene7.com/IpsApi/xsd"><companyHandle>47</companyHandle><jobHandle>47|My Test Job|</jobHandle></executeJobParam>
  </soapenv:Body>
</soapenv:Envelope>"""


def test_the_seed_request_works_verbatim(ips_emulator):
    resp = post(ips_emulator, SEED_REQUEST.encode(), soap_action="executeJob")
    ret = result(resp, "executeJob")
    assert len(ret) == 0 and not (ret.text or "").strip()
    assert [r["job_handle"] for r in ips_emulator.state.active_runs()] == ["47|My Test Job|"]


def test_the_prefixed_body_form_works(ips_emulator):
    body = envelope("executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")],
                    prefix="ns1")
    assert b"<ns1:executeJobParam" in body
    result(post(ips_emulator, body, soap_action="executeJob"), "executeJob")


@pytest.mark.parametrize("ns", [NS, NS_2014])
def test_it_answers_in_the_namespace_of_the_request(ips_emulator, ns):
    resp = call(ips_emulator, "getScheduledJobs", [("companyHandle", "47")], ns=ns)
    jobs = items(result(resp, "getScheduledJobs", ns), "jobArray", ns)
    assert jobs[0]["jobHandle"] == "47|My Test Job|"
    resp = call(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")], ns=ns)
    assert result(resp, "executeJob", ns).tag == f"{{{ns}}}executeJobReturn"
    assert ips_emulator.state.calls[-1]["namespace"] == ns


@pytest.mark.parametrize("action", ['"getUserInfo"', "getUserInfo", None, '""',
                                    "urn:getUserInfo", "http://www.scene7.com/IpsApi/getUserInfo"])
def test_soap_action_may_be_quoted_absent_or_a_uri(ips_emulator, action):
    resp = call(ips_emulator, "getUserInfo", soap_action=action)
    assert result(resp, "getUserInfo").find(f"{{{NS}}}userInfo") is not None


def test_a_soap_action_naming_another_operation_is_invalid_xml(ips_emulator):
    resp = call(ips_emulator, "getUserInfo", soap_action='"executeJob"')
    f = fault(resp)
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "IpsApiException", "ipsApiFault", 30003)
    assert "executeJob" in f["reason"] and "getUserInfoParam" in f["reason"]


@pytest.mark.parametrize("body, needle", [
    (b"<soapenv:Envelope xmlns:soapenv='x'><unclosed>", "well-formed"),
    (b"", "not a SOAP Envelope"),
    (b"<notSoap/>", "not a SOAP Envelope"),
    (f"<s:Envelope xmlns:s='{SOAP_ENV}'/>".encode(), "no Body"),
    (f"<s:Envelope xmlns:s='{SOAP_ENV}'><s:Body/></s:Envelope>".encode(), "exactly one"),
    (f"<s:Envelope xmlns:s='{SOAP_ENV}'><s:Body><x:executeJobParam xmlns:x='urn:other'/>"
     f"</s:Body></s:Envelope>".encode(), "Unsupported namespace"),
    (f"<s:Envelope xmlns:s='{SOAP_ENV}'><s:Body><x:launchRocketParam xmlns:x='{NS}'/>"
     f"</s:Body></s:Envelope>".encode(), "Unknown operation"),
    (f"<s:Envelope xmlns:s='{SOAP_ENV}'><s:Body><x:submitJobParam xmlns:x='{NS}'/>"
     f"</s:Body></s:Envelope>".encode(), "Unknown operation"),
])
def test_invalid_requests_are_30003(ips_emulator, body, needle):
    f = fault(post(ips_emulator, body))
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "IpsApiException", "ipsApiFault", 30003)
    assert needle in f["reason"]
    assert f["family_ns"] == NS


def test_no_credentials_is_10000_not_401(ips_emulator):
    f = fault(call(ips_emulator, "getUserInfo", auth="none"))
    assert f == {"status": 500, "faultcode": "soapenv:Client",
                 "faultstring": "AuthenticationException", "family": "authenticationFault",
                 "family_ns": NS, "code": 10000, "reason": f["reason"]}
    assert "credentials" in f["reason"].lower()


def test_wrong_password_is_10001(ips_emulator):
    f = fault(call(ips_emulator, "getUserInfo", password="nope"))
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "AuthenticationException", "authenticationFault", 10001)
    assert ADMIN in f["reason"]


def test_unknown_user_is_10002(ips_emulator):
    f = fault(call(ips_emulator, "getUserInfo", user="nobody@example.com"))
    assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
        500, "soapenv:Client", "AuthenticationException", "authenticationFault", 10002)
    assert "nobody@example.com" in f["reason"]


def test_authentication_comes_before_parameter_checks(ips_emulator):
    f = fault(call(ips_emulator, "executeJob", [], password="nope"))
    assert f["code"] == 10001


def test_http_basic_authenticates(ips_emulator):
    resp = call(ips_emulator, "getUserInfo", auth="none",
                request_kwargs={"auth": ("imageportaluser@example.com", "demo")})
    info = result(resp, "getUserInfo").find(f"{{{NS}}}userInfo")
    assert info.findtext(f"{{{NS}}}email") == "imageportaluser@example.com"
    token = base64.b64encode(b"ipsuser@example.com:wrong").decode()
    f = fault(call(ips_emulator, "getUserInfo", auth="none",
                   headers={"Authorization": f"Basic {token}"}))
    assert f["code"] == 10001


def test_the_legacy_auth_user_header_authenticates(ips_emulator):
    resp = call(ips_emulator, "getUserInfo", auth="legacy", user="trialsiteuser@example.com")
    info = result(resp, "getUserInfo").find(f"{{{NS}}}userInfo")
    assert info.findtext(f"{{{NS}}}role") == "TrialSiteUser"
    f = fault(call(ips_emulator, "getUserInfo", auth="legacy", user=ADMIN, password="x"))
    assert f["code"] == 10001


def test_the_auth_header_wins_over_basic(ips_emulator):
    resp = call(ips_emulator, "getUserInfo", user="ipsuser@example.com",
                request_kwargs={"auth": (ADMIN, "demo")})
    info = result(resp, "getUserInfo").find(f"{{{NS}}}userInfo")
    assert info.findtext(f"{{{NS}}}email") == "ipsuser@example.com"


def test_fault_http_status_code_overrides_500(ips_emulator):
    f = fault(call(ips_emulator, "executeJob", [("companyHandle", "47")],
                   header_extra=[("faultHttpStatusCode", "200")]))
    assert (f["status"], f["code"]) == (200, 30002)
    f = fault(call(ips_emulator, "getUserInfo", password="bad",
                   header_extra=[("faultHttpStatusCode", "200")]))
    assert (f["status"], f["code"]) == (200, 10001)
    ips_emulator.state.inject("soap_fault", code=30000, reason="boom")
    f = fault(call(ips_emulator, "getUserInfo", header_extra=[("faultHttpStatusCode", "200")]))
    assert (f["status"], f["code"], f["faultcode"]) == (200, 30000, "soapenv:Server")


def _raw_post(emu, body: bytes, accept_encoding: str | None):
    """POST with urllib3 so that nothing decompresses the reply."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "getUserInfo"}
    if accept_encoding is not None:
        headers["Accept-Encoding"] = accept_encoding
    resp = requests.post(emu.service_url, data=body, headers=headers, stream=True, timeout=10)
    raw = resp.raw.read(decode_content=False)
    return resp, raw


def test_replies_are_gzipped_when_accepted(ips_emulator):
    resp, raw = _raw_post(ips_emulator, envelope("getUserInfo"), "gzip, deflate")
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"getUserInfoReturn" in gzip_module.decompress(raw)
    resp, raw = _raw_post(ips_emulator, envelope("getUserInfo", password="x"), "gzip")
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"10001" in gzip_module.decompress(raw)


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", ""])
def test_replies_are_plain_when_gzip_is_not_accepted(ips_emulator, accept):
    resp, raw = _raw_post(ips_emulator, envelope("getUserInfo"), accept)
    assert "Content-Encoding" not in resp.headers
    assert b"getUserInfoReturn" in raw


def test_gzip_response_false_in_the_auth_header_turns_gzip_off(ips_emulator):
    body = envelope("getUserInfo", header_extra=[("gzipResponse", "false")])
    resp, raw = _raw_post(ips_emulator, body, "gzip")
    assert "Content-Encoding" not in resp.headers
    assert b"getUserInfoReturn" in raw


def test_job_names_round_trip_unicode_pipes_and_markup(ips_emulator):
    by_name = {j["name"]: j for j in scheduled_jobs(ips_emulator, ns=NS_2014)}
    assert by_name["Nightly | Publish"]["jobHandle"] == "47|Nightly | Publish|"
    assert by_name["<b>Bold</b> Upload"]["jobHandle"] == "47|<b>Bold</b> Upload|"
    assert by_name["Übersicht Publish"]["description"] == "Übersicht der Produktbilder – täglich"
    resp = call(ips_emulator, "getScheduledJobs", [("companyHandle", "47")])
    assert b"&lt;b&gt;Bold&lt;/b&gt; Upload" in resp.content
    assert b"?job=nightly&amp;kind=&lt;publish&gt;</ns1:httpCompletionUrl>" in resp.content
    # and the handle with markup works as a parameter
    resp = call(ips_emulator, "executeJob",
                [("companyHandle", "47"), ("jobHandle", "47|<b>Bold</b> Upload|")])
    result(resp, "executeJob")
    assert ips_emulator.state.calls[-1]["job_handle"] == "47|<b>Bold</b> Upload|"


def test_get_on_the_service_url_is_405(ips_emulator):
    assert requests.get(ips_emulator.service_url, timeout=10).status_code == 405


def test_a_raw_http_request_gets_a_complete_reply(ips_emulator):
    # Plain sockets: the reply is HTTP with the declared Content-Type.
    u = urlsplit(ips_emulator.base_url)
    body = envelope("getUserInfo")
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"POST /scene7/services/IpsApiService HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: text/xml\r\nSOAPAction: getUserInfo\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200"
    assert b"Content-Type: text/xml; charset=utf-8" in head
    assert etree.fromstring(payload).tag == f"{{{SOAP_ENV}}}Envelope"


def test_a_structured_value_where_text_is_expected_is_30001(ips_emulator):
    resp = call(ips_emulator, "executeJob", [("companyHandle", ["47"]), ("jobHandle", "47|My Test Job|")])
    assert fault(resp)["code"] == 30001


def test_the_emulator_imports_neither_django_nor_jobs():
    code = ("import sys, ipsemulator.server, ipsemulator.app, ipsemulator.state, ipsemulator.__main__, "
            "ipsemulator.clock, ipsemulator.schema, ipsemulator.loader, ipsemulator.records, "
            "ipsemulator.operations, ipsemulator.tables; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'jobs', 'zeep'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- SOAP 1.2

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP12_TYPE = "application/soap+xml; charset=utf-8"


def envelope12(operation: str, params=(), **kwargs) -> bytes:
    """The request of ``envelope()`` in a SOAP 1.2 Envelope."""
    return envelope(operation, params, **kwargs).replace(SOAP_ENV.encode(), SOAP12_ENV.encode())


def post12(emu, body: bytes, action: str | None = None, *, content_type: str | None = None, headers=None, **kwargs):
    """POST a SOAP 1.2 request: the action is a Content-Type parameter, not a SOAPAction header."""
    if content_type is None:
        content_type = SOAP12_TYPE + (f'; action="{action}"' if action else "")
    kwargs.setdefault("timeout", 10)
    return requests.post(emu.service_url, data=body, headers={"Content-Type": content_type, **(headers or {})},
                         **kwargs)


def call12(emu, operation: str, params=(), **kwargs):
    return post12(emu, envelope12(operation, params, **kwargs), operation)


def result12(resp, operation: str, ns: str = NS):
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == SOAP12_TYPE
    root = etree.fromstring(resp.content)
    assert root.tag == f"{{{SOAP12_ENV}}}Envelope"
    (ret,) = list(root.find(f"{{{SOAP12_ENV}}}Body"))
    assert ret.tag == f"{{{ns}}}{operation}Return", ret.tag
    return ret


def fault12(resp) -> dict:
    assert resp.headers["Content-Type"] == SOAP12_TYPE
    f = etree.fromstring(resp.content).find(f"{{{SOAP12_ENV}}}Body/{{{SOAP12_ENV}}}Fault")
    assert f is not None, resp.text
    text = f.find(f"{{{SOAP12_ENV}}}Reason/{{{SOAP12_ENV}}}Text")
    (detail,) = list(f.find(f"{{{SOAP12_ENV}}}Detail"))
    return {
        "status": resp.status_code,
        "code": f.findtext(f"{{{SOAP12_ENV}}}Code/{{{SOAP12_ENV}}}Value"),
        "reason": text.text,
        "lang": text.get("{http://www.w3.org/XML/1998/namespace}lang"),
        "family": etree.QName(detail).localname,
        "family_ns": etree.QName(detail).namespace,
        "ips_code": int(detail.findtext(f"{{{NS}}}code")),
        "ips_reason": detail.findtext(f"{{{NS}}}reason"),
    }


@pytest.mark.parametrize("ns", [NS, NS_2014])
def test_a_soap_1_2_request_is_answered_in_soap_1_2(ips_emulator, ns):
    jobs = items(result12(call12(ips_emulator, "getScheduledJobs", [("companyHandle", "47")], ns=ns),
                          "getScheduledJobs", ns), "jobArray", ns)
    assert jobs[0]["jobHandle"] == "47|My Test Job|"
    resp = call12(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")], ns=ns)
    assert len(result12(resp, "executeJob", ns)) == 0
    assert [r["job_handle"] for r in ips_emulator.state.active_runs()] == ["47|My Test Job|"]
    assert [(c["soap_version"], c["namespace"]) for c in ips_emulator.state.calls] == [("1.2", ns)] * 2
    calls = requests.get(f"{ips_emulator.base_url}/_emulator/calls", timeout=10).json()
    assert [c["soap_version"] for c in calls] == ["1.2", "1.2"]


def test_a_soap_1_1_request_is_still_answered_in_soap_1_1(ips_emulator):
    resp = call(ips_emulator, "getUserInfo")
    assert result(resp, "getUserInfo").find(f"{{{NS}}}userInfo") is not None
    assert ips_emulator.state.calls[-1]["soap_version"] == "1.1"


@pytest.mark.parametrize("ns", [NS, NS_2014])
def test_soap_1_2_faults_have_code_reason_and_detail(ips_emulator, ns):
    f = fault12(call12(ips_emulator, "getUserInfo", ns=ns, password="nope"))
    assert f == {"status": 500, "code": "soapenv:Sender", "reason": "AuthenticationException", "lang": "en",
                 "family": "authenticationFault", "family_ns": NS, "ips_code": 10001, "ips_reason": f["ips_reason"]}
    f = fault12(call12(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|No Such|")], ns=ns))
    assert (f["status"], f["code"], f["family"], f["ips_code"]) == (500, "soapenv:Sender", "ipsApiFault", 30001)
    f = fault12(call12(ips_emulator, "getScheduledJobs", [("companyHandle", "47")], ns=ns,
                       user="webserviceuser@example.com"))
    assert (f["reason"], f["family"], f["ips_code"]) == ("AuthorizationException", "authorizationFault", 20003)
    ips_emulator.state.inject("soap_fault", code=30000, reason="Disk full")
    f = fault12(call12(ips_emulator, "getUserInfo", ns=ns))
    assert (f["status"], f["code"], f["ips_code"], f["ips_reason"]) == (500, "soapenv:Receiver", 30000, "Disk full")


def test_fault_http_status_code_overrides_500_in_soap_1_2(ips_emulator):
    f = fault12(call12(ips_emulator, "getUserInfo", password="bad", header_extra=[("faultHttpStatusCode", "200")]))
    assert (f["status"], f["ips_code"]) == (200, 10001)
    f = fault12(post12(ips_emulator, envelope12("getUserInfo", header_extra=[("faultHttpStatusCode", "200")]),
                       "executeJob"))
    assert (f["status"], f["ips_code"]) == (200, 30003)


@pytest.mark.parametrize("action", ["getUserInfo", None, "urn:getUserInfo"])
def test_the_soap_1_2_action_is_the_content_types_parameter(ips_emulator, action):
    resp = post12(ips_emulator, envelope12("getUserInfo"), action)
    assert result12(resp, "getUserInfo").find(f"{{{NS}}}userInfo") is not None


def test_a_soap_1_2_action_naming_another_operation_is_30003(ips_emulator):
    f = fault12(post12(ips_emulator, envelope12("getUserInfo"), "executeJob"))
    assert (f["status"], f["ips_code"]) == (500, 30003) and "executeJob" in f["ips_reason"]


def test_a_soap_action_header_means_nothing_in_soap_1_2(ips_emulator):
    resp = post12(ips_emulator, envelope12("getUserInfo"), "getUserInfo", headers={"SOAPAction": '"executeJob"'})
    assert result12(resp, "getUserInfo") is not None


@pytest.mark.parametrize("body, content_type, answered_in", [
    (envelope12("getUserInfo"), "text/xml; charset=utf-8", SOAP12_ENV),
    (envelope("getUserInfo"), SOAP12_TYPE, SOAP_ENV),
])
def test_a_content_type_of_the_other_soap_version_is_30003(ips_emulator, body, content_type, answered_in):
    resp = requests.post(ips_emulator.service_url, data=body, headers={"Content-Type": content_type}, timeout=10)
    root = etree.fromstring(resp.content)
    assert resp.status_code == 500 and root.tag == f"{{{answered_in}}}Envelope"
    assert b"30003" in resp.content and b"does not carry a SOAP" in resp.content


@pytest.mark.parametrize("body, needle", [
    (f"<s:Envelope xmlns:s='{SOAP12_ENV}'/>".encode(), "no Body"),
    (f"<s:Envelope xmlns:s='{SOAP12_ENV}'><s:Body/></s:Envelope>".encode(), "exactly one"),
    (f"<s:Envelope xmlns:s='{SOAP12_ENV}'><s:Body><x:launchRocketParam xmlns:x='{NS}'/>"
     f"</s:Body></s:Envelope>".encode(), "Unknown operation"),
])
def test_invalid_soap_1_2_requests_are_30003_in_soap_1_2(ips_emulator, body, needle):
    f = fault12(post12(ips_emulator, body))
    assert (f["status"], f["code"], f["ips_code"]) == (500, "soapenv:Sender", 30003)
    assert needle in f["ips_reason"]


def test_soap_1_2_replies_are_gzipped_when_accepted(ips_emulator):
    resp = post12(ips_emulator, envelope12("getUserInfo"), "getUserInfo", headers={"Accept-Encoding": "gzip"},
                  stream=True)
    raw = resp.raw.read(decode_content=False)
    assert resp.headers["Content-Encoding"] == "gzip" and resp.headers["Content-Type"] == SOAP12_TYPE
    assert etree.fromstring(gzip_module.decompress(raw)).tag == f"{{{SOAP12_ENV}}}Envelope"


@pytest.mark.parametrize("kind", ["malformed_xml", "empty_body", "soap_fault"])
def test_injected_replies_come_in_the_requests_soap_version(ips_emulator, kind):
    ips_emulator.state.inject(kind, **({"code": 30000, "reason": "x"} if kind == "soap_fault" else {}))
    resp = call12(ips_emulator, "getUserInfo")
    assert resp.headers["Content-Type"] == SOAP12_TYPE
    assert f'xmlns:soapenv="{SOAP12_ENV}"'.encode() in resp.content
    assert SOAP_ENV.encode() not in resp.content


# ------------------------------------------------- void operations, empty Body

VOID_CALLS = [
    ("executeJob", "47|My Test Job|"),
    ("pauseJob", "47|Nightly | Publish|"),
    ("resumeJob", "47|<b>Bold</b> Upload|"),
    ("deleteJob", "47|Video Sync|"),
]


def _empty_body(resp, envelope_ns):
    assert resp.status_code == 200
    root = etree.fromstring(resp.content)
    body = root.find(f"{{{envelope_ns}}}Body")
    return root.tag == f"{{{envelope_ns}}}Envelope" and body is not None and len(body) == 0


@pytest.mark.parametrize("soap_version", ["1.1", "1.2"])
def test_void_operations_answer_an_empty_body_when_configured(ips_emulator, soap_version):
    ask, env = (call, SOAP_ENV) if soap_version == "1.1" else (call12, SOAP12_ENV)
    resp = requests.post(f"{ips_emulator.base_url}/_emulator/config", json={"void_empty_body": True}, timeout=10)
    assert resp.json() == {"ok": True, "job_duration": ips_emulator.state.job_duration, "void_empty_body": True}
    for operation, handle in VOID_CALLS:
        assert _empty_body(ask(ips_emulator, operation, [("companyHandle", "47"), ("jobHandle", handle)]), env)
    # Done all the same: the run started, the jobs paused, resumed, deleted.
    assert [r["job_handle"] for r in ips_emulator.state.active_runs()] == ["47|My Test Job|"]
    assert ips_emulator.state.jobs["47|Nightly | Publish|"].trigger_state == "Paused"
    assert ips_emulator.state.jobs["47|<b>Bold</b> Upload|"].trigger_state == "Normal"
    assert "47|Video Sync|" not in ips_emulator.state.jobs
    assert _empty_body(ask(ips_emulator, "stopJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")]), env)
    # Operations with a reply, and faults, are unchanged.
    assert not _empty_body(ask(ips_emulator, "getActiveJobs", [("companyHandle", "47")]), env)
    refused = ask(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|No Such|")])
    assert refused.status_code == 500 and b"30001" in refused.content


def test_the_empty_body_switch_is_off_after_a_reset_and_checked(ips_emulator):
    ips_emulator.state.void_empty_body = True
    ips_emulator.state.reset()
    assert ips_emulator.state.void_empty_body is False
    result(call(ips_emulator, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")]), "executeJob")
    resp = requests.post(f"{ips_emulator.base_url}/_emulator/config", json={"void_empty_body": "yes"}, timeout=10)
    assert resp.status_code == 400 and ips_emulator.state.void_empty_body is False


# ---------------------------------------------------------------- gzip bomb


@pytest.mark.parametrize("soap_version", ["1.1", "1.2"])
def test_a_gzip_bomb_is_small_on_the_wire_and_inflates_to_what_was_asked(ips_emulator, soap_version):
    inflated = 30_000_000
    requests.post(f"{ips_emulator.base_url}/_emulator/inject", timeout=10,
                  json={"kind": "gzip_bomb", "operation": "getActiveJobs", "inflated": inflated})
    params = [("companyHandle", "47")]
    identity = {"Accept-Encoding": "identity"}  # gzip all the same: a hostile server does not ask
    if soap_version == "1.1":
        resp = call(ips_emulator, "getActiveJobs", params, headers=identity, request_kwargs={"stream": True})
    else:
        resp = post12(ips_emulator, envelope12("getActiveJobs", params), "getActiveJobs", headers=identity,
                      stream=True)
    raw = resp.raw.read(decode_content=False)
    assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert len(raw) < inflated / 500
    xml = gzip_module.decompress(raw)
    assert len(xml) == inflated
    root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
    env = SOAP_ENV if soap_version == "1.1" else SOAP12_ENV
    (ret,) = list(root.find(f"{{{env}}}Body"))
    assert ret.tag == f"{{{NS}}}getActiveJobsReturn"
    assert ips_emulator.state.calls[-1]["injected"] == "gzip_bomb"
    assert ips_emulator.state.active_runs() == []
