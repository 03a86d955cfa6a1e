import logging
import re
import threading
import uuid

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives each request an id, kept on audit rows, log lines and the response.

    A well-formed X-Request-ID from the proxy is kept so that its logs and
    ours line up; anything else is replaced.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
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
        # The admin ships inline scripts of its own; it is staff-only.
        if not request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", CSP)
        return response
