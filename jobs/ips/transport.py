"""The HTTP under zeep: requests and urllib3 watched so that a whole reply,
headers and body, arrives within one deadline, no reply past MAX_REPLY_BYTES
(on the wire or inflated) is read, and no envelope is logged."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
import zlib

import requests
import requests.adapters
import requests.utils
import urllib3
import urllib3.connection
import zeep

from .errors import IpsError, IpsHttpError, IpsReplyTooLarge, IpsTimeout
from .urls import origin_of

log = logging.getLogger(__name__)

#: The largest IPS reply read, in bytes, on the wire and once decompressed (each counted
#: as it arrives): a reply past it is not read (IpsReplyTooLarge). docs/reliability.md says why 20 MB.
MAX_REPLY_BYTES = 20_000_000
#: Bytes read from the socket, and inflated, per step: the deadline and the cap are checked between steps.
_STEP = 65536


class _NoWireLog:
    """zeep's transport logs whole envelopes, authHeader password included,
    at DEBUG. Ours logs none, whatever the logging configuration says."""

    def isEnabledFor(self, level):
        return False

    def debug(self, *args, **kwargs):
        pass


_watched = threading.local()


class _Watchdog:
    """One thread per process fires every call's deadline (_Watch).

    A thread started per call (threading.Timer) cost about as much as a local
    call itself on a busy machine: starting it waits for the new thread to run."""

    def __init__(self):
        self._reset()
        # A forked worker (gunicorn) has no thread of its parent's: it starts its own.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread = None

    def add(self, watch: _Watch, seconds: float) -> None:
        with self._cond:
            # Started on first use, and again should it ever have died: a deadline nobody fires is no deadline.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ips-deadlines", daemon=True)
                self._thread.start()
            entry = (time.monotonic() + seconds, next(self._order), watch)
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:
                # Due before any other: the thread waits for that one now. Otherwise it is not woken
                # (each wake costs the calling thread a switch); ended watches go as their time comes.
                self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                now = time.monotonic()
                due = []
                while self._due and (self._due[0][2].ended or self._due[0][0] <= now):
                    due.append(heapq.heappop(self._due)[2])
                if not due:
                    cond.wait(self._due[0][0] - now if self._due else None)
                    if cond is not self._cond:  # reset by a fork: this thread is not the child's
                        return
                    continue
            for watch in due:
                try:
                    watch._fire()
                except Exception:  # noqa: BLE001  (one call's failure must not end every deadline)
                    log.exception("an IPS call's deadline could not cut it off")


class _Watch:
    """Cuts one call off at its deadline, headers included: shuts its socket when time is up.

    requests' read timeout bounds each socket read, so a reply that trickles
    in (a byte every few seconds, in the headers or the body) would never
    time out without it."""

    def __init__(self, seconds: float):
        self.fired = False
        self.ended = False
        self._seconds = seconds
        self._sock = None
        self._lock = threading.Lock()

    def __enter__(self):
        _watched.current = self
        _watchdog.add(self, self._seconds)
        return self

    def __exit__(self, *exc):
        with self._lock:
            # Never fired after the call: its connection goes back to the pool whole.
            self.ended = True
            self._sock = None
        _watched.current = None

    def attach(self, sock) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            if self.ended:
                return
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)


_watchdog = _Watchdog()


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
        #: A remote WSDL's origin: what it imports is loaded from there only (None: no limit, a bundled WSDL).
        self.wsdl_origin = None
        # Only the codings _Inflater undoes (and counts), whatever else urllib3 could decode.
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        adapter = _WatchedAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # The environment's proxies and CA bundle, read once per address: with trust_env, requests
        # reads the whole environment at every request, more than the rest of a local call's
        # client-side cost (bench/client_overhead.py). No ~/.netrc either: IPS's auth is the authHeader.
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies: dict[str, dict] = {}

    def _proxies_for(self, url: str) -> dict:
        found = self._proxies.get(url)
        if found is None:
            found = self._proxies[url] = requests.utils.get_environ_proxies(url)
        return found

    @property
    def budget(self) -> float:
        return self.connect_timeout + self.read_timeout

    def post(self, address, message, headers):
        deadline = time.monotonic() + self.budget
        if headers.get("Content-Type", "").startswith("application/soap+xml"):
            # SOAP 1.2 names the action in the Content-Type; zeep adds the 1.1 header anyway.
            headers = {k: v for k, v in headers.items() if k.lower() != "soapaction"}
        with _Watch(self.budget) as watch:
            try:
                response = self.session.post(
                    address,
                    data=message,
                    headers=headers,
                    proxies=self._proxies_for(address),
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
        # A remote WSDL (and what it imports) under a call's deadline and size cap, streamed:
        # requests' .content would read it whole and let urllib3 inflate it without a limit.
        if self.wsdl_origin is not None and origin_of(url) != self.wsdl_origin:
            # An xsd:import or wsdl:import elsewhere: a server-side request wherever the WSDL points.
            raise IpsError("The WSDL imports a document from another address than the WSDL URL's; not loaded")
        deadline = time.monotonic() + self.budget
        with _Watch(self.budget) as watch:
            try:
                response = self.session.get(
                    url, timeout=(self.connect_timeout, self.read_timeout), stream=True, allow_redirects=False,
                    proxies=self._proxies_for(url),
                )
                with contextlib.closing(response):
                    if response.is_redirect:
                        raise requests.TooManyRedirects(f"the WSDL answered HTTP {response.status_code}, a redirect")
                    response.raise_for_status()
                    return self._read_body(response, deadline, wsdl=True)
            except IpsReplyTooLarge:
                raise
            except Exception as exc:
                if watch.fired or isinstance(exc, IpsTimeout):
                    raise requests.exceptions.ReadTimeout(f"the WSDL did not arrive within {self.budget:g} s") from None
                raise

    def _read_body(self, response, deadline: float, wsdl: bool = False) -> bytes:
        """The body, decompressed, read and inflated a step at a time within the deadline and the size cap."""
        operation = "the WSDL" if wsdl else getattr(self._operation, "name", "the call")
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        inflater = _Inflater(coding)
        wire = 0

        def too_large():
            return IpsReplyTooLarge(
                operation, MAX_REPLY_BYTES, wire_bytes=wire, inflated_bytes=inflater.held, wsdl=wsdl
            )

        try:
            declared = int(response.headers.get("Content-Length", ""))
        except ValueError:
            declared = None
        if declared is not None and declared > MAX_REPLY_BYTES:
            raise too_large()  # said up front: nothing of it is read
        raw = response.raw
        sock = _socket_of(raw)
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
                chunk = raw.read1(_STEP, decode_content=False)
            except Exception as exc:  # urllib3 wraps socket timeouts its own way
                if time.monotonic() >= deadline - 0.001:
                    raise self._past_deadline() from None
                if "timed out" in str(exc).lower():
                    raise requests.exceptions.ReadTimeout(str(exc)) from None
                raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
            if not chunk:
                break
            wire += len(chunk)
            if wire > MAX_REPLY_BYTES:
                raise too_large()
            # Inflated as it comes, so a small gzip that inflates to gigabytes stops at the cap,
            # and its inflating counts against the deadline like its reading.
            for _ in inflater.feed(chunk):
                if inflater.held > MAX_REPLY_BYTES:
                    raise too_large()
                if time.monotonic() >= deadline:
                    raise self._past_deadline()
        return inflater.finish()

    def _past_deadline(self) -> IpsTimeout:
        operation = getattr(self._operation, "name", "the call")
        return IpsTimeout(
            f"IPS did not finish answering {operation} within {self.budget:g} s "
            f"(the deadline for a whole reply: {self.connect_timeout:g} s to connect + "
            f"{self.read_timeout:g} s to answer)",
            request_sent=True,
            whole_reply=True,
        )


class _Inflater:
    """A Content-Encoding undone a step at a time; ``held`` counts the bytes it has produced."""

    def __init__(self, coding: str):
        self.coding = coding
        self.held = 0
        self._pieces: list[bytes] = []
        self._fed = False
        self._zlib = self._decompressor() if coding in ("gzip", "x-gzip", "deflate") else None

    def _decompressor(self):
        # gzip: its header and trailer; deflate: the zlib format HTTP names so (RFC 9110).
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self.coding != "deflate" else zlib.MAX_WBITS)

    def feed(self, data: bytes):
        """Inflate ``data``, yielding after each step of at most _STEP bytes out."""
        self._fed = True
        if self._zlib is None:
            self._keep(data)
            yield
            return
        try:
            while True:
                if self._zlib.eof:
                    if not data or self.coding == "deflate":
                        break  # bytes after a zlib stream are ignored, as zlib.decompress does
                    # Another gzip member follows (RFC 1952 allows several).
                    self._zlib = self._decompressor()
                piece = self._zlib.decompress(data, _STEP)
                self._keep(piece)
                yield
                data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
                # A full step may leave output pending inside zlib even with no input left.
                if not data and len(piece) < _STEP:
                    break
        except zlib.error:
            raise requests.exceptions.ContentDecodingError(f"undecodable {self.coding} body") from None

    def _keep(self, piece: bytes) -> None:
        self.held += len(piece)
        self._pieces.append(piece)

    def finish(self) -> bytes:
        if self._zlib is not None and self._fed and not self._zlib.eof:
            raise requests.exceptions.ContentDecodingError(f"truncated {self.coding} body")
        return b"".join(self._pieces)


def _socket_of(raw):
    """The socket under a urllib3 response, to bound each read by the deadline."""
    try:
        return raw._fp.fp.raw._sock
    except AttributeError:
        return None
