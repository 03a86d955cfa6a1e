"""The HTTP under zeep: requests and urllib3 watched so that a whole reply,
headers and body, arrives within one deadline, and no envelope is logged."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib

import requests
import requests.adapters
import urllib3
import urllib3.connection
import zeep

from .errors import IpsError, IpsHttpError, IpsTimeout


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


class Transport(zeep.Transport):
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
