"""The IPS emulator's WSGI application: SOAP 1.1 and 1.2 on lxml.

No Django and nothing from ``jobs/``. Routes:

* ``GET /scene7/webservice/<file>`` for every bundled ``wsdl/IpsApi*.wsdl``
  (also ``GET /scene7/services/IpsApiService?wsdl`` for ``IpsApi.wsdl``),
  with its ``soap:address`` rewritten to this server (Host header).
* ``POST /scene7/services/IpsApiService``: the SOAP endpoint.
* ``/_emulator/...``: JSON control endpoints for tests running in another
  process (reset, inject, calls, config, clock, users, fire, hold, remove_job).
  Local testing only: they have no authentication, so never expose the
  emulator beyond localhost.

Every reply carries a ``Date`` header in the emulator's clock (``state.now()``),
not the real time, so a client can tell how IPS's clock differs from its own.
IPS's own scheduler (``state.fire_due``) catches up at the start of every SOAP
dispatch and control call.

A SOAP request goes: parse -> fault injection -> authenticate -> required
parameters -> authorize -> execute (the last four in ``state.py``).

Protocol choices where the IPS reference leaves room (also in README.md):

* The namespaces served are the target namespaces of the bundled WSDLs. The
  reply uses the namespace of the request's body element and has the shapes
  that namespace's WSDL declares (``schema.py``). Any prefix or a default
  namespace is accepted; parameters are read by local name.
* SOAPAction: when the header is present and not empty, its value (quotes
  stripped; for a URI, the part after the last ``/``, ``#`` or ``:``) must name the
  operation of the body element, else ``ipsApiFault 30003
  INVALID_REQUEST_XML``. An absent or empty SOAPAction trusts the body.
* SOAP version: the request's Envelope namespace decides (1.1
  ``http://schemas.xmlsoap.org/soap/envelope/``, 1.2
  ``http://www.w3.org/2003/05/soap-envelope``), and every answer to it, faults
  included, is in that version: ``text/xml`` for 1.1, ``application/soap+xml``
  for 1.2. A 1.2 request names its action in the Content-Type's ``action``
  parameter (checked as SOAPAction is; a SOAPAction header is ignored there).
  A Content-Type of the other SOAP version than the Envelope's is ``30003``.
  A 1.2 fault has env:Code/env:Value (``Sender``, or ``Receiver`` for 30000),
  env:Reason/env:Text and env:Detail with the same fault element.
* Not well-formed XML, no SOAP Envelope/Body, no or several body
  elements, a namespace no WSDL declares, or an operation unknown (to the
  emulator or to that namespace's WSDL): ``30003``.
* Credentials: ``authHeader`` (namespace ``http://www.scene7.com/IpsApi/xsd``;
  also accepted in the request's own namespace) wins over HTTP Basic, which
  wins over the legacy ``AuthUser``/``AuthPassword`` header elements
  (namespace ``http://www.scene7.com/IpsApi``).
* Faults answer HTTP 500 unless the authHeader's ``faultHttpStatusCode`` says
  otherwise (also for injected ``soap_fault``). ``faultcode`` is
  ``soapenv:Client`` except ``soapenv:Server`` for 30000 EXCEPTION.
* gzip: SOAP replies (results and faults) are gzip-compressed when
  ``Accept-Encoding`` allows gzip, unless the authHeader says
  ``gzipResponse`` false. Injected broken replies are never compressed,
  except ``gzip_bomb``, which is nothing else.
* Void operations (executeJob, pauseJob, resumeJob, stopJob, deleteJob)
  answer an empty ``<operation>Return``; with ``state.void_empty_body`` they
  answer an empty Body instead ("Response: None" in the reference).
* Fault injection is matched after parsing (so it knows the operation and the
  jobHandle) and before authentication. ``trickle`` executes the call, then
  sends the reply one byte per interval (a streaming WSGI iterable).
  ``gzip_bomb`` answers a gzip reply, small on the wire, that inflates to
  ``inflated`` bytes, whatever ``Accept-Encoding`` says.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import struct
import time
import traceback
import zlib
from datetime import timezone
from email.utils import format_datetime
from http import HTTPStatus
from urllib.parse import parse_qs

from lxml import etree

from .clock import ManualClock
from .loader import to_datetime
from .schema import WSDL_DIR, WsdlSchema, load_wsdls
from .state import OPERATIONS, EmulatorState, IpsFault, StaleCall

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
#: SOAP version -> its Envelope namespace.
ENVELOPES = {"1.1": SOAP_ENV, "1.2": SOAP12_ENV}
# authHeader and the three fault elements live here whatever the API version.
NS_BASE = "http://www.scene7.com/IpsApi/xsd"
NS_LEGACY = "http://www.scene7.com/IpsApi"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"

WSDL_PREFIX = "/scene7/webservice/"
SERVICE_PATH = "/scene7/services/IpsApiService"
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
SOAP12_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
#: SOAP version -> the Content-Type of its messages.
CONTENT_TYPES = {"1.1": XML_CONTENT_TYPE, "1.2": SOAP12_CONTENT_TYPE}
_MEDIA_VERSIONS = {"text/xml": "1.1", "application/soap+xml": "1.2"}
#: "Response: None" in the reference: what may answer an empty Body.
VOID_OPERATIONS = ("executeJob", "pauseJob", "resumeJob", "stopJob", "deleteJob")


class DropConnection(Exception):
    """Raised by the app to make the server close the socket without a reply
    (see server.py, which catches it)."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


class Response:
    def __init__(self, status: int, body: bytes, content_type: str, headers=None,
                 stream=None):
        self.status = status
        self.body = body
        self.headers = [("Content-Type", content_type)] + list(headers or [])
        #: An iterable sending ``body`` instead of the app (see trickle).
        self.stream = stream


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Status"


def _accepts_gzip(environ) -> bool:
    for part in environ.get("HTTP_ACCEPT_ENCODING", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().replace(" ", "")
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def _truthy(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() in ("true", "1")


# ------------------------------------------------------------ serialization
def _envelope(soap_version: str = "1.1") -> tuple[etree._Element, etree._Element]:
    ns = ENVELOPES[soap_version]
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soapenv": ns})
    body = etree.SubElement(env, f"{{{ns}}}Body")
    return env, body


def _serialize(env) -> bytes:
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def result_envelope(schema: WsdlSchema, operation: str, result: dict | None,
                    soap_version: str = "1.1") -> bytes:
    """The reply in the shapes ``schema`` (the request namespace's WSDL) declares."""
    env, body = _envelope(soap_version)
    body.append(schema.reply(operation, result, nsmap={"ns1": schema.namespace}))
    return _serialize(env)


# SOAP 1.1 faultcode -> SOAP 1.2 env:Code/env:Value.
_SOAP12_CODES = {"Client": "Sender", "Server": "Receiver"}


def fault_envelope(fault: IpsFault, soap_version: str = "1.1") -> bytes:
    env, body = _envelope(soap_version)
    ns = ENVELOPES[soap_version]
    el = etree.SubElement(body, f"{{{ns}}}Fault")
    if soap_version == "1.2":
        code = etree.SubElement(el, f"{{{ns}}}Code")
        value = _SOAP12_CODES.get(fault.faultcode, fault.faultcode)
        etree.SubElement(code, f"{{{ns}}}Value").text = f"soapenv:{value}"
        reason = etree.SubElement(el, f"{{{ns}}}Reason")
        text = etree.SubElement(reason, f"{{{ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.faultstring
        detail = etree.SubElement(el, f"{{{ns}}}Detail")
    else:
        etree.SubElement(el, "faultcode").text = f"soapenv:{fault.faultcode}"
        etree.SubElement(el, "faultstring").text = fault.faultstring
        detail = etree.SubElement(el, "detail")
    item = etree.SubElement(detail, f"{{{NS_BASE}}}{fault.family}", nsmap={"ns1": NS_BASE})
    etree.SubElement(item, f"{{{NS_BASE}}}code").text = str(fault.code)
    etree.SubElement(item, f"{{{NS_BASE}}}reason").text = fault.reason
    return _serialize(env)


def empty_body_envelope(soap_version: str = "1.1") -> bytes:
    env, _ = _envelope(soap_version)
    return _serialize(env)


def malformed_xml(ns: str, operation: str, soap_version: str = "1.1") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{ENVELOPES[soap_version]}"><soapenv:Body>'
        f'<ns1:{operation}Return xmlns:ns1="{ns}"><ns1:jobArray><ns1:items>'
        '<ns1:name>truncated &amp unterminated <'
    ).encode("utf-8")


_BOMB_BLOCK = 1 << 20  # spaces per repeated deflate block


def gzip_bomb(ns: str, operation: str, inflated: int, soap_version: str = "1.1") -> bytes:
    """A gzip member that inflates to ``inflated`` bytes (at least the envelope's) of a
    well-formed reply, padded with spaces: about a thousandth of that on the wire.

    Built without compressing it all: a deflate block of 1 MiB of spaces, flushed so that it
    stands alone, repeated; only the CRC runs over every byte."""
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="{ENVELOPES[soap_version]}">'
            f'<soapenv:Body><ns1:{operation}Return xmlns:ns1="{ns}">').encode()
    tail = f"</ns1:{operation}Return></soapenv:Body></soapenv:Envelope>".encode()
    padding = max(0, inflated - len(head) - len(tail))
    blocks, rest = divmod(padding, _BOMB_BLOCK)
    spaces = b" " * _BOMB_BLOCK

    def deflated(data: bytes, flush: int) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(data) + c.flush(flush)

    block = deflated(spaces, zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(blocks):
        crc = zlib.crc32(spaces, crc)
    crc = zlib.crc32(spaces[:rest] + tail, crc)
    size = len(head) + padding + len(tail)
    return b"".join([
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff",  # gzip header: deflate, no name, mtime 0
        deflated(head, zlib.Z_FULL_FLUSH), block * blocks, deflated(spaces[:rest] + tail, zlib.Z_FINISH),
        struct.pack("<II", crc, size & 0xFFFFFFFF),
    ])


HTML_500 = (b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
            b"<body><h1>Internal Server Error</h1><p>The server encountered an internal "
            b"error and was unable to complete your request (emulated).</p></body></html>")


# ----------------------------------------------------------------- request
class SoapRequest:
    """What the emulator needs from one parsed SOAP request."""

    def __init__(self):
        self.namespace = NS_BASE
        #: The Envelope's SOAP version: every answer to the request is in it.
        self.soap_version = "1.1"
        self.schema: WsdlSchema | None = None
        self.operation: str | None = None
        self.params: dict = {}
        self.credentials: tuple[str, str] | None = None
        self.fault_status = 500
        self.gzip_response: bool | None = None
        self.locale: str | None = None


def _local(el) -> str:
    return etree.QName(el).localname


def _children(el):
    return [c for c in el if isinstance(c.tag, str)]


def parse_soap(body: bytes, soap_action: str | None, authorization: str | None,
               req: SoapRequest, schemas: dict[str, WsdlSchema], content_type: str | None = None) -> None:
    """Fill ``req`` from the raw request; raise IpsFault 30003 when invalid.
    The SOAP version and the header options (faultHttpStatusCode, ...) are read
    before anything about the body can fail, so that they apply to those faults too."""
    try:
        root = etree.fromstring(body, _parser()) if body.strip() else None
    except etree.XMLSyntaxError as exc:
        raise IpsFault(30003, f"Request is not well-formed XML: {exc}") from None
    version = next((v for v, ns in ENVELOPES.items() if root is not None and root.tag == f"{{{ns}}}Envelope"),
                   None)
    if version is None:
        raise IpsFault(30003, "Request is not a SOAP Envelope (neither SOAP 1.1 nor SOAP 1.2)")
    req.soap_version = version
    env = ENVELOPES[version]
    header = root.find(f"{{{env}}}Header")
    body_el = root.find(f"{{{env}}}Body")
    if header is not None:
        _read_header(header, req, schemas)
    media, params = _content_type(content_type)
    if _MEDIA_VERSIONS.get(media, version) != version:
        raise IpsFault(30003, f"Content-Type '{media}' does not carry a SOAP {version} Envelope")
    if version == "1.2":
        # SOAP 1.2 has no SOAPAction header: the action is a Content-Type parameter.
        soap_action = params.get("action")
    if body_el is None:
        raise IpsFault(30003, "SOAP Envelope has no Body")
    elements = _children(body_el)
    if len(elements) != 1:
        raise IpsFault(30003, f"SOAP Body must hold exactly one element, not {len(elements)}")
    op_el = elements[0]
    qname = etree.QName(op_el)
    if qname.namespace in schemas:
        req.namespace = qname.namespace
        req.schema = schemas[qname.namespace]
    else:
        raise IpsFault(30003, f"Unsupported namespace '{qname.namespace}' of body element "
                              f"'{qname.localname}'")
    name = qname.localname
    operation = name[: -len("Param")] if name.endswith("Param") else None
    if operation not in OPERATIONS or not req.schema.declares(operation):
        raise IpsFault(30003, f"Unknown operation element '{name}'")
    if soap_action:
        action = soap_action.strip().strip('"').strip("'").strip()
        action = re.split(r"[/#:]", action.rstrip("/"))[-1]
        if action and action != operation:
            raise IpsFault(30003, f"SOAPAction '{soap_action}' does not match body element "
                                  f"'{name}'")
    req.operation = operation
    req.schema.check_params(operation, op_el)  # what this version does not declare: 30003
    for child in _children(op_el):
        items = _children(child)
        if items:
            req.params[_local(child)] = [c.text or "" for c in items]
        else:
            req.params[_local(child)] = child.text or ""
    if req.credentials is None and authorization:
        req.credentials = _basic(authorization)
    if req.credentials is None and header is not None:
        user = header.find(f"{{{NS_LEGACY}}}AuthUser")
        password = header.find(f"{{{NS_LEGACY}}}AuthPassword")
        if user is not None and (user.text or "").strip():
            req.credentials = ((user.text or "").strip(),
                               (password.text or "") if password is not None else "")


def _content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """A Content-Type header as (media type, {parameter: value}), quotes stripped."""
    media, *parts = (value or "").split(";")
    params = {}
    for part in parts:
        name, sep, val = part.partition("=")
        if sep:
            params[name.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), params


def _read_header(header, req: SoapRequest, schemas) -> None:
    auth = None
    for ns in (NS_BASE, *schemas):
        auth = header.find(f"{{{ns}}}authHeader")
        if auth is not None:
            break
    if auth is None:
        return
    fields = {_local(c): (c.text or "") for c in _children(auth)}
    if fields.get("user", "").strip():
        req.credentials = (fields["user"].strip(), fields.get("password", ""))
    else:
        # An authHeader without a user: no credentials (10000), whatever else
        # came along.
        req.credentials = ("", "")
    try:
        status = int(fields.get("faultHttpStatusCode", "").strip())
        if 100 <= status <= 599:
            req.fault_status = status
    except ValueError:
        pass
    req.gzip_response = _truthy(fields.get("gzipResponse"))
    req.locale = fields.get("locale") or None


def _basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None


# --------------------------------------------------------------------- app
class EmulatorApp:
    """WSGI callable. ``state`` is the live :class:`EmulatorState`; the
    namespaces served are those of the WSDLs found in ``wsdl_dir``."""

    def __init__(self, state: EmulatorState, wsdl_dir=WSDL_DIR):
        self.state = state
        self.schemas: dict[str, WsdlSchema] = load_wsdls(wsdl_dir)
        self.wsdl_files = {s.filename: s for s in self.schemas.values()}
        base = self.schemas.get(NS_BASE) or next(iter(self.schemas.values()))
        self.default_wsdl = base.filename

    def __call__(self, environ, start_response):
        try:
            response = self.route(environ)
        except DropConnection:
            raise
        except Exception:  # pragma: no cover - last resort
            traceback.print_exc()
            response = Response(500, fault_envelope(IpsFault(30000, "Internal emulator error")),
                                XML_CONTENT_TYPE)
        # Date in IPS's own clock, so a client can tell how its clock differs; wsgiref adds
        # its own (the real time) only when the app sends none.
        date = format_datetime(self.state.now().astimezone(timezone.utc), usegmt=True)
        headers = response.headers + [("Content-Length", str(len(response.body))), ("Date", date)]
        start_response(_status_line(response.status), headers)
        if response.stream is not None:
            return response.stream
        return [response.body]

    def route(self, environ) -> Response:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if path.startswith(WSDL_PREFIX) and path[len(WSDL_PREFIX):] in self.wsdl_files:
            if method != "GET":
                return _text_response(405, "Use GET for the WSDL")
            return self.wsdl(environ, path[len(WSDL_PREFIX):])
        if path == SERVICE_PATH:
            if method == "POST":
                return self.soap(environ)
            if method == "GET" and "wsdl" in {k.lower() for k in query}:
                return self.wsdl(environ, self.default_wsdl)
            return _text_response(405, "The IPS service answers SOAP POST requests")
        if path.startswith("/_emulator/"):
            return self.control(environ, method, path[len("/_emulator/"):], query)
        return _text_response(404, f"Not found: {path}")

    # ----------------------------------------------------------------- WSDL
    def wsdl(self, environ, filename: str) -> Response:
        tree = etree.parse(str(self.wsdl_files[filename].path), _wsdl_parser())
        location = self.base_url(environ) + SERVICE_PATH
        for address in tree.iter(f"{{{WSDL_SOAP}}}address", f"{{{WSDL_SOAP12}}}address"):
            address.set("location", location)
        body = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        return Response(200, body, XML_CONTENT_TYPE)

    @staticmethod
    def base_url(environ) -> str:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST")
        if not host:
            host = f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT', '80')}"
        return f"{scheme}://{host}"

    # ----------------------------------------------------------------- SOAP
    def soap(self, environ) -> Response:
        raw = _read_body(environ)
        req = SoapRequest()
        use_gzip = _accepts_gzip(environ)
        try:
            parse_soap(raw, environ.get("HTTP_SOAPACTION"), environ.get("HTTP_AUTHORIZATION"), req,
                       self.schemas, content_type=environ.get("CONTENT_TYPE"))
        except IpsFault as fault:
            return self._soap_response(fault_envelope(fault, req.soap_version), req.fault_status,
                                       use_gzip and req.gzip_response is not False, soap_version=req.soap_version)
        use_gzip = use_gzip and req.gzip_response is not False
        op, params, version = req.operation, req.params, req.soap_version
        job_handle = params.get("jobHandle") if isinstance(params.get("jobHandle"), str) else None
        company = params.get("companyHandle") if isinstance(params.get("companyHandle"), str) else None
        generation = self.state.generation
        injection = self.state.take_injection(op, job_handle or None)
        self.state.record_call(op, req.credentials[0] if req.credentials else None,
                               company or None, job_handle or None, req.namespace,
                               injection.kind if injection else None, soap_version=version)
        if injection is not None:
            kind, p = injection.kind, injection.params
            if kind == "latency":
                time.sleep(p["seconds"])
            elif kind == "soap_fault":
                fault = IpsFault(p["code"], p["reason"], family=p.get("fault"),
                                 faultcode=p.get("faultcode"), faultstring=p.get("faultstring"))
                return self._soap_response(fault_envelope(fault, version), req.fault_status, use_gzip,
                                           soap_version=version)
            elif kind == "http_500_html":
                return Response(500, HTML_500, "text/html; charset=utf-8")
            elif kind == "malformed_xml":
                return Response(200, malformed_xml(req.namespace, op, version), CONTENT_TYPES[version])
            elif kind == "empty_body":
                return Response(200, empty_body_envelope(version), CONTENT_TYPES[version])
            elif kind == "gzip_bomb":
                # Whatever Accept-Encoding says: a hostile server does not ask.
                return Response(200, gzip_bomb(req.namespace, op, p["inflated"], version), CONTENT_TYPES[version],
                                [("Content-Encoding", "gzip")])
            elif kind == "drop_connection":
                raise DropConnection()
        try:
            # A call that slept through a reset() (its test is over) must not act on the next
            # test's state: dispatch checks that under its lock.
            result = self.state.dispatch(op, params, req.credentials, generation=generation)
        except StaleCall:
            raise DropConnection() from None
        except IpsFault as fault:
            response = self._soap_response(fault_envelope(fault, version), req.fault_status, use_gzip,
                                           soap_version=version)
        else:
            if op in VOID_OPERATIONS and self.state.void_empty_body:
                body = empty_body_envelope(version)  # done, and "Response: None"
            else:
                body = result_envelope(req.schema, op, result, version)
            response = self._soap_response(body, 200, use_gzip, soap_version=version)
        if injection is not None and injection.kind == "trickle":
            response.stream = _trickle(response.body, injection.params["interval"], self.state)
        return response

    @staticmethod
    def _soap_response(body: bytes, status: int, use_gzip: bool, soap_version: str = "1.1") -> Response:
        content_type = CONTENT_TYPES[soap_version]
        if use_gzip:
            return Response(status, gzip.compress(body, mtime=0), content_type,
                            [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")])
        return Response(status, body, content_type, [("Vary", "Accept-Encoding")])

    # -------------------------------------------------------------- control
    def control(self, environ, method: str, name: str, query: dict | None = None) -> Response:
        # IPS's scheduler catches up first, as at a SOAP dispatch: a test that moved the clock
        # sees the runs it fired in what it asks next.
        self.state.fire_due()
        handler = CONTROL_HANDLERS.get((method, name))
        if method != "POST":
            if handler is not None:
                return handler(self.state, query)
            if ("POST", name) in CONTROL_HANDLERS:
                return _json(405, {"error": f"use POST /_emulator/{name}"})
            return _json(404, {"error": f"unknown control endpoint {name!r}"})
        # Bad JSON is a 400 whatever the endpoint, so it is read before the lookup.
        try:
            data = _read_json(environ)
        except ValueError as exc:
            return _json(400, {"error": f"invalid JSON: {exc}"})
        if handler is None:
            return _json(404, {"error": f"unknown control endpoint {name!r}"})
        return handler(self.state, data)


# ------------------------------------------------------------ control endpoints
# handler(state, data) -> Response, as operations.HANDLERS is for SOAP; data is
# the POSTed JSON (for a GET, the query string as parse_qs gives it).
def _get_calls(state: EmulatorState, query) -> Response:
    query = {k: v[-1] for k, v in (query or {}).items()}
    unknown = set(query) - {"operation", "companyHandle", "user", "since", "until", "count"}
    if unknown:
        return _json(400, {"error": f"unknown parameters {sorted(unknown)}"})
    try:
        since, until = (to_datetime(_plus(query.get(k)) or None) for k in ("since", "until"))
    except ValueError:
        return _json(400, {"error": "since and until must be ISO date-times"})
    calls = state.calls_matching(operation=query.get("operation") or None,
                                 company_handle=query.get("companyHandle") or None,
                                 user=query.get("user") or None, since=since, until=until)
    if _truthy(query.get("count")):
        # Counts only: cheap to poll (a bench counting calls per company per minute).
        operations, companies = {}, {}
        for c in calls:
            operations[c["operation"]] = operations.get(c["operation"], 0) + 1
            key = c["company_handle"] or ""
            companies[key] = companies.get(key, 0) + 1
        return _json(200, {"count": len(calls), "operations": operations, "companies": companies})
    return _json(200, [
        {"operation": c["operation"], "user": c["user"],
         "companyHandle": c["company_handle"], "jobHandle": c["job_handle"],
         "time": c["time"], "namespace": c["namespace"], "injected": c["injected"],
         "soap_version": c["soap_version"]}
        for c in calls])


def _plus(value: str | None) -> str | None:
    """An offset's "+" that came unencoded in a query string (and so as a space)."""
    if value and len(value) > 6 and value[-6] == " " and value[-3] == ":":
        return value[:-6] + "+" + value[-5:]
    return value


def _get_injections(state: EmulatorState, data) -> Response:
    return _json(200, state.injections)


def _get_clock(state: EmulatorState, data) -> Response:
    return _json(200, _clock_info(state))


def _post_reset(state: EmulatorState, data) -> Response:
    state.reset()
    return _json(200, {"ok": True})


def _post_inject(state: EmulatorState, data) -> Response:
    if not isinstance(data, dict) or "kind" not in data:
        return _json(400, {"error": "send a JSON object with at least 'kind'"})
    data = dict(data)
    kind = data.pop("kind")
    try:
        injection = state.inject(kind, **data)
    except (TypeError, ValueError) as exc:
        return _json(400, {"error": str(exc)})
    return _json(200, {"ok": True, "injection": injection.describe()})


def _post_config(state: EmulatorState, data) -> Response:
    if not isinstance(data, dict):
        return _json(400, {"error": "send a JSON object"})
    for flag in ("void_empty_body", "stop_takes_run_handles_only", "scheduler"):
        if not isinstance(data.get(flag, False), bool):
            return _json(400, {"error": f"{flag} must be true or false"})
    if "job_duration" in data:
        try:
            duration = float(data["job_duration"])
        except (TypeError, ValueError):
            return _json(400, {"error": "job_duration must be a number of seconds"})
        if duration < 0:
            return _json(400, {"error": "job_duration must not be negative"})
        state.job_duration = duration
    answer = {"ok": True, "job_duration": state.job_duration}
    if "void_empty_body" in data:
        state.void_empty_body = answer["void_empty_body"] = data["void_empty_body"]
    if "stop_takes_run_handles_only" in data:
        state.stop_takes_run_handles_only = answer["stop_takes_run_handles_only"] = data["stop_takes_run_handles_only"]
    if "scheduler" in data:
        state.scheduler = answer["scheduler"] = data["scheduler"]
    return _json(200, answer)


# The keyword arguments of EmulatorState.change_user besides the email.
_USER_FIELDS = ("default_role", "memberships", "password_expires", "is_valid", "password")


def _post_users(state: EmulatorState, data) -> Response:
    if not isinstance(data, dict) or not isinstance(data.get("email"), str):
        fields = ", ".join(f'"{f}"' for f in _USER_FIELDS)
        return _json(400, {"error": f'send {{"email": ..., and any of {fields}}}'})
    changes = {k: v for k, v in data.items() if k != "email"}
    unknown = set(changes) - set(_USER_FIELDS)
    if unknown:
        return _json(400, {"error": f"unknown fields {sorted(unknown)}"})
    if "memberships" in changes:
        if not isinstance(changes["memberships"], dict):
            return _json(400, {"error": "memberships maps company handles to a role, [role, active] or null"})
        changes["memberships"] = {str(k): (tuple(v) if isinstance(v, list) else v)
                                  for k, v in changes["memberships"].items()}
    if "password_expires" in changes:
        try:
            changes["password_expires"] = to_datetime(changes["password_expires"])
        except ValueError:
            return _json(400, {"error": "password_expires must be an ISO date-time or null"})
    try:
        user = state.change_user(data["email"], **changes)
    except ValueError as exc:
        return _json(400, {"error": str(exc)})
    return _json(200, {"ok": True, "email": user.email, "default_role": user.default_role,
                       "memberships": {c: [m.role, m.active] for c, m in user.memberships.items()}})


def _post_fire(state: EmulatorState, data) -> Response:
    if not isinstance(data, dict) or not isinstance(data.get("job_handle"), str):
        return _json(400, {"error": 'send {"job_handle": "<scheduled job handle>"}'})
    try:
        run = state.fire_schedule(data["job_handle"])
    except ValueError as exc:
        return _json(409, {"error": str(exc)})
    return _json(200, {"ok": True, "run_handle": run})


def _post_clock(state: EmulatorState, data) -> Response:
    if not isinstance(data, dict) or set(data) - {"advance", "shift"}:
        return _json(400, {"error": 'send {"advance": seconds} and/or {"shift": seconds}'})
    try:
        seconds = float(data.get("advance", 0))
        if seconds < 0 or seconds != seconds:
            raise ValueError
    except (TypeError, ValueError):
        return _json(400, {"error": "advance must be a non-negative number of seconds"})
    try:
        shift = float(data.get("shift", 0))
        if shift != shift or abs(shift) == float("inf"):
            raise ValueError
    except (TypeError, ValueError):
        return _json(400, {"error": "shift must be a number of seconds"})
    if "advance" in data or "shift" not in data:
        state.advance(seconds)  # {} still freezes time, as before
    if shift:
        state.shift(shift)
    return _json(200, {"ok": True, **_clock_info(state)})


def _job_handle_of(data) -> str | None:
    handle = data.get("job_handle") if isinstance(data, dict) else None
    return handle if isinstance(handle, str) else None


def _post_hold(state: EmulatorState, data) -> Response:
    handle = _job_handle_of(data)
    if handle is None or not isinstance(data.get("held", True), bool):
        return _json(400, {"error": 'send {"job_handle": "<scheduled job handle>", "held": true|false}'})
    try:
        state.hold(handle, data.get("held", True))
    except ValueError as exc:
        return _json(404, {"error": str(exc)})
    return _json(200, {"ok": True, "held": state.held})


def _post_remove_job(state: EmulatorState, data) -> Response:
    handle = _job_handle_of(data)
    if handle is None:
        return _json(400, {"error": 'send {"job_handle": "<scheduled job handle>"}'})
    try:
        state.remove_job(handle)
    except ValueError as exc:
        return _json(404, {"error": str(exc)})
    return _json(200, {"ok": True})


#: (HTTP method, path after /_emulator/) -> handler.
CONTROL_HANDLERS = {
    ("GET", "calls"): _get_calls,
    ("GET", "injections"): _get_injections,
    ("GET", "clock"): _get_clock,
    ("POST", "reset"): _post_reset,
    ("POST", "inject"): _post_inject,
    ("POST", "config"): _post_config,
    ("POST", "users"): _post_users,
    ("POST", "fire"): _post_fire,
    ("POST", "clock"): _post_clock,
    ("POST", "hold"): _post_hold,
    ("POST", "remove_job"): _post_remove_job,
}


def _clock_info(state: EmulatorState) -> dict:
    return {"manual": isinstance(state.clock, ManualClock),
            "now": state.now().isoformat(timespec="milliseconds")}


def _trickle(body: bytes, interval: float, state: EmulatorState):
    """Yield ``body`` one byte per ``interval`` seconds. Stops early, quietly,
    when the state is reset (the test that asked for it is over); a client
    that hangs up ends it too (the server's next write fails)."""
    generation = state.generation
    for i in range(len(body)):
        if i:
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if state.generation != generation:
                    return
                time.sleep(min(left, 0.05))
        if state.generation != generation:
            return
        yield body[i:i + 1]


def _wsdl_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def _read_body(environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _read_json(environ):
    raw = _read_body(environ)
    if not raw.strip():
        return {}
    return json.loads(raw.decode("utf-8"))


def _json(status: int, data) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False).encode("utf-8"),
                    "application/json; charset=utf-8")


def _text_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), "text/plain; charset=utf-8")


def make_app(state: EmulatorState, wsdl_dir=None) -> EmulatorApp:
    return EmulatorApp(state, wsdl_dir or WSDL_DIR)
