"""What IPS replies hold, as plain dataclasses, and ``read_reply``, which
reads a SOAP reply into them.

Replies are read with lxml by local name, never by zeep's strict schema
parser: the real service sends elements no bundled WSDL declares (new
optional fields, job-detail options), in any prefix. Each documented field
is read with its type from the version table (ipsversions.TYPES, across all
versions, so a renamed field is read whichever name arrives; a field whose
type changed between versions is read as text); anything else is ignored.
An item of a job array without a jobHandle (an empty ``<items/>``) names no
job: it is skipped, and logged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass, field

from lxml import etree

from .. import ipsversions
from .errors import INT32_MAX, SOAP12_ENV, IpsMalformedReply, error_for_fault

log = logging.getLogger(__name__)


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
        value = convert(raw) if convert else raw
        values[f.name] = _in_range(value, f.metadata.get("range") or _RANGES.get(f.type))
    return cls(**values)


#: What a number of each field type may be, so that every consumer gets a storable value
#: (the audit row's PositiveIntegerField and the like): IPS's xsd:int counts are never negative.
_RANGES = {"int | None": (0, INT32_MAX)}
#: ActiveJob.progress is a percentage (the audit row's PositiveSmallIntegerField).
_PERCENT = {"range": (0, 100)}


def _in_range(value, bounds):
    """``value`` clamped into ``bounds`` (None: any)."""
    if bounds is None or not isinstance(value, int) or isinstance(value, bool):
        return value
    low, high = bounds
    return max(low, min(high, value))


def _list(cls):
    """Field converter: the items of an array type, as ``cls``."""
    return lambda value: [_from_soap(cls, i) for i in (value or {}).get("items", [])]


def _jobs(cls, operation: str):
    """The items of a job array (jobs, runs, logs), as ``cls``: one without a jobHandle
    names nothing the dashboard could keep or follow, so it is left out, with a note."""

    def convert(value):
        items = (value or {}).get("items", [])
        kept = [i for i in items if (i or {}).get("jobHandle")]
        if len(kept) < len(items):
            log.warning("IPS answered %s with %d item(s) without a jobHandle; skipped", operation,
                        len(items) - len(kept))
        return [_from_soap(cls, i) for i in kept]

    return convert


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
    # Bytes, not a count: past 2 GB is real (and it is shown, never stored).
    total_size: int | None = field(metadata={"convert": _lenient_int, "range": (0, 2**63 - 1)})
    progress: int | None = field(default=None, metadata=_PERCENT)
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
    date_created: dt.datetime | None = None  # from 2016-01-14-beta


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
    # ``role`` until 6.0, ``defaultRole`` since; from 2016-01-14-beta there is neither, only
    # isIpsAdmin: "IpsAdmin" when it is true (it overrides every company's type), else None
    # (the user's type is the one of each company, from getCompanyMembership).
    default_role: str | None = field(metadata={"soap": ("defaultRole", "role")})
    is_valid: bool | None = None
    password_expires: dt.datetime | None = None
    #: isIpsAdmin from 2016-01-14-beta on; before, whether the default role is IpsAdmin.
    is_ips_admin: bool | None = None


def _user_info(data) -> UserInfo | None:
    info = _from_soap(UserInfo, data)
    if info is None:
        return None
    if info.is_ips_admin is None:
        admin = None if info.default_role is None else info.default_role == "IpsAdmin"
        return dataclasses.replace(info, is_ips_admin=admin)
    if info.default_role is None and info.is_ips_admin:
        return dataclasses.replace(info, default_role="IpsAdmin")
    return info


@dataclass(frozen=True)
class CompanyMembership:
    """A company of a user, with the user's role there (IPS's own type name)."""

    company: CompanyInfo = field(metadata={"convert": lambda v: _from_soap(CompanyInfo, v)})
    role: str | None  # None before 6.0: the user's one role applies in every company
    is_active: bool | None


def _membership(item) -> CompanyMembership:
    if item.get("company") is None and item.get("companyHandle") is not None:
        # The reference's own example: Company fields straight under membershipArray.
        return CompanyMembership(company=_from_soap(CompanyInfo, item), role=item.get("role"), is_active=True)
    return _from_soap(CompanyMembership, item)


def _memberships(reply) -> list[CompanyMembership]:
    if reply.get("membershipArray") is not None:
        return [_membership(i) for i in reply["membershipArray"].get("items", [])]
    # Before 6.0: companyArray of Company, no role per company.
    return [
        CompanyMembership(company=_from_soap(CompanyInfo, c), role=None, is_active=True)
        for c in (reply.get("companyArray") or {}).get("items", [])
    ]


#: Each operation's reply, as the client's methods return it.
CONVERTERS = {
    "getScheduledJobs": lambda r: _jobs(ScheduledJob, "getScheduledJobs")(r.get("jobArray")),
    "getActiveJobs": lambda r: _jobs(ActiveJob, "getActiveJobs")(r.get("jobArray")),
    "getJobLogs": lambda r: _jobs(JobLog, "getJobLogs")(r.get("jobLogArray")),
    "getJobLogDetails": lambda r: _jobs(JobLog, "getJobLogDetails")(r.get("jobLogArray")),
    "checkLogin": lambda r: r.get("status") == "ValidLogin",
    "getCompanyInfo": lambda r: _from_soap(CompanyInfo, r.get("companyInfo")),
    "getUserInfo": lambda r: _user_info(r.get("userInfo")),
    "getCompanyMembership": _memberships,
}

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: Replies are read in either SOAP version, whichever the request was: a WSDL's
#: binding decides what zeep sends, and the service answers in kind.
SOAP_ENVELOPES = (SOAP_ENV, SOAP12_ENV)
#: The operations whose reference page says "Response: None": an empty Body is their success.
VOID_OPERATIONS = frozenset({"executeJob", "pauseJob", "resumeJob", "stopJob", "deleteJob"})
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


@functools.cache
def _known_fields(type_name: str) -> dict:
    """{element name: Field} of a type across every version; a field whose type changed
    between versions (ActiveJob.totalSize, the upload options) is read as text."""
    known: dict = {}
    for f in ipsversions.TYPES[type_name]:
        if f.name in known and known[f.name].type != f.type:
            f = dataclasses.replace(f, type="string")
        known[f.name] = f
    for also in ipsversions.READ_ALSO.get(type_name, ()):
        known.update({f.name: f for f in ipsversions.TYPES[also] if f.name not in known})
    return known


def _read(element, type_name: str, where: str) -> dict:
    """A complex element as {element name: value}, by the type's known fields."""
    known = _known_fields(type_name)
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
    is neither. SOAP 1.1 and 1.2 envelopes are read alike. Any namespace and
    prefix is accepted: the element names decide. An empty Body is the success
    of a void operation (VOID_OPERATIONS), and malformed for any other.
    """
    try:
        root = etree.fromstring(content, _xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        raise IpsMalformedReply(f"IPS answered {operation} with invalid XML") from None
    name = etree.QName(root)
    envelope = name.namespace if name.localname == "Envelope" else None
    body = root.find(f"{{{envelope}}}Body") if envelope in SOAP_ENVELOPES else None
    if body is None:
        raise IpsMalformedReply(f"IPS answered {operation} with XML that is not a SOAP envelope")
    children = [c for c in body if isinstance(c.tag, str)]
    fault = next((c for c in children if c.tag == f"{{{envelope}}}Fault"), None)
    if fault is not None:
        raise error_for_fault(operation, fault)
    if not children and operation in VOID_OPERATIONS:
        return None  # "Response: None": the reference's own word for these replies
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
