"""The one door to IPS: every SOAP call of the project goes through here.

This is the only module that imports zeep. It parses each WSDL once per
process, keeps one client per connection, puts an ``authHeader`` and a connect
and read timeout on every call, and turns whatever zeep or requests raise into
the project's own exception types. Results come back as plain dataclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import logging
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import requests
import requests.adapters
import urllib3
import urllib3.connection
import zeep
import zeep.exceptions
from lxml import etree

from . import ipsversions

log = logging.getLogger(__name__)

IPS_NS = "http://www.scene7.com/IpsApi/xsd"
BUNDLED_WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"
# API versions with a bundled WSDL: "" is the unversioned namespace.
BUNDLED_VERSIONS = {v.key: v.wsdl_file for v in ipsversions.VERSIONS}

FAULT_NAMES = {
    10000: "NO_CREDENTIALS",
    10001: "INVALID_CREDENTIALS",
    10002: "INVALID_USER",
    20000: "INVALID_COMPANY",
    20001: "INVALID_REQUEST_USERNAME",
    20002: "INVALID_REQUEST_USER",
    20003: "NO_OPERATION_PERMISSION",
    20004: "NO_IMPERSONATION_PERMISSION",
    20005: "ILLEGAL_PARAMETER_VALUE",
    20006: "ILLEGAL_COMPANY",
    20007: "ILLEGAL_REQUEST_USER",
    20008: "ILLEGAL_ACCESS_GROUP",
    20009: "MISSING_PERMISSION",
    30000: "EXCEPTION",
    30001: "INVALID_PARAMETER",
    30002: "MISSING_PARAMETER",
    30003: "INVALID_REQUEST_XML",
}

REGION_HOSTS = {
    "na": "s7sps1apissl.scene7.com",
    "na-staging": "s7sps1apissl-staging.scene7.com",
    "emea": "s7sps3apissl.scene7.com",
    "emea-staging": "s7sps3apissl-staging.scene7.com",
    "apac": "s7sps5apissl.scene7.com",
    "apac-staging": "s7sps5apissl-staging.scene7.com",
}


def region_service_url(region: str, webapp: str = "scene7") -> str:
    """The IpsApiService address of an Adobe region (see ips-api.md)."""
    return f"https://{REGION_HOSTS[region]}/{webapp}/services/IpsApiService"


# --- Errors -----------------------------------------------------------------


class IpsError(Exception):
    """Anything that went wrong talking to IPS.

    Messages never name the address: ``url`` says where (for staff and the
    log), the message what happened (for everyone)."""

    #: True when the request may have reached IPS (so the job may have run).
    request_sent = False
    #: The service or WSDL address involved, if any.
    url = ""


class IpsFault(IpsError):
    """IPS answered with a SOAP fault."""

    family = "fault"

    def __init__(self, operation: str, code: int | None, reason: str, fault_string: str = ""):
        self.operation = operation
        self.code = code
        self.reason = reason
        self.fault_string = fault_string
        super().__init__(f"IPS refused {operation}: {self.code_label} {reason}".strip())

    @property
    def code_label(self) -> str:
        if self.code is None:
            return ""
        name = FAULT_NAMES.get(self.code)
        return f"{self.code} {name}" if name else str(self.code)


class IpsAuthenticationFault(IpsFault):
    family = "authenticationFault"


class IpsAuthorizationFault(IpsFault):
    family = "authorizationFault"


class IpsApiFault(IpsFault):
    family = "ipsApiFault"


FAULT_TYPES = {
    "authenticationFault": IpsAuthenticationFault,
    "authorizationFault": IpsAuthorizationFault,
    "ipsApiFault": IpsApiFault,
}


class IpsUnavailable(IpsError):
    """IPS could not be reached, or answered something that is not SOAP."""

    def __init__(self, message: str, *, request_sent: bool = False, url: str = ""):
        super().__init__(message)
        self.request_sent = request_sent
        self.url = url


class IpsHttpError(IpsUnavailable):
    """IPS answered, with an HTTP error page instead of SOAP (not unreachable)."""

    def __init__(self, message: str, *, status: int, url: str = ""):
        super().__init__(message, request_sent=True, url=url)
        self.status = status


class IpsTimeout(IpsError):
    """IPS did not answer within the configured timeout."""

    def __init__(self, message: str, *, request_sent: bool, whole_reply: bool = False):
        super().__init__(message)
        self.request_sent = request_sent
        #: The reply came too slowly as a whole (past the deadline), not a silent read.
        self.whole_reply = whole_reply


class IpsMalformedReply(IpsError):
    """IPS answered HTTP 200 with something that is not a valid reply."""

    request_sent = True


# --- Results ----------------------------------------------------------------
#
# Replies are read with lxml by local name, never by zeep's strict schema
# parser: the real service sends elements no bundled WSDL declares (new
# optional fields, job-detail options), in any prefix. Each documented field
# is read with its type from the version table (ipsversions.TYPES, across all
# versions, so a renamed field is read whichever name arrives); anything else
# is ignored.


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    return re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)


def _from_soap(cls, data):
    """Build dataclass ``cls`` from a read value (a dict by element name)."""
    if data is None:
        return None
    values = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("whole"):
            raw = data
        else:
            names = f.metadata.get("soap") or (_camel(f.name),)
            raw = next((data[n] for n in names if data.get(n) is not None), None)
        convert = f.metadata.get("convert")
        values[f.name] = convert(raw) if convert else raw
    return cls(**values)


def _list(cls):
    """Field converter: the items of an array type, as ``cls``."""
    return lambda value: [_from_soap(cls, i) for i in (value or {}).get("items", [])]


def _lenient_int(value):
    """ActiveJob.totalSize is typed string in the reference: a number when it is one."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class JobDetail:
    """The job-detail element closing a ScheduledJob or ActiveJob, by job type."""

    element: str  # e.g. "imageServingPublishJob"
    values: dict


def _job_detail(data) -> JobDetail | None:
    for name in ipsversions.JOB_DETAIL_ELEMENTS:
        if data.get(name) is not None:  # xsi:nil ones say "not this type"
            return JobDetail(name, data[name])
    return None


def _detail_field():
    # Reads the whole item: the detail is whichever job-detail element it holds.
    return field(default=None, metadata={"whole": True, "convert": _job_detail})


@dataclass(frozen=True)
class ScheduledJob:
    company_handle: str
    job_handle: str
    name: str
    original_name: str | None
    type: str | None
    submit_user_email: str | None
    locale: str | None
    description: str | None
    exec_schedule: str | None
    next_fire_time: dt.datetime | None
    time_zone: str | None
    trigger_state: str | None
    detail: JobDetail | None = _detail_field()


@dataclass(frozen=True)
class TaskItemProgress:
    item_name: str | None
    progress: float | None
    progress_message: str | None
    last_progress_update: dt.datetime | None


@dataclass(frozen=True)
class TaskProgress:
    task_type: str | None
    num_processed: int | None
    num_processing: int | None
    num_pending: int | None
    progress: float | None  # 0.0 to 1.0
    progress_message: str | None
    last_progress_update: dt.datetime | None
    task_state: str | None  # from 6.0 on
    items: list = field(
        default_factory=list,
        metadata={"soap": ("taskItemProgressArray",), "convert": _list(TaskItemProgress)},
    )


@dataclass(frozen=True)
class ActiveJob:
    company_handle: str
    job_handle: str
    name: str | None
    original_name: str | None
    type: str | None
    state: str | None
    submit_user_email: str | None
    locale: str | None
    description: str | None
    server_name: str | None
    start_date: dt.datetime | None
    total_size: int | None = field(metadata={"convert": _lenient_int})
    progress: int | None = None
    progress_message: str | None = None
    last_progress_update: dt.datetime | None = None
    task_progress: list = field(
        default_factory=list,
        metadata={"soap": ("taskProgressArray",), "convert": _list(TaskProgress)},
    )
    detail: JobDetail | None = _detail_field()


@dataclass(frozen=True)
class JobLogDetailAux:
    log_message: str | None
    log_type: str | None
    date_created: dt.datetime | None


@dataclass(frozen=True)
class JobLogDetail:
    log_message: str | None
    log_type: str | None
    asset_name: str | None
    asset_type: str | None
    asset_handle: str | None
    aux: list = field(default_factory=list, metadata={"soap": ("auxArray",), "convert": _list(JobLogDetailAux)})


@dataclass(frozen=True)
class JobLog:
    company_handle: str | None
    job_handle: str | None
    job_name: str | None
    original_job_name: str | None
    submit_user_email: str | None
    log_type: str | None
    job_sub_type: str | None
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    description: str | None
    file_success_count: int | None
    file_error_count: int | None
    file_warning_count: int | None
    file_duplicate_count: int | None
    file_update_count: int | None
    total_file_count: int | None
    transfer_success_count: int | None
    transfer_error_count: int | None
    transfer_warning_count: int | None
    fatal_error: bool | None
    detail_total_rows: int | None
    details: list = field(
        default_factory=list, metadata={"soap": ("detailArray",), "convert": _list(JobLogDetail)}
    )

    @property
    def is_final(self) -> bool:
        """A log with its endDate: the run it records is over (ips-api.md)."""
        return self.end_date is not None


@dataclass(frozen=True)
class CompanyInfo:
    company_handle: str
    name: str | None
    root_path: str | None
    expires: dt.datetime | None


@dataclass(frozen=True)
class UserInfo:
    user_handle: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    # ``role`` until 6.0, ``defaultRole`` since.
    default_role: str | None = field(metadata={"soap": ("defaultRole", "role")})
    is_valid: bool | None = None
    password_expires: dt.datetime | None = None


@dataclass(frozen=True)
class Membership:
    company: CompanyInfo = field(metadata={"convert": lambda v: _from_soap(CompanyInfo, v)})
    role: str | None  # None before 6.0: the user's one role applies in every company
    is_active: bool | None


def _membership(item) -> Membership:
    if item.get("company") is None and item.get("companyHandle") is not None:
        # The reference's own example: Company fields straight under membershipArray.
        return Membership(company=_from_soap(CompanyInfo, item), role=item.get("role"), is_active=True)
    return _from_soap(Membership, item)


def _memberships(reply) -> list[Membership]:
    if reply.get("membershipArray") is not None:
        return [_membership(i) for i in reply["membershipArray"].get("items", [])]
    # Before 6.0: companyArray of Company, no role per company.
    return [
        Membership(company=_from_soap(CompanyInfo, c), role=None, is_active=True)
        for c in (reply.get("companyArray") or {}).get("items", [])
    ]


#: Each operation's reply, as the client's methods return it.
CONVERTERS = {
    "getScheduledJobs": lambda r: _list(ScheduledJob)(r.get("jobArray")),
    "getActiveJobs": lambda r: _list(ActiveJob)(r.get("jobArray")),
    "getJobLogs": lambda r: _list(JobLog)(r.get("jobLogArray")),
    "getJobLogDetails": lambda r: _list(JobLog)(r.get("jobLogArray")),
    "checkLogin": lambda r: r.get("status") == "ValidLogin",
    "getCompanyInfo": lambda r: _from_soap(CompanyInfo, r.get("companyInfo")),
    "getUserInfo": lambda r: _from_soap(UserInfo, r.get("userInfo")),
    "getCompanyMembership": _memberships,
}

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _xml_parser():
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _scalar(xsd_type: str, text: str | None, where: str):
    if text is None:
        return "" if xsd_type == "string" else None
    if xsd_type == "string":
        return text
    text = text.strip()
    if text == "":
        return None
    try:
        if xsd_type in ("int", "long"):
            return int(text)
        if xsd_type == "double":
            return float(text)
        if xsd_type == "boolean":
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise ValueError(text)
        if xsd_type == "dateTime":
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise IpsMalformedReply(f"IPS sent {where} = {text[:40]!r}, which is not an xsd:{xsd_type}") from None
    return text


def _read(element, type_name: str, where: str) -> dict:
    """A complex element as {element name: value}, by the type's known fields."""
    known = {f.name: f for f in ipsversions.TYPES[type_name]}
    for also in ipsversions.READ_ALSO.get(type_name, ()):
        known.update({f.name: f for f in ipsversions.TYPES[also] if f.name not in known})
    out: dict = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        f = known.get(name) or (known.get("items") if name == "item" else None)
        if f is None:
            continue  # not modelled: a newer release's field, an option type
        name = f.name
        if child.get(_XSI_NIL) in ("true", "1"):
            value = None
        elif f.type in ipsversions.XSD_TYPES:
            value = _scalar(f.type, child.text, f"{type_name}.{name}")
        else:
            value = _read(child, f.type, f"{type_name}.{name}")
        if f.many:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _return_fields(operation: str) -> dict:
    fields_ = {}
    for v in ipsversions.VERSIONS:
        fields_.update({f.name: f for f in ipsversions.returns(operation, v.key)})
    # Every version's return fields, so a renamed one is read whichever arrives.
    for f in ipsversions.OPERATION_BY_NAME[operation].returns:
        fields_.setdefault(f.name, f)
    return fields_


def _read_return(operation: str, element) -> dict:
    known = _return_fields(operation)
    out = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        f = known.get(name)
        if f is None:
            continue
        if f.type in ipsversions.XSD_TYPES:
            out[name] = _scalar(f.type, child.text, f"{operation}Return.{name}")
        else:
            out[name] = _read(child, f.type, f"{operation}Return.{name}")
    return out


def read_reply(operation: str, content: bytes):
    """The value of a SOAP reply to ``operation``, as the client returns it.

    Raises the IpsFault of a fault reply, IpsMalformedReply for anything that
    is neither. Any namespace and prefix is accepted: the element names decide.
    """
    try:
        root = etree.fromstring(content, _xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        raise IpsMalformedReply(f"IPS answered {operation} with invalid XML") from None
    body = root.find(f"{{{SOAP_ENV}}}Body") if root.tag == f"{{{SOAP_ENV}}}Envelope" else None
    if body is None:
        raise IpsMalformedReply(f"IPS answered {operation} with XML that is not a SOAP envelope")
    children = [c for c in body if isinstance(c.tag, str)]
    fault = next((c for c in children if c.tag == f"{{{SOAP_ENV}}}Fault"), None)
    if fault is not None:
        raise _fault(operation, fault)
    ret = next((c for c in children if etree.QName(c).localname == f"{operation}Return"), None)
    if ret is None:
        raise IpsMalformedReply(
            f"IPS answered {operation} with a reply that is not a valid {operation}Return "
            f"({'an empty body' if not children else etree.QName(children[0]).localname})"
        )
    reply = _read_return(operation, ret)
    convert = CONVERTERS.get(operation)
    if convert is None:
        return None
    try:
        return convert(reply)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise IpsMalformedReply(
            f"IPS answered {operation} with a reply of an unexpected shape ({type(exc).__name__})"
        ) from None


# --- Endpoint and client ----------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call IPS. The password never shows in a repr."""

    service_url: str
    user: str
    password: str = field(repr=False)
    api_version: str = ""
    wsdl_url: str = ""  # empty: the bundled WSDL of api_version
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    app_name: str = "ipsadmin"
    app_version: str = "0"
    locale: str = ""

    def cache_key(self):
        secret = hashlib.sha256(self.password.encode()).hexdigest()
        return dataclasses.replace(self, password=secret)


class _NoWireLog:
    """zeep's transport logs whole envelopes, authHeader password included,
    at DEBUG. Ours logs none, whatever the logging configuration says."""

    def isEnabledFor(self, level):
        return False

    def debug(self, *args, **kwargs):
        pass


_watched = threading.local()


class _Watch:
    """Cuts one call off at its deadline, headers included: shuts its socket when time is up.

    requests' read timeout bounds each socket read, so a reply that trickles
    in (a byte every few seconds, in the headers or the body) would never
    time out without it."""

    def __init__(self, seconds: float):
        self.fired = False
        self._sock = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self):
        _watched.current = self
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        _watched.current = None

    def attach(self, sock) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedConnectionMixin:
    def getresponse(self, *args, **kwargs):
        # The request is out: from here on the answer is what may trickle.
        watch = getattr(_watched, "current", None)
        if watch is not None and self.sock is not None:
            watch.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Transport(zeep.Transport):
    """Posts with a deadline on the whole reply (connect plus read timeout in all), reads it
    ourselves, and follows no redirect: a redirect would re-post the authHeader, passwords
    included, wherever it points."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, operation: threading.local | None = None):
        super().__init__(timeout=connect_timeout + read_timeout, operation_timeout=(connect_timeout, read_timeout))
        self.logger = _NoWireLog()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._operation = operation or threading.local()
        adapter = _WatchedAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @property
    def budget(self) -> float:
        return self.connect_timeout + self.read_timeout

    def post(self, address, message, headers):
        deadline = time.monotonic() + self.budget
        with _Watch(self.budget) as watch:
            try:
                response = self.session.post(
                    address,
                    data=message,
                    headers=headers,
                    timeout=(self.connect_timeout, self.read_timeout),
                    stream=True,
                    allow_redirects=False,
                )
                try:
                    if response.is_redirect:
                        raise IpsHttpError(
                            f"IPS answered HTTP {response.status_code}, a redirect, which the dashboard "
                            "does not follow (the request carries the service account's password)",
                            status=response.status_code,
                        )
                    response._content = self._read_body(response, deadline)
                finally:
                    response.close()
            except IpsError:
                raise
            except Exception:
                if watch.fired:
                    raise self._past_deadline() from None
                raise
        return response

    def _load_remote_data(self, url):
        # A remote WSDL under the same deadline as a call.
        with _Watch(self.budget) as watch:
            try:
                response = self.session.get(url, timeout=(self.connect_timeout, self.read_timeout))
                with contextlib.closing(response):
                    response.raise_for_status()
                    return response.content
            except Exception:
                if watch.fired:
                    raise requests.exceptions.ReadTimeout(f"the WSDL did not arrive within {self.budget:g} s") from None
                raise

    def _read_body(self, response, deadline: float) -> bytes:
        raw = response.raw
        sock = _socket_of(raw)
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._past_deadline()
            if sock is not None:
                try:
                    sock.settimeout(min(self.read_timeout, remaining))
                except OSError:  # closed once the whole body arrived
                    sock = None
            try:
                chunk = raw.read1(65536, decode_content=False)
            except Exception as exc:  # urllib3 wraps socket timeouts its own way
                if time.monotonic() >= deadline - 0.001:
                    raise self._past_deadline() from None
                if "timed out" in str(exc).lower():
                    raise requests.exceptions.ReadTimeout(str(exc)) from None
                raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
        body = b"".join(chunks)
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        try:
            if coding in ("gzip", "x-gzip"):
                body = gzip.decompress(body)
            elif coding == "deflate":
                body = zlib.decompress(body)
        except (OSError, EOFError, zlib.error):
            raise requests.exceptions.ContentDecodingError(f"undecodable {coding} body") from None
        return body

    def _past_deadline(self) -> IpsTimeout:
        operation = getattr(self._operation, "name", "the call")
        return IpsTimeout(
            f"IPS did not finish answering {operation} within {self.budget:g} s "
            f"(the deadline for a whole reply: {self.connect_timeout:g} s to connect + "
            f"{self.read_timeout:g} s to answer)",
            request_sent=True,
            whole_reply=True,
        )


def _socket_of(raw):
    """The socket under a urllib3 response, to bound each read by the deadline."""
    try:
        return raw._fp.fp.raw._sock
    except AttributeError:
        return None


_wsdl_lock = threading.Lock()
_wsdl_source_locks: dict[str, threading.Lock] = {}
_wsdl_cache: dict[str, zeep.Client] = {}
_client_lock = threading.Lock()
_clients: dict[Endpoint, IpsClient] = {}
#: Counts WSDL parses, so a test can prove it happens once per process.
stats = {"wsdl_parses": 0}


def _wsdl_source(endpoint: Endpoint) -> str:
    if endpoint.wsdl_url:
        return endpoint.wsdl_url
    try:
        return str(BUNDLED_WSDL_DIR / BUNDLED_VERSIONS[endpoint.api_version])
    except KeyError:
        raise IpsError(
            f"No bundled WSDL for API version {endpoint.api_version!r}; "
            f"configure a WSDL URL or use one of {sorted(BUNDLED_VERSIONS)}."
        ) from None


def _parsed_wsdl(source: str, connect_timeout: float, read_timeout: float) -> zeep.Client:
    # One lock per source: a slow remote WSDL holds up only its own connections.
    with _wsdl_lock:
        lock = _wsdl_source_locks.setdefault(source, threading.Lock())
    with lock:
        client = _wsdl_cache.get(source)
        if client is None:
            try:
                transport = _Transport(connect_timeout=connect_timeout, read_timeout=read_timeout)
                client = zeep.Client(source, transport=transport)
            except requests.RequestException as exc:
                error = IpsUnavailable(f"Could not load the IPS WSDL ({type(exc).__name__})", url=source)
                raise error from None
            except Exception as exc:
                # An HTML page, broken XML, a schema zeep cannot read: not cached.
                error = IpsError(f"The configured WSDL is not a usable IPS WSDL ({type(exc).__name__})")
                error.url = source
                raise error from None
            if not client.wsdl.bindings or f"{{{IPS_NS}}}authHeader" not in _element_names(client):
                error = IpsError("The configured WSDL is not an IPS WSDL (no SOAP binding or no authHeader)")
                error.url = source
                raise error
            stats["wsdl_parses"] += 1
            _wsdl_cache[source] = client
        return client


def _element_names(client) -> set[str]:
    return {str(e.qname) for e in client.wsdl.types.elements}


def get_client(endpoint: Endpoint) -> IpsClient:
    """The process-wide client of an endpoint (built on first use)."""
    key = endpoint.cache_key()
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = IpsClient(endpoint)
        return client


def clear_clients() -> None:
    """Forget built clients (the parsed WSDLs stay: they never change)."""
    with _client_lock:
        _clients.clear()


class IpsClient:
    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        source = _wsdl_source(endpoint)
        parsed = _parsed_wsdl(source, endpoint.connect_timeout, endpoint.read_timeout)
        self._operation = threading.local()
        transport = _Transport(
            connect_timeout=endpoint.connect_timeout,
            read_timeout=endpoint.read_timeout,
            operation=self._operation,
        )
        # One zeep client per endpoint over the shared parsed WSDL: the
        # transport (session, timeouts) is the per-connection part. zeep builds
        # and sends requests; replies are read by read_reply().
        self._zeep = zeep.Client(
            wsdl=parsed.wsdl, transport=transport, settings=zeep.Settings(raw_response=True)
        )
        binding = next(iter(parsed.wsdl.bindings))
        self._service = self._zeep.create_service(binding, endpoint.service_url)
        self._header_type = self._zeep.get_element(f"{{{IPS_NS}}}authHeader")

    def __repr__(self):
        return f"<IpsClient {self.endpoint.user} at {self.endpoint.service_url}>"

    def close(self) -> None:
        """Close the connections of a client made for one use (not one of get_client's)."""
        self._zeep.transport.session.close()

    def _auth_header(self):
        e = self.endpoint
        return self._header_type(
            user=e.user,
            password=e.password,
            locale=e.locale or None,
            appName=e.app_name,
            appVersion=e.app_version,
        )

    def call(self, operation: str, **params):
        """Call an operation; returns its reply as ``read_reply`` reads it."""
        try:
            return self._call(operation, **params)
        except IpsError as error:
            error.url = error.url or self.endpoint.service_url
            raise

    def _call(self, operation: str, **params):
        params = {k: v for k, v in params.items() if v is not None}
        method = getattr(self._service, operation)
        e = self.endpoint
        self._operation.name = operation
        try:
            response = method(**params, _soapheaders=[self._auth_header()])
        except IpsError:
            raise
        except requests.exceptions.ConnectTimeout:
            error = IpsTimeout(f"IPS did not accept a connection within {e.connect_timeout:g} s", request_sent=False)
            error.url = e.service_url
            raise error from None
        except requests.exceptions.Timeout:
            raise IpsTimeout(
                f"IPS did not answer {operation} within {e.read_timeout:g} s", request_sent=True
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise _connection_error(operation, e.service_url, exc) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.exceptions.TooManyRedirects,
        ) as exc:
            # The request went out; the answer broke off or could not be decoded.
            raise IpsUnavailable(
                f"IPS broke off its answer to {operation} ({type(exc).__name__})", request_sent=True
            ) from None
        except requests.exceptions.RequestException as exc:
            raise IpsUnavailable(f"IPS request failed: {type(exc).__name__}") from None
        except (zeep.exceptions.ValidationError, zeep.exceptions.Error, TypeError, ValueError) as exc:
            # zeep refused to build the request: nothing was sent.
            raise IpsError(f"Could not build the {operation} request: {getattr(exc, 'message', exc)}") from None
        return _reply_of(operation, response)

    # The operations, by their IPS names in snake case.

    def execute_job(self, company_handle: str, job_handle: str) -> None:
        self.call("executeJob", companyHandle=company_handle, jobHandle=job_handle)

    def pause_job(self, company_handle: str, job_handle: str) -> None:
        self.call("pauseJob", companyHandle=company_handle, jobHandle=job_handle)

    def resume_job(self, company_handle: str, job_handle: str) -> None:
        self.call("resumeJob", companyHandle=company_handle, jobHandle=job_handle)

    def stop_job(self, company_handle: str, job_handle: str) -> None:
        self.call("stopJob", companyHandle=company_handle, jobHandle=job_handle)

    def delete_job(self, company_handle: str, job_handle: str) -> None:
        self.call("deleteJob", companyHandle=company_handle, jobHandle=job_handle)

    def get_scheduled_jobs(self, company_handle, *, job_handle=None, original_name=None) -> list[ScheduledJob]:
        return self.call(
            "getScheduledJobs", companyHandle=company_handle, jobHandle=job_handle, originalName=original_name
        )

    def get_active_jobs(self, company_handle=None, *, job_handle=None, original_name=None) -> list[ActiveJob]:
        return self.call(
            "getActiveJobs", companyHandle=company_handle, jobHandle=job_handle, originalName=original_name
        )

    def get_job_logs(
        self,
        company_handle=None,
        *,
        user_handle=None,
        sort_by=None,
        sort_direction=None,
        start_date=None,
        end_date=None,
        num_rows=None,
    ) -> list[JobLog]:
        return self.call(
            "getJobLogs",
            companyHandle=company_handle,
            userHandle=user_handle,
            sortBy=sort_by,
            sortDirection=sort_direction,
            startDate=start_date,
            endDate=end_date,
            numRows=num_rows,
        )

    def get_job_log_details(
        self,
        company_handle,
        *,
        job_handle=None,
        original_name=None,
        log_types=None,
        records_per_page=None,
        results_page=None,
        sort_by=None,
        sort_direction=None,
    ) -> list[JobLog]:
        return self.call(
            "getJobLogDetails",
            companyHandle=company_handle,
            jobHandle=job_handle,
            originalName=original_name,
            logTypeArray={"items": list(log_types)} if log_types else None,
            recordsPerPage=records_per_page,
            resultsPage=results_page,
            sortBy=sort_by,
            sortDirection=sort_direction,
        )

    def check_login(self, email: str, password: str, company_handle: str | None = None) -> bool:
        return self.call("checkLogin", companyHandle=company_handle, email=email, password=password)

    def get_company_info(self, company_handle=None, *, company_name=None) -> CompanyInfo:
        return self.call("getCompanyInfo", companyHandle=company_handle, companyName=company_name)

    def get_user_info(self, user_handle=None, *, email=None) -> UserInfo:
        return self.call("getUserInfo", userHandle=user_handle, email=email)

    def get_company_membership(self, user_handle=None) -> list[Membership]:
        """Each company with the user's role there; ``role`` is None before 6.0."""
        return self.call("getCompanyMembership", userHandle=user_handle)


def _reply_of(operation: str, response):
    """The value of an HTTP reply: SOAP results and faults, or why it is neither."""
    ctype = response.headers.get("Content-Type", "").lower()
    if response.status_code != 200 and "xml" not in ctype:
        raise IpsHttpError(
            f"IPS answered HTTP {response.status_code} ({ctype or 'no content type'}), not SOAP",
            status=response.status_code,
        )
    try:
        return read_reply(operation, response.content)
    except IpsMalformedReply:
        if response.status_code != 200:
            raise IpsHttpError(
                f"IPS answered HTTP {response.status_code} to {operation}, not SOAP", status=response.status_code
            ) from None
        raise


def _fault(operation: str, fault) -> IpsError:
    """The project's exception for a soapenv:Fault element."""
    fault_string = (_child_text(fault, "faultstring") or "").strip()
    detail = next((c for c in fault if isinstance(c.tag, str) and etree.QName(c).localname == "detail"), None)
    if detail is not None:
        for family, cls in FAULT_TYPES.items():
            node = next(
                (n for n in detail.iter() if isinstance(n.tag, str) and etree.QName(n).localname == family), None
            )
            if node is not None:
                code_text = _child_text(node, "code")
                try:
                    code = int(code_text) if code_text is not None else None
                except ValueError:
                    code = None
                reason = _child_text(node, "reason") or fault_string
                return cls(operation, code, reason.strip(), fault_string)
    return IpsFault(operation, None, fault_string or "unknown fault", fault_string)


def _child_text(node, name):
    for child in node:
        if isinstance(child.tag, str) and etree.QName(child).localname == name:
            return child.text
    return None


def _connection_error(operation, url, exc) -> IpsUnavailable:
    text = repr(exc)
    if (
        "Connection aborted" in text  # urllib3: failed after connecting, while sending or reading
        or "RemoteDisconnected" in text
        or "ConnectionResetError" in text
        or "BrokenPipe" in text
    ):
        return IpsUnavailable(
            f"IPS closed the connection during {operation} without answering", request_sent=True
        )
    if "NameResolution" in text or "getaddrinfo" in text:
        return IpsUnavailable("IPS's host name could not be resolved", url=url)
    if "SSLError" in text or isinstance(exc, requests.exceptions.SSLError):
        return IpsUnavailable("the TLS handshake with IPS failed", url=url)
    if "refused" in text.lower():
        return IpsUnavailable("IPS refused the connection", url=url)
    return IpsUnavailable(f"IPS could not be reached ({type(exc).__name__})", url=url)
