"""The project's exceptions for whatever goes wrong talking to IPS, and the
reading of a SOAP fault into one of them."""

from __future__ import annotations

from lxml import etree

from ..ipsversions import FAULT_NAMES


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


class IpsReplyTooLarge(IpsMalformedReply):
    """IPS sent more than the dashboard reads (on the wire, or once decompressed): not read.

    A malformed reply for everyone above (outcome ``bad_reply``); ``wire_bytes``
    and ``inflated_bytes`` say how much was read and held when reading stopped."""

    def __init__(self, operation: str, limit: int, *, wire_bytes: int, inflated_bytes: int, wsdl: bool = False):
        self.operation = operation
        self.limit = limit
        self.wire_bytes = wire_bytes
        self.inflated_bytes = inflated_bytes
        if wsdl:
            message = f"The WSDL URL sent a document larger than {limit / 1_000_000:g} MB; the dashboard stopped reading it"
        else:
            message = f"IPS sent a reply larger than {limit / 1_000_000:g} MB to {operation}; the dashboard stopped reading it"
        super().__init__(message)


SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
#: A 32-bit signed int: what IPS's xsd:int codes are, and what the database's int columns hold.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def error_for_fault(operation: str, fault) -> IpsError:
    """The project's exception for a SOAP 1.1 or 1.2 Fault element."""
    if etree.QName(fault).namespace == SOAP12_ENV:
        # SOAP 1.2: env:Reason/env:Text for faultstring, env:Detail for detail.
        texts = _child(fault, "Reason")
        fault_string = ((_child_text(texts, "Text") if texts is not None else None) or "").strip()
        detail = _child(fault, "Detail")
    else:
        fault_string = (_child_text(fault, "faultstring") or "").strip()
        detail = _child(fault, "detail")
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
                if code is not None and not INT32_MIN <= code <= INT32_MAX:
                    code = None  # no IPS code; and the audit row's int column would refuse it
                reason = _child_text(node, "reason") or fault_string
                return cls(operation, code, reason.strip(), fault_string)
    return IpsFault(operation, None, fault_string or "unknown fault", fault_string)


def _child(node, name):
    return next((c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == name), None)


def _child_text(node, name):
    child = _child(node, name)
    return child.text if child is not None else None
