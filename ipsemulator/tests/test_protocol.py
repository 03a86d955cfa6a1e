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
    (b"", "SOAP 1.1 Envelope"),
    (b"<notSoap/>", "SOAP 1.1 Envelope"),
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
