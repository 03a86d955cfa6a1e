"""The SOAP envelope, over real HTTP against the emulator (ipsemulator/).

- SOAP 1.2 beside 1.1: every operation the dashboard calls, in both bundled
  API versions, answered in 1.2 and in 1.1, replies and faults of each family;
  which binding of a WSDL the client speaks (bundled, or a WSDL URL whose
  first binding is 1.2, or that has only 1.2).
- "Response: None": an empty Body is a void operation's success (executeJob,
  stopJob, ...), through Run and Stop too, and malformed for any other.
- The reply size cap: a gzip bomb is cut off at ``transport.MAX_REPLY_BYTES``
  without the process holding more than that, with a clear message, through
  the client, a Run and the Active in IPS panel.

The raw-socket edges (a reply too large on the wire, an empty Body with an
error status, redirects) are in test_deadline.py.
"""

from __future__ import annotations

import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.urls import reverse
from lxml import etree

from ipsemulator import app as emulator_app
from ipsemulator.clock import ManualClock
from jobs import ips
from jobs.ips import transport
from jobs.models import Execution

from .conftest import HTMX, look, press_run

SERVICE = "service@example.com"
MY_JOB = "47|My Test Job|"
NIGHTLY = "47|Nightly | Publish|"
VIDEO = "47|Video Sync|"
MY_JOB_LOG = "47||My Test Job_2026-11-28-00:00:00"  # a past run in the demo data
NS_2014 = "http://www.scene7.com/IpsApi/xsd/2014-04-03"
NAMESPACE = {"": ips.IPS_NS, "2014-04-03": NS_2014}
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
RUN_SECONDS = 10.0

API_VERSIONS = [pytest.param("", id="unversioned"), pytest.param("2014-04-03", id="2014-04-03")]
SOAP_VERSIONS = ["1.1", "1.2"]


def endpoint(emulator, *, api_version="", soap_version="", wsdl_url="", **extra) -> ips.Endpoint:
    return ips.Endpoint(
        service_url=emulator.service_url,
        user=SERVICE,
        password="demo",
        api_version=api_version,
        wsdl_url=wsdl_url,
        soap_version=soap_version,
        connect_timeout=2.0,
        read_timeout=5.0,
        **extra,
    )


def client_of(emulator, **kwargs) -> ips.IpsClient:
    return ips.get_client(endpoint(emulator, **kwargs))


def spoken(emulator) -> set[str]:
    """The SOAP versions of the calls the emulator received."""
    return {c["soap_version"] for c in emulator.state.calls}


@pytest.fixture(autouse=True)
def clock(ips_emulator):
    """Runs move only when a test advances the emulator's clock."""
    ips_emulator.state.clock = manual = ManualClock()
    ips_emulator.state.job_duration = RUN_SECONDS
    return manual


# --------------------------------------------- every operation the dashboard calls


def _start_run(emulator):
    if not _runs_of_my_job(emulator):  # executeJob may have started one already
        emulator.state.fire_schedule(MY_JOB)


def _pause_nightly(emulator):
    emulator.state.jobs[NIGHTLY].trigger_state = "Paused"


def _runs_of_my_job(emulator):
    return [(r["job_handle"], r["state"]) for r in emulator.state.active_runs(MY_JOB)]


# operation -> (setup(emulator) or None, the client's call, check(result, emulator))
OPERATIONS = {
    "getScheduledJobs": (
        None,
        lambda c: c.get_scheduled_jobs("47"),
        lambda r, emu: MY_JOB in {j.job_handle for j in r} and all(isinstance(j, ips.ScheduledJob) for j in r),
    ),
    "executeJob": (
        None,
        lambda c: c.execute_job("47", MY_JOB),
        lambda r, emu: r is None and _runs_of_my_job(emu) == [(MY_JOB, "New")],
    ),
    "getActiveJobs": (
        _start_run,
        lambda c: c.get_active_jobs("47"),
        lambda r, emu: [(a.original_name, a.state) for a in r] == [("My Test Job", "New")],
    ),
    "stopJob": (
        _start_run,
        lambda c: c.stop_job("47", MY_JOB),
        lambda r, emu: r is None and _runs_of_my_job(emu) == [(MY_JOB, "Stopping")],
    ),
    "getJobLogs": (
        None,
        lambda c: c.get_job_logs("47"),
        lambda r, emu: MY_JOB_LOG in {log.job_handle for log in r},
    ),
    "getJobLogDetails": (
        None,
        lambda c: c.get_job_log_details("47", job_handle=MY_JOB_LOG),
        lambda r, emu: [log.job_handle for log in r] == [MY_JOB_LOG] and len(r[0].details) > 0,
    ),
    "pauseJob": (
        None,
        lambda c: c.pause_job("47", NIGHTLY),
        lambda r, emu: r is None and emu.state.jobs[NIGHTLY].trigger_state == "Paused",
    ),
    "resumeJob": (
        _pause_nightly,
        lambda c: c.resume_job("47", NIGHTLY),
        lambda r, emu: r is None and emu.state.jobs[NIGHTLY].trigger_state == "Normal",
    ),
    "deleteJob": (
        None,
        lambda c: c.delete_job("47", VIDEO),
        lambda r, emu: r is None and VIDEO not in emu.state.jobs,
    ),
    "checkLogin": (None, lambda c: c.check_login(SERVICE, "demo"), lambda r, emu: r is True),
    "getCompanyInfo": (None, lambda c: c.get_company_info("47"), lambda r, emu: r.name == "Demo Company"),
    "getUserInfo": (None, lambda c: c.get_user_info(), lambda r, emu: r.email == SERVICE),
    "getCompanyMembership": (
        None,
        lambda c: c.get_company_membership(),
        lambda r, emu: {"47", "48", "52"} <= {m.company.company_handle for m in r},
    ),
}
VOID = ["executeJob", "stopJob", "pauseJob", "resumeJob", "deleteJob"]
WITH_REPLY = [op for op in OPERATIONS if op not in VOID]
# fault family -> (code, the client's exception, the faultstring the emulator sends)
FAULTS = {
    "authenticationFault": (10001, ips.IpsAuthenticationFault, "AuthenticationException"),
    "authorizationFault": (20003, ips.IpsAuthorizationFault, "AuthorizationException"),
    "ipsApiFault": (30001, ips.IpsApiFault, "IpsApiException"),
}
REASON = "Nicht erlaubt: <b>&</b> – Übersicht"


def run_operation(emulator, client, operation):
    setup, call, check = OPERATIONS[operation]
    if setup:
        setup(emulator)
    result = call(client)
    assert check(result, emulator), result


@pytest.mark.parametrize("soap_version", SOAP_VERSIONS)
@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_operation_is_answered_and_read_in_either_soap_version(
    ips_emulator, operation, api_version, soap_version
):
    client = client_of(ips_emulator, api_version=api_version, soap_version=soap_version)

    run_operation(ips_emulator, client, operation)

    (call,) = ips_emulator.state.calls
    assert (call["operation"], call["soap_version"], call["namespace"]) == (
        operation,
        soap_version,
        NAMESPACE[api_version],
    )


@pytest.mark.parametrize("soap_version", SOAP_VERSIONS)
@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("family", list(FAULTS))
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_fault_is_read_in_either_soap_version(ips_emulator, operation, family, api_version, soap_version):
    code, error_type, fault_string = FAULTS[family]
    ips_emulator.state.inject("soap_fault", operation=operation, code=code, reason=REASON, fault=family)
    client = client_of(ips_emulator, api_version=api_version, soap_version=soap_version)

    with pytest.raises(error_type) as info:
        OPERATIONS[operation][1](client)

    error = info.value
    assert (type(error), error.operation, error.code, error.reason, error.fault_string) == (
        error_type,
        operation,
        code,
        REASON,
        fault_string,
    )
    assert spoken(ips_emulator) == {soap_version}


def test_a_soap_1_2_request_names_its_action_in_the_content_type(ips_emulator, monkeypatch):
    seen = []
    parse = emulator_app.parse_soap

    def spy(body, soap_action, *args, content_type=None, **kwargs):
        seen.append((content_type, soap_action, etree.QName(etree.fromstring(body)).namespace))
        return parse(body, soap_action, *args, content_type=content_type, **kwargs)

    monkeypatch.setattr(emulator_app, "parse_soap", spy)
    client_of(ips_emulator, soap_version="1.2").get_user_info()
    client_of(ips_emulator, soap_version="1.1").get_user_info()

    assert seen == [
        ('application/soap+xml; charset=utf-8; action="getUserInfo"', None, SOAP12_ENV),
        ("text/xml; charset=utf-8", '"getUserInfo"', SOAP11_ENV),
    ]


# ------------------------------------------------------------- which binding


def _wsdl_with_bindings(emulator, api_version, order):
    """The emulator's WSDL of ``api_version`` with only the SOAP bindings (and ports) of
    ``order``, in that order: ("1.2", "1.1") puts the SOAP 1.2 binding first."""
    root = etree.fromstring(requests.get(emulator.wsdl_url(api_version or None), timeout=10).content)
    names = {"1.1": "IpsApiSoap", "1.2": "IpsApiSoap12"}
    for kind in ("binding", "port"):
        parent = root if kind == "binding" else root.find(f"{{{WSDL}}}service")
        found = {el.get("name"): el for el in parent.findall(f"{{{WSDL}}}{kind}")}
        anchor = min(parent.index(el) for el in found.values())
        for el in found.values():
            parent.remove(el)
        for offset, version in enumerate(order):
            parent.insert(anchor + offset, found[f"{names[version]}{kind.title()}"])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.fixture
def serve_wsdl():
    """serve_wsdl(bytes) -> the URL of a WSDL served over HTTP (as a connection's WSDL URL)."""
    servers = []

    def serve(document: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/scene7/webservice/IpsApi.wsdl"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_the_bundled_wsdls_carry_both_bindings_and_the_client_speaks_1_1(ips_emulator, api_version):
    for wsdl_file in ips.BUNDLED_VERSIONS.values():
        root = etree.parse(str(ips.client.BUNDLED_WSDL_DIR / wsdl_file)).getroot()
        bindings = [b.get("name") for b in root.findall(f"{{{WSDL}}}binding")]
        ports = [(p.get("name"), p.get("binding")) for p in root.find(f"{{{WSDL}}}service")]
        assert bindings == ["IpsApiSoapBinding", "IpsApiSoap12Binding"], wsdl_file
        assert ports == [("IpsApiSoapPort", "tns:IpsApiSoapBinding"),
                         ("IpsApiSoap12Port", "tns:IpsApiSoap12Binding")], wsdl_file
        assert root.find(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{WSDL_SOAP12}}}address") is not None

    client_of(ips_emulator, api_version=api_version).get_user_info()

    assert spoken(ips_emulator) == {"1.1"}


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_wsdl_url_whose_first_binding_is_soap_1_2_is_still_spoken_in_1_1(ips_emulator, serve_wsdl, api_version):
    url = serve_wsdl(_wsdl_with_bindings(ips_emulator, api_version, ("1.2", "1.1")))

    client = client_of(ips_emulator, api_version=api_version, wsdl_url=url)
    for operation in OPERATIONS:
        run_operation(ips_emulator, client, operation)

    assert spoken(ips_emulator) == {"1.1"}


@pytest.mark.parametrize(
    "order, soap_version",
    [(("1.2", "1.1"), "1.2"), (("1.2",), ""), (("1.2",), "1.2")],
    ids=["1.2-first-chosen", "only-1.2", "only-1.2-chosen"],
)
@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_wsdl_url_spoken_in_soap_1_2_works_end_to_end(ips_emulator, serve_wsdl, api_version, order, soap_version):
    url = serve_wsdl(_wsdl_with_bindings(ips_emulator, api_version, order))

    client = client_of(ips_emulator, api_version=api_version, wsdl_url=url, soap_version=soap_version)
    for operation in OPERATIONS:
        run_operation(ips_emulator, client, operation)
    ips_emulator.state.inject("soap_fault", code=20003, reason=REASON, fault="authorizationFault")
    with pytest.raises(ips.IpsAuthorizationFault) as info:
        client.get_scheduled_jobs("47")

    assert (info.value.code, info.value.reason) == (20003, REASON)
    assert [c["operation"] for c in ips_emulator.state.calls] == [*OPERATIONS, "getScheduledJobs"]
    assert spoken(ips_emulator) == {"1.2"}


def test_a_soap_version_the_wsdl_lacks_is_refused_before_anything_is_sent(ips_emulator, serve_wsdl):
    url = serve_wsdl(_wsdl_with_bindings(ips_emulator, "", ("1.1",)))

    with pytest.raises(ips.IpsError, match="no SOAP 1.2 binding") as info:
        client_of(ips_emulator, wsdl_url=url, soap_version="1.2")

    assert info.value.request_sent is False
    assert ips_emulator.state.calls == []


# ---------------------------------------------------------- read_reply, 1.2 bytes

SOAP12_REPLY = f"""<?xml version='1.0' encoding='utf-8'?>
<soapenv:Envelope xmlns:soapenv="{SOAP12_ENV}">
   <soapenv:Header/>
   <soapenv:Body>
      <getCompanyInfoReturn xmlns="{NS_2014}">
         <companyInfo><companyHandle>47</companyHandle><name>Demo Company</name></companyInfo>
      </getCompanyInfoReturn>
   </soapenv:Body>
</soapenv:Envelope>""".encode()

SOAP12_FAULT = f"""<?xml version='1.0' encoding='utf-8'?>
<env:Envelope xmlns:env="{SOAP12_ENV}"><env:Body><env:Fault>
  <env:Code><env:Value>env:Sender</env:Value>
    <env:Subcode><env:Value xmlns:x="urn:x">x:Denied</env:Value></env:Subcode></env:Code>
  <env:Reason><env:Text xml:lang="en">AuthorizationException</env:Text>
    <env:Text xml:lang="de">Nicht erlaubt</env:Text></env:Reason>
  <env:Detail><ns1:authorizationFault xmlns:ns1="{ips.IPS_NS}">
    <ns1:code>20003</ns1:code><ns1:reason>User does not have permission to access operation 'executeJob'</ns1:reason>
  </ns1:authorizationFault></env:Detail>
</env:Fault></env:Body></env:Envelope>""".encode()


def test_read_reply_reads_a_soap_1_2_reply_in_the_references_form():
    # The form of the reference's one SOAP 1.2 example (r-get-associated-assets.md):
    # a soapenv prefix on the 1.2 namespace, the Return in a default namespace.
    info = ips.read_reply("getCompanyInfo", SOAP12_REPLY)
    assert (info.company_handle, info.name) == ("47", "Demo Company")


def test_read_reply_reads_a_soap_1_2_fault():
    with pytest.raises(ips.IpsAuthorizationFault) as info:
        ips.read_reply("executeJob", SOAP12_FAULT)
    assert (info.value.code, info.value.fault_string) == (20003, "AuthorizationException")
    assert info.value.reason == "User does not have permission to access operation 'executeJob'"


@pytest.mark.parametrize("envelope", [SOAP11_ENV, SOAP12_ENV], ids=["soap-1.1", "soap-1.2"])
def test_read_reply_reads_an_empty_body_as_success_only_for_void_operations(envelope):
    empty = f'<s:Envelope xmlns:s="{envelope}"><s:Header/><s:Body/></s:Envelope>'.encode()
    for operation in VOID:
        assert ips.read_reply(operation, empty) is None
    for operation in WITH_REPLY:
        with pytest.raises(ips.IpsMalformedReply, match="an empty body"):
            ips.read_reply(operation, empty)


def test_read_reply_refuses_an_envelope_of_no_soap_version():
    other = b'<s:Envelope xmlns:s="urn:not-soap"><s:Body/></s:Envelope>'
    with pytest.raises(ips.IpsMalformedReply, match="not a SOAP envelope"):
        ips.read_reply("executeJob", other)


# ------------------------------------------------------ "Response: None"


@pytest.mark.parametrize("soap_version", SOAP_VERSIONS)
@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("operation", VOID)
def test_a_void_operation_answered_with_an_empty_body_succeeded(ips_emulator, operation, api_version, soap_version):
    ips_emulator.state.void_empty_body = True
    written = []
    empty = emulator_app.empty_body_envelope

    def spy(*args, **kwargs):
        written.append(empty(*args, **kwargs))
        return written[-1]

    client = client_of(ips_emulator, api_version=api_version, soap_version=soap_version)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator_app, "empty_body_envelope", spy)
        run_operation(ips_emulator, client, operation)

    (reply,) = written  # what went on the wire: an Envelope with nothing in its Body
    body = etree.fromstring(reply).find(f"{{{SOAP12_ENV if soap_version == '1.2' else SOAP11_ENV}}}Body")
    assert body is not None and len(body) == 0
    assert spoken(ips_emulator) == {soap_version}


@pytest.mark.parametrize("soap_version", SOAP_VERSIONS)
@pytest.mark.parametrize("operation", WITH_REPLY)
def test_an_empty_body_stays_malformed_for_an_operation_with_a_reply(ips_emulator, operation, soap_version):
    ips_emulator.state.void_empty_body = True  # changes nothing for them
    ips_emulator.state.inject("empty_body", operation=operation)
    client = client_of(ips_emulator, soap_version=soap_version)

    with pytest.raises(ips.IpsMalformedReply, match="an empty body") as info:
        OPERATIONS[operation][1](client)

    assert type(info.value) is ips.IpsMalformedReply and info.value.request_sent


@pytest.fixture
def speak(settings):
    """speak(soap_version): the dashboard's connections speak that SOAP version."""

    def choose(soap_version):
        settings.IPS_SOAP_VERSION = "" if soap_version == "1.1" else soap_version

    return choose


@pytest.mark.parametrize("soap_version", SOAP_VERSIONS)
@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_run_and_stop_are_accepted_when_ips_answers_an_empty_body(
    client, login, job, ips_emulator, clock, speak, api_version, soap_version
):
    connection = job.company.connection
    connection.api_version = api_version
    connection.save()
    speak(soap_version)
    ips_emulator.state.void_empty_body = True
    login("IpsUser")

    run = client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    clock.advance(RUN_SECONDS / 2)
    stop = client.post(reverse("jobs:stop", args=[job.pk]), **HTMX)

    assert (run.status_code, stop.status_code) == (200, 200)
    rows = list(Execution.objects.order_by("id").values_list("operation", "outcome"))
    assert rows == [("executeJob", "accepted"), ("stopJob", "accepted")]
    assert _runs_of_my_job(ips_emulator) == [(MY_JOB, "Stopping")]
    voids = [c for c in ips_emulator.state.calls if c["operation"] in VOID]
    assert [(c["operation"], c["soap_version"], c["namespace"]) for c in voids] == [
        ("executeJob", soap_version, NAMESPACE[api_version]),
        ("stopJob", soap_version, NAMESPACE[api_version]),
    ]


# ------------------------------------------------------------- the size cap


def test_a_gzip_bomb_is_cut_off_at_the_cap_without_the_memory_it_inflates_to(ips_emulator):
    # 10 x the cap once inflated, about a thousandth of that on the wire (the attack: 1.5 MB -> 1,500 MB).
    inflated = 10 * transport.MAX_REPLY_BYTES
    on_the_wire = len(emulator_app.gzip_bomb(ips.IPS_NS, "getActiveJobs", inflated))
    ips_emulator.state.inject("gzip_bomb", operation="getActiveJobs", inflated=inflated)
    client = client_of(ips_emulator)
    client.get_user_info()  # the WSDL parsed and a connection open: what follows is the reply's

    tracemalloc.start()
    try:
        with pytest.raises(ips.IpsReplyTooLarge) as info:
            client.get_active_jobs("47")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    error = info.value
    assert str(error) == "IPS sent a reply larger than 20 MB to getActiveJobs; the dashboard stopped reading it"
    assert isinstance(error, ips.IpsMalformedReply) and error.request_sent
    # Read and held when it stopped: the cap and one step, from a fraction of what was sent.
    assert transport.MAX_REPLY_BYTES < error.inflated_bytes <= transport.MAX_REPLY_BYTES + 65536
    assert error.wire_bytes < on_the_wire / 2
    # What the process allocated meanwhile: what it held, not the 200 MB the reply inflates to.
    assert peak < 1.25 * transport.MAX_REPLY_BYTES, peak


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_a_reply_of_the_caps_size_is_read_and_one_byte_more_is_not(ips_emulator, monkeypatch, gzip):
    # Plain, the reply is refused by its Content-Length; gzipped, once inflated past the cap.
    monkeypatch.setattr(emulator_app, "_accepts_gzip", lambda environ: gzip)
    sizes = []
    write = emulator_app.result_envelope

    def measured(*args, **kwargs):
        sizes.append(len(write(*args, **kwargs)))
        return write(*args, **kwargs)

    monkeypatch.setattr(emulator_app, "result_envelope", measured)
    client = client_of(ips_emulator)
    jobs = client.get_scheduled_jobs("47")

    monkeypatch.setattr(transport, "MAX_REPLY_BYTES", sizes[0])
    assert client.get_scheduled_jobs("47") == jobs
    monkeypatch.setattr(transport, "MAX_REPLY_BYTES", sizes[0] - 1)
    with pytest.raises(ips.IpsReplyTooLarge) as info:
        client.get_scheduled_jobs("47")
    error = info.value
    if gzip:
        assert 0 < error.wire_bytes < error.inflated_bytes == sizes[0]
    else:
        assert error.wire_bytes == error.inflated_bytes == 0  # its Content-Length said enough


def test_inflating_a_reply_counts_against_the_whole_reply_deadline(ips_emulator, monkeypatch):
    # Under the cap, all on the wire in a step or two; its inflating takes 150 steps of 64 KiB.
    ips_emulator.state.inject("gzip_bomb", operation="getActiveJobs", inflated=transport.MAX_REPLY_BYTES // 2)
    client = client_of(ips_emulator)  # a deadline of 2 + 5 s
    client.get_user_info()

    class Clock:
        """The transport's clock: each look at it costs a tenth of a second, so 70 looks fill the deadline."""

        now = 0.0

        def monotonic(self):
            self.now += 0.1
            return self.now

    monkeypatch.setattr(transport, "time", Clock())
    with pytest.raises(ips.IpsTimeout) as info:
        client.get_active_jobs("47")

    assert info.value.whole_reply and info.value.request_sent
    assert "the deadline for a whole reply" in str(info.value)


def test_a_gzip_bomb_answering_execute_job_is_a_bad_reply_with_a_clear_message(job, users, ips_emulator):
    ips_emulator.state.inject("gzip_bomb", operation="executeJob", inflated=2 * transport.MAX_REPLY_BYTES)

    execution = press_run(job, users["IpsUser"])

    assert execution.outcome == "bad_reply"
    assert "IPS sent a reply larger than 20 MB to executeJob" in execution.message
    assert "may or may not have started" in execution.message


def test_a_gzip_bomb_answering_the_active_panel_says_so(client, login, job, ips_emulator):
    ips_emulator.state.inject("gzip_bomb", operation="getActiveJobs", inflated=2 * transport.MAX_REPLY_BYTES)
    login("IpsUser")
    assert look(job.company, ok=False).error  # the watcher's look; the panel reads what it recorded

    response = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX)

    assert response.status_code == 200  # polled again
    assert "IPS sent a reply larger than 20 MB to getActiveJobs" in response.content.decode()
