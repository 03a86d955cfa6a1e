"""Serve the IPS emulator over HTTP: threaded wsgiref, one thread per request.

``start()`` serves in a daemon thread and returns a :class:`RunningEmulator`
(for tests); ``serve()`` serves in the foreground until Ctrl-C (for the
management command and ``python -m ipsemulator``).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.handlers import SimpleHandler
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .app import SERVICE_PATH, WSDL_PREFIX, DropConnection, make_app
from .state import EmulatorState


class _ServerHandler(ServerHandler):
    def handle_error(self):
        # Let DropConnection escape run() so the request handler can cut the
        # connection instead of sending wsgiref's 500 page.
        error = sys.exc_info()[1]
        if isinstance(error, DropConnection):
            raise
        if isinstance(error, ConnectionError):
            # The client hung up (e.g. during a trickled reply): nothing to
            # answer, nothing to log.
            return
        super().handle_error()

    def close(self):
        if self.status is None:
            # No response was started (dropped connection): skip the access
            # log line, which would fail on the missing status.
            SimpleHandler.close(self)
        else:
            super().close()


class _RequestHandler(WSGIRequestHandler):
    def handle(self):
        # As WSGIRequestHandler.handle, with our ServerHandler and a catch for
        # DropConnection.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                                 multithread=True)
        handler.request_handler = self
        try:
            handler.run(self.server.get_app())
        except DropConnection:
            self.close_connection = True
            try:
                # Linger 0: closing sends a TCP reset, nothing else.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            except OSError:
                pass

    def log_message(self, format, *args):
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    verbose = False
    # socketserver's default backlog of 5 resets connections under a burst
    # (50 dashboard threads at once); IPS itself takes them.
    request_queue_size = 128

    def server_bind(self):
        # WSGIServer/HTTPServer.server_bind would call socket.getfqdn(), a
        # reverse DNS lookup that can stall; we know our name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port
        self.setup_environ()


def _make_server(host: str, port: int, state: EmulatorState, verbose: bool = False,
                 wsdl_dir: str | Path | None = None):
    server = _ThreadingWSGIServer((host, port), _RequestHandler)
    server.verbose = verbose
    server.set_app(make_app(state, wsdl_dir))
    return server


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@dataclass
class RunningEmulator:
    """An emulator serving in a daemon thread."""

    base_url: str
    service_url: str
    state: EmulatorState
    _server: _ThreadingWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def wsdl_url(self, version: str | None = None) -> str:
        """None -> IpsApi.wsdl; "2014-04-03" -> IpsApi-2014-04-03.wsdl."""
        name = "IpsApi.wsdl" if version is None else f"IpsApi-{version}.wsdl"
        return f"{self.base_url}{WSDL_PREFIX}{name}"

    @property
    def namespaces(self) -> list[str]:
        """The namespaces served (the target namespaces of the bundled WSDLs)."""
        return sorted(self._server.get_app().schemas)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start(host: str = "127.0.0.1", port: int = 0, data_path: str | Path | None = None,
          job_duration: float = 3.0, verbose: bool = False,
          wsdl_dir: str | Path | None = None, scheduler: bool = False) -> RunningEmulator:
    """Start an emulator on host:port (0 = a free port) in a daemon thread.
    ``wsdl_dir``: where the IpsApi*.wsdl files are (default: the bundled ``wsdl/``).
    ``scheduler``: IPS's own scheduler fires jobs (off for tests: ``state.scheduler``)."""
    state = EmulatorState(data_path, job_duration=job_duration, scheduler=scheduler)
    server = _make_server(host, port, state, verbose, wsdl_dir)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"ipsemulator:{server.server_port}", daemon=True)
    thread.start()
    base_url = f"http://{_url_host(host)}:{server.server_port}"
    return RunningEmulator(base_url, base_url + SERVICE_PATH, state, server, thread)


def serve(host: str = "127.0.0.1", port: int = 8081, data_path: str | Path | None = None,
          job_duration: float = 3.0, verbose: bool = True, out=None, scheduler: bool = True) -> None:
    """Serve in the foreground until KeyboardInterrupt. IPS's own scheduler fires jobs
    unless ``scheduler`` is False."""
    out = out or sys.stdout
    state = EmulatorState(data_path, job_duration=job_duration, scheduler=scheduler)
    server = _make_server(host, port, state, verbose)
    base_url = f"http://{_url_host(host)}:{server.server_port}"
    wsdls = "".join(f"  {'WSDL:' if i == 0 else '':8} {base_url}{WSDL_PREFIX}{name}\n"
                    for i, name in enumerate(sorted(server.get_app().wsdl_files)))
    out.write(
        f"IPS emulator on {base_url} (data: {state.data_path}, job duration "
        f"{state.job_duration:g} s, scheduler {'on' if state.scheduler else 'off'})\n"
        f"{wsdls}"
        f"  service: {base_url}{SERVICE_PATH}\n"
        "  control: /_emulator/reset, /_emulator/inject, /_emulator/calls, "
        "/_emulator/config, /_emulator/clock, /_emulator/fire, /_emulator/hold, "
        "/_emulator/remove_job (local testing only)\n"
        "Quit with Ctrl-C.\n")
    out.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
