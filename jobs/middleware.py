import ipaddress
import logging
import re
import threading
import uuid
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError

log = logging.getLogger(__name__)

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


# htmx is loaded from our own origin and configured through a <meta> tag, so
# no inline script or style is needed anywhere.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # The Django admin needs no inline script either (test_browser.py).
        response.setdefault("Content-Security-Policy", CSP)
        return response


class RequestBodyGuardMiddleware:
    """Refuses state-changing requests whose body is not a small, well-formed form.

    Every POST of this project is a form (htmx sends the form urlencoded; the
    admin and the login page urlencoded or multipart), and a Run carries no
    body at all. Anything else is refused here, before CSRF, sessions or a
    view see it, so that it can neither reach IPS nor leave an audit row, and
    so that a body Django cannot parse is a 4xx, never a 500:

    * larger than DATA_UPLOAD_MAX_MEMORY_SIZE: 413;
    * a body of another content type (JSON, text, binary, none given): 415;
    * urlencoded that is not UTF-8, multipart without its boundary or its
      closing delimiter, too many fields: 400.
    """

    UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in self.UNSAFE_METHODS:
            refusal = self._refusal(request)
            if refusal is not None:
                status, text = refusal
                log.warning(
                    "refused %s %s: %s (content type %r, length %s)",
                    request.method,
                    request.path,
                    text,
                    request.META.get("CONTENT_TYPE", "")[:100],
                    request.META.get("CONTENT_LENGTH", "") or "-",
                )
                return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    def _refusal(self, request) -> tuple[int, str] | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, "Invalid Content-Length."
        if length < 0:
            return 400, "Invalid Content-Length."
        if limit is not None and length > limit:
            return 413, "Request body too large."
        if length > 0:
            refusal = self._body_refusal(request)
            if refusal is not None:
                return refusal
        try:
            request.POST  # noqa: B018 — parse now, so that errors are ours to answer
        except RequestDataTooBig:
            return 413, "Request body too large."
        except (MultiPartParserError, SuspiciousOperation, UnreadablePostError, ValueError):
            return 400, "Malformed form body."
        return None

    def _body_refusal(self, request) -> tuple[int, str] | None:
        if request.content_type not in self.FORM_TYPES:
            return 415, "Unsupported request body: send a form."
        try:
            body = request.body
        except RequestDataTooBig:
            return 413, "Request body too large."
        except (UnreadablePostError, OSError):
            return 400, "The request body could not be read."
        if request.content_type == "multipart/form-data":
            boundary = (request.content_params.get("boundary") or "").encode("ascii", "replace")
            if not boundary or b"--" + boundary + b"--" not in body:
                return 400, "Malformed multipart body."
        else:
            try:
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", encoding="utf-8")
            except (UnicodeDecodeError, ValueError):
                return 400, "Malformed form body."
        return None
