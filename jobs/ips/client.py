"""The client: one per endpoint over a WSDL parsed once per process, an
authHeader on every call, and whatever zeep or requests raise turned into the
project's exceptions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import zeep
import zeep.exceptions
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding

from .. import ipsversions, metrics
from .errors import (
    IpsApiFault,
    IpsAuthenticationFault,
    IpsAuthorizationFault,
    IpsError,
    IpsFault,
    IpsHttpError,
    IpsMalformedReply,
    IpsTimeout,
    IpsUnavailable,
)
from .replies import (
    VOID_OPERATIONS,
    ActiveJob,
    CompanyInfo,
    CompanyMembership,
    JobLog,
    ScheduledJob,
    UserInfo,
    read_reply,
)
from .transport import Transport
from .urls import origin_of

IPS_NS = "http://www.scene7.com/IpsApi/xsd"
BUNDLED_WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"
# API versions with a bundled WSDL: "" is the unversioned namespace.
BUNDLED_VERSIONS = {v.key: v.wsdl_file for v in ipsversions.VERSIONS}


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
    #: The SOAP binding of the WSDL to speak: "1.1", "1.2", or "" for 1.1 when the WSDL
    #: has it (the wire the reference documents), else its SOAP 1.2 binding.
    soap_version: str = ""

    def cache_key(self):
        secret = hashlib.sha256(self.password.encode()).hexdigest()
        return dataclasses.replace(self, password=secret)


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
                transport = Transport(connect_timeout=connect_timeout, read_timeout=read_timeout)
                # Fetched where configured, never where it redirects (a request to an internal address),
                # and what it imports only from there.
                transport.session.max_redirects = 0
                transport.wsdl_origin = origin_of(source) if _is_remote(source) else None
                client = zeep.Client(source, transport=transport)
            except IpsError as error:
                error.url = source
                raise
            except requests.TooManyRedirects:
                error = IpsUnavailable("The WSDL URL answered with a redirect, which the dashboard does not follow",
                                       url=source)
                raise error from None
            except requests.RequestException as exc:
                error = IpsUnavailable(f"Could not load the IPS WSDL ({type(exc).__name__})", url=source)
                raise error from None
            except Exception as exc:
                # An HTML page, broken XML, a schema zeep cannot read: not cached.
                error = IpsError(f"The configured WSDL is not a usable IPS WSDL ({type(exc).__name__})")
                error.url = source
                raise error from None
            if not _soap_bindings(client.wsdl) or f"{{{IPS_NS}}}authHeader" not in _element_names(client):
                error = IpsError("The configured WSDL is not an IPS WSDL (no SOAP binding or no authHeader)")
                error.url = source
                raise error
            stats["wsdl_parses"] += 1
            _wsdl_cache[source] = client
        return client


def _is_remote(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _element_names(client) -> set[str]:
    return {str(e.qname) for e in client.wsdl.types.elements}


SOAP_VERSIONS = {"1.1": Soap11Binding, "1.2": Soap12Binding}


def _soap_bindings(wsdl) -> dict[str, str]:
    """The first binding of each SOAP version in ``wsdl``: {"1.1": name, "1.2": name}."""
    found: dict[str, str] = {}
    for name, binding in wsdl.bindings.items():
        for version, cls in SOAP_VERSIONS.items():
            if isinstance(binding, cls):
                found.setdefault(version, name)
    return found


def _binding_for(wsdl, soap_version: str) -> str:
    """The binding a client speaks, chosen, never the WSDL's first by chance (docs/ips-versions.md)."""
    found = _soap_bindings(wsdl)
    if soap_version:
        if soap_version not in SOAP_VERSIONS:
            raise IpsError(f"Unknown SOAP version {soap_version!r}; use one of {sorted(SOAP_VERSIONS)}")
        if soap_version not in found:
            raise IpsError(f"The configured WSDL has no SOAP {soap_version} binding")
        return found[soap_version]
    return found.get("1.1") or found["1.2"]


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
        transport = Transport(
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
        binding = _binding_for(parsed.wsdl, endpoint.soap_version)
        self._service = self._zeep.create_service(binding, endpoint.service_url)
        self._header_type = self._zeep.get_element(f"{{{IPS_NS}}}authHeader")
        #: {operation: the parameter names its WSDL declares}, read once.
        self._declared: dict[str, frozenset[str]] = {}

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
        started = time.monotonic()
        try:
            value = self._call(operation, **params)
        except IpsError as error:
            error.url = error.url or self.endpoint.service_url
            _count(operation, error, started)
            raise
        _count(operation, None, started)
        return value

    def declares(self, operation: str, param: str) -> bool:
        """Whether this connection's WSDL (its API version) declares ``param`` in ``<operation>Param``.

        A version's request carries only what it declares (before 4.0, getJobLogDetails has no
        paging nor filter): the caller asks, and pages or filters on its side where it must."""
        return param in self._params(operation)

    def _params(self, operation: str) -> frozenset[str]:
        known = self._declared.get(operation)
        if known is None:
            try:
                body = self._service._binding.get(operation).input.body
            except ValueError:  # zeep: "Operation ... not found"
                raise IpsError(f"The configured WSDL has no operation {operation}") from None
            known = self._declared[operation] = frozenset(name for name, _ in body.type.elements)
        return known

    def _call(self, operation: str, **params):
        params = {k: v for k, v in params.items() if v is not None}
        undeclared = sorted(set(params) - self._params(operation))
        if undeclared:
            # Never sent: the real service refuses an element its schema does not declare.
            version = self.endpoint.wsdl_url or f"API version {self.endpoint.api_version or 'unversioned'}"
            raise IpsError(f"{operation} of {version} has no parameter {', '.join(undeclared)}; nothing was sent")
        method = getattr(self._service, operation)
        e = self.endpoint
        self._operation.name = operation
        self._operation.reply_date = None
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
        self._operation.reply_date = _date_header(response)
        self._operation.reply_monotonic = time.monotonic()
        return _reply_of(operation, response)

    def reply_date(self) -> dt.datetime | None:
        """IPS's own time when it answered this thread's last call (its HTTP ``Date``), or None.

        Times of runs are judged in IPS's clock, which may be off the dashboard's."""
        return getattr(self._operation, "reply_date", None)

    def ips_now(self) -> dt.datetime | None:
        """IPS's clock now, as this thread's last reply told it (its Date, plus the time since), or None."""
        date = self.reply_date()
        if date is None:
            return None
        return date + dt.timedelta(seconds=time.monotonic() - self._operation.reply_monotonic)

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

    def get_company_membership(self, user_handle=None) -> list[CompanyMembership]:
        """Each company with the user's role there; ``role`` is None before 6.0."""
        return self.call("getCompanyMembership", userHandle=user_handle)


def _reply_of(operation: str, response):
    """The value of an HTTP reply: SOAP results and faults, or why it is neither."""
    if operation in VOID_OPERATIONS and 200 <= response.status_code < 300 and not response.content.strip():
        # An empty 202 or 204 (or 200): done, with nothing to say, like "Response: None".
        return None
    ctype = response.headers.get("Content-Type", "").lower()
    if response.status_code != 200 and "xml" not in ctype:
        raise IpsHttpError(
            f"IPS answered HTTP {response.status_code} ({ctype or 'no content type'}), not SOAP",
            status=response.status_code,
        )
    try:
        value = read_reply(operation, response.content)
    except IpsMalformedReply:
        if response.status_code != 200:
            raise IpsHttpError(
                f"IPS answered HTTP {response.status_code} to {operation}, not SOAP", status=response.status_code
            ) from None
        raise
    if response.status_code != 200:
        # No fault, yet an error status: an empty Body is no void operation's success then.
        raise IpsHttpError(
            f"IPS answered HTTP {response.status_code} to {operation}, without a SOAP fault",
            status=response.status_code,
        )
    return value


def _result_of(error: IpsError | None) -> str | None:
    """The ``result`` of a call in the metrics (metrics.IPS_RESULTS); None: no call went out (a request
    zeep could not build, a parameter the WSDL does not declare)."""
    if error is None:
        return "ok"
    if isinstance(error, IpsFault):
        return _FAULT_RESULTS.get(type(error), "fault")
    if isinstance(error, IpsTimeout):
        return "timed_out"
    if isinstance(error, (IpsHttpError, IpsMalformedReply)):
        return "bad_reply"  # IPS answered, with no reply the dashboard can read
    if isinstance(error, IpsUnavailable):
        return "unreachable"
    return "bad_reply" if error.request_sent else None


_FAULT_RESULTS = {IpsAuthenticationFault: "authentication_fault", IpsAuthorizationFault: "authorization_fault",
                  IpsApiFault: "api_fault"}


def _count(operation: str, error: IpsError | None, started: float) -> None:
    # Every SOAP call passes here: counted once, in whichever process made it (jobs/metrics.py).
    result = _result_of(error)
    if result is not None:  # safely: IPS answered; a count that fails must not turn that into an error
        metrics.safely(metrics.record_ips_call, operation, result, time.monotonic() - started)


def _date_header(response) -> dt.datetime | None:
    value = getattr(response, "headers", {}).get("Date", "")
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # absent or garbled: the caller judges without it
    if when is None or when.tzinfo is None:
        return None
    return when.astimezone(dt.timezone.utc)


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
