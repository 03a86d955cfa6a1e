"""The one door to IPS: every SOAP call of the project goes through here.

This is the only module that imports zeep. It parses each WSDL once per
process, keeps one client per connection, puts an ``authHeader`` and a connect
and read timeout on every call, and turns whatever zeep or requests raise into
the project's own exception types. Results come back as plain dataclasses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree

log = logging.getLogger(__name__)

IPS_NS = "http://www.scene7.com/IpsApi/xsd"
BUNDLED_WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"
# API versions the bundled WSDL covers: "" is the unversioned namespace.
BUNDLED_VERSIONS = {"": "IpsApi.wsdl", "2014-04-03": "IpsApi-2014-04-03.wsdl"}

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
    """Anything that went wrong talking to IPS."""

    #: True when the request may have reached IPS (so the job may have run).
    request_sent = False


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

    def __init__(self, message: str, *, request_sent: bool = False):
        super().__init__(message)
        self.request_sent = request_sent


class IpsTimeout(IpsError):
    """IPS did not answer within the configured timeout."""

    def __init__(self, message: str, *, request_sent: bool):
        super().__init__(message)
        self.request_sent = request_sent


class IpsMalformedReply(IpsError):
    """IPS answered HTTP 200 with something that is not a valid reply."""

    request_sent = True


# --- Results ----------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _from_soap(cls, data):
    """Build dataclass ``cls`` from a serialized zeep value, by field name."""
    if data is None:
        return None
    values = {}
    for f in dataclasses.fields(cls):
        camel = f.metadata.get("soap") or re.sub(r"_(\w)", lambda m: m.group(1).upper(), f.name)
        raw = data.get(camel)
        convert = f.metadata.get("convert")
        values[f.name] = convert(raw) if convert else raw
    return cls(**values)


def _field(reply, name):
    """A field of a reply; zeep already unwraps a reply of one field."""
    if isinstance(reply, dict) and name in reply:
        return reply[name]
    return reply


def _items(container):
    """The items of an array type, however zeep shaped it."""
    if not container:
        return []
    if isinstance(container, list):
        return container
    return container.get("items") or []


def _text(value):
    """Contradictory fields (triggerState, timeZone) are kept as text."""
    return "" if value is None else str(value)


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
    time_zone: str = field(metadata={"convert": _text})
    trigger_state: str = field(metadata={"convert": _text})


@dataclass(frozen=True)
class TaskProgress:
    task_name: str | None
    progress: int | None
    progress_message: str | None


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
    total_size: int | None
    progress: int | None
    progress_message: str | None
    last_progress_update: dt.datetime | None
    task_progress: list = field(
        metadata={
            "soap": "taskProgressArray",
            "convert": lambda v: [_from_soap(TaskProgress, i) for i in _items(v)],
        }
    )


@dataclass(frozen=True)
class JobLogDetail:
    log_message: str | None
    log_type: str | None
    asset_name: str | None
    asset_type: str | None
    asset_handle: str | None
    aux: list = field(metadata={"soap": "auxArray", "convert": lambda v: list(_items(v))})


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
        metadata={
            "soap": "detailArray",
            "convert": lambda v: [_from_soap(JobLogDetail, i) for i in _items(v)],
        }
    )


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
    default_role: str | None
    is_valid: bool | None
    password_expires: dt.datetime | None


@dataclass(frozen=True)
class Membership:
    company: CompanyInfo = field(metadata={"convert": lambda v: _from_soap(CompanyInfo, v)})
    role: str | None
    is_active: bool | None


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


class _Transport(zeep.Transport):
    """Refuses non-SOAP HTTP errors before zeep tries to read them as XML."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logger = _NoWireLog()

    def post(self, address, message, headers):
        response = super().post(address, message, headers)
        ctype = response.headers.get("Content-Type", "").lower()
        if response.status_code != 200 and "xml" not in ctype:
            raise IpsUnavailable(
                f"IPS answered HTTP {response.status_code} ({ctype or 'no content type'}), not SOAP",
                request_sent=True,
            )
        return response


_wsdl_lock = threading.Lock()
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


def _parsed_wsdl(source: str, timeout: float) -> zeep.Client:
    with _wsdl_lock:
        client = _wsdl_cache.get(source)
        if client is None:
            try:
                client = zeep.Client(source, transport=zeep.Transport(timeout=timeout))
            except requests.RequestException as exc:
                raise IpsUnavailable(f"Could not load the IPS WSDL from {source} ({type(exc).__name__})") from None
            except Exception as exc:
                # An HTML page, broken XML, a schema zeep cannot read: not cached.
                raise IpsError(f"{source} is not a usable IPS WSDL ({type(exc).__name__})") from None
            if not client.wsdl.bindings or f"{{{IPS_NS}}}authHeader" not in _element_names(client):
                raise IpsError(f"{source} is not an IPS WSDL (no SOAP binding or no authHeader)")
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
        parsed = _parsed_wsdl(source, endpoint.connect_timeout + endpoint.read_timeout)
        transport = _Transport(
            timeout=endpoint.connect_timeout + endpoint.read_timeout,
            operation_timeout=(endpoint.connect_timeout, endpoint.read_timeout),
        )
        # One zeep client per endpoint over the shared parsed WSDL: the
        # transport (session, timeouts) is the per-connection part.
        self._zeep = zeep.Client(wsdl=parsed.wsdl, transport=transport)
        binding = next(iter(parsed.wsdl.bindings))
        self._service = self._zeep.create_service(binding, endpoint.service_url)
        self._header_type = self._zeep.get_element(f"{{{IPS_NS}}}authHeader")

    def __repr__(self):
        return f"<IpsClient {self.endpoint.user} at {self.endpoint.service_url}>"

    def _auth_header(self):
        e = self.endpoint
        return self._header_type(
            user=e.user,
            password=e.password,
            locale=e.locale or None,
            appName=e.app_name,
            appVersion=e.app_version,
        )

    def call(self, operation: str, convert=None, **params):
        """Call an operation; returns ``convert(reply)``, the reply as dicts and lists."""
        params = {k: v for k, v in params.items() if v is not None}
        method = getattr(self._service, operation)
        e = self.endpoint
        try:
            result = method(**params, _soapheaders=[self._auth_header()])
        except IpsError:
            raise
        except zeep.exceptions.Fault as exc:
            raise _fault(operation, exc) from None
        except requests.exceptions.ConnectTimeout:
            raise IpsTimeout(
                f"IPS at {e.service_url} did not accept a connection within {e.connect_timeout:g} s",
                request_sent=False,
            ) from None
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
        except zeep.exceptions.ValidationError as exc:
            # zeep refused to build the request: nothing was sent.
            raise IpsError(f"Could not build the {operation} request: {exc.message}") from None
        except zeep.exceptions.TransportError as exc:
            if exc.status_code == 200:
                raise IpsMalformedReply(f"IPS answered {operation} with invalid XML") from None
            raise IpsUnavailable(
                f"IPS answered HTTP {exc.status_code} to {operation}, not SOAP", request_sent=True
            ) from None
        except (IndexError, etree.XMLSyntaxError, zeep.exceptions.Error, ValueError, TypeError) as exc:
            # zeep crashes with IndexError on an empty <soap:Body/>.
            raise IpsMalformedReply(
                f"IPS answered {operation} with a reply that is not a valid {operation}Return "
                f"({type(exc).__name__})"
            ) from None
        reply = zeep.helpers.serialize_object(result, dict)
        if convert is None:
            return reply
        try:
            return convert(reply)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise IpsMalformedReply(
                f"IPS answered {operation} with a reply of an unexpected shape ({type(exc).__name__})"
            ) from None

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

    def get_scheduled_jobs(self, company_handle, *, job_handle=None, original_name=None):
        return self.call(
            "getScheduledJobs",
            _list_of(ScheduledJob, "jobArray"),
            companyHandle=company_handle,
            jobHandle=job_handle,
            originalName=original_name,
        )

    def get_active_jobs(self, company_handle=None, *, job_handle=None, original_name=None):
        return self.call(
            "getActiveJobs",
            _list_of(ActiveJob, "jobArray"),
            companyHandle=company_handle,
            jobHandle=job_handle,
            originalName=original_name,
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
    ):
        return self.call(
            "getJobLogs",
            _list_of(JobLog, "jobLogArray"),
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
    ):
        return self.call(
            "getJobLogDetails",
            _list_of(JobLog, "jobLogArray"),
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
        return self.call(
            "checkLogin",
            lambda reply: _field(reply, "status") == "ValidLogin",
            companyHandle=company_handle,
            email=email,
            password=password,
        )

    def get_company_info(self, company_handle=None, *, company_name=None) -> CompanyInfo:
        return self.call(
            "getCompanyInfo",
            _one(CompanyInfo, "companyInfo"),
            companyHandle=company_handle,
            companyName=company_name,
        )

    def get_user_info(self, user_handle=None, *, email=None) -> UserInfo:
        return self.call("getUserInfo", _one(UserInfo, "userInfo"), userHandle=user_handle, email=email)

    def get_company_membership(self, user_handle=None) -> list[Membership]:
        return self.call("getCompanyMembership", _list_of(Membership, "membershipArray"), userHandle=user_handle)


def _list_of(cls, name):
    """Reply converter: the items of array field ``name``, as ``cls``."""
    return lambda reply: [_from_soap(cls, i) for i in _items(_field(reply, name))]


def _one(cls, name):
    """Reply converter: field ``name`` as ``cls``."""
    return lambda reply: _from_soap(cls, _field(reply, name))


def _fault(operation: str, exc: zeep.exceptions.Fault) -> IpsError:
    detail = exc.detail
    if detail is not None:
        for family, cls in FAULT_TYPES.items():
            node = detail.find(f"{{{IPS_NS}}}{family}")
            if node is None:
                node = next((n for n in detail.iter() if etree.QName(n).localname == family), None)
            if node is not None:
                code_text = _child_text(node, "code")
                try:
                    code = int(code_text) if code_text is not None else None
                except ValueError:
                    code = None
                reason = _child_text(node, "reason") or exc.message or ""
                return cls(operation, code, reason.strip(), exc.message or "")
    if exc.message == "Unknown fault occured" or (exc.code is None and not exc.message):
        # zeep's word for an XML reply without a Fault in it.
        return IpsMalformedReply(f"IPS answered {operation} with a reply that is neither a result nor a fault")
    return IpsFault(operation, None, exc.message or "unknown fault", exc.message or "")


def _child_text(node, name):
    for child in node:
        if etree.QName(child).localname == name:
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
        return IpsUnavailable(f"IPS host of {url} could not be resolved")
    if "SSLError" in text or isinstance(exc, requests.exceptions.SSLError):
        return IpsUnavailable(f"TLS handshake with {url} failed")
    if "refused" in text.lower():
        return IpsUnavailable(f"IPS at {url} refused the connection")
    return IpsUnavailable(f"IPS at {url} could not be reached ({type(exc).__name__})")
