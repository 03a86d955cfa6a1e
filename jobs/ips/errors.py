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


def error_for_fault(operation: str, fault) -> IpsError:
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
