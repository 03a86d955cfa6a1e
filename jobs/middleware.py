import ipaddress
import logging
import re
import threading
import uuid

from django.conf import settings

from .text import BIDI_CONTROLS, neutralise_bidi


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_ip(request) -> str | None:
    """The client's address, for the audit trail and for login throttling.

    Behind TRUSTED_PROXIES proxies, each appending to X-Forwarded-For, the
    client is that many entries from the right; anything to its left could
    be forged by the client. Not an IP address: None.
    """
    address = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXIES
    if count:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= count:
            address = forwarded[-count]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class RequestIdMiddleware:
    """Gives each request an id, kept on audit rows, log lines and the response.

    A well-formed X-Request-ID from the proxy is kept so that its logs and
    ours line up; anything else is replaced.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Only a trusted proxy's id is kept: it ends up in the audit trail.
        incoming = request.META.get("HTTP_X_REQUEST_ID", "") if settings.TRUSTED_PROXIES else ""
        request.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        _current.request_id = request.request_id
        try:
            response = self.get_response(request)
        finally:
            _current.request_id = "-"
        response["X-Request-ID"] = request.request_id
        return response


_current = threading.local()


class RequestIdLogFilter(logging.Filter):
    """Adds %(request_id)s to log records (one request per worker thread at a time)."""

    def filter(self, record):
        record.request_id = getattr(_current, "request_id", "-")
        return True


class BidiControlMiddleware:
    """Every HTML page (the admin's too) shows bidi controls as visible marks (text.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
            return response
        charset = response.charset or "utf-8"
        text = response.content.decode(charset, "replace")
        if BIDI_CONTROLS.search(text):
            response.content = neutralise_bidi(text).encode(charset)
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
