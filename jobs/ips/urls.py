"""Where a password may go: the origin the HTTP client really connects to for a URL,
and why a URL is refused. Every endpoint is checked (connections.endpoint_for), and
a remote WSDL's imports come only from its own origin (transport)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from urllib3.util import parse_url

#: Plain HTTP only to this machine (the local emulator): a password crosses no network in clear.
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """Where the HTTP client connects for a URL: scheme, host and port."""

    scheme: str
    host: str
    port: int | None


def origin_of(url: str) -> Origin | None:
    """The origin requests (over urllib3) connects to for ``url``, read as it reads it; None if it cannot.

    Python's urlsplit reads some URLs differently: for it
    ``http://127.1:18290\\@127.0.0.1/`` is 127.0.0.1, for requests 127.1:18290."""
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        parsed = parse_url(prepared.url)
    except Exception:  # requests and urllib3 raise several kinds for a URL they cannot use
        return None
    if not parsed.host or parsed.auth:
        return None
    scheme = (parsed.scheme or "").lower()
    return Origin(scheme, parsed.host.strip("[]").lower(), parsed.port or _DEFAULT_PORTS.get(scheme))


def url_problem(url: str) -> str | None:
    """Why the dashboard will not send a password to ``url`` (in words for the admin); None when it may.

    Only https, or plain http to this machine; no user name or password in the
    URL; nothing two parsers could read as two different hosts."""
    if "\\" in url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "The URL may not contain backslashes, spaces or control characters."
    try:
        split = urlsplit(url)
        split_port = split.port
    except ValueError:
        return "The URL's port is not valid."
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return "The URL must start with https:// (or http:// to this machine)."
    if "@" in split.netloc or split.username is not None:
        return "The URL may not carry a user name or password: the service account's fields are for that."
    origin = origin_of(url)
    as_python_reads = ((split.hostname or "").lower(), split_port or _DEFAULT_PORTS[scheme])
    if origin is None or (origin.host, origin.port) != as_python_reads:
        return "This URL reads as two different addresses (to Python and to the HTTP client): give a plain one."
    if origin.scheme == "http" and origin.host not in _LOOPBACK:
        return "Plain http:// is for this machine only (127.0.0.1, localhost, ::1): use https://."
    return None
