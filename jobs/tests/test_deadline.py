"""The wire's hard edges, against small raw-socket servers: a whole-reply
deadline that holds while the headers trickle in, no redirect followed with
a password in the request, and a remote WSDL under the same deadline."""

import socket
import threading
import time

import pytest

from jobs import ips

TRICKLE = 0.05  # seconds between bytes: far below any read timeout here


class RawServer:
    """Accepts connections and answers each with ``reply(conn, request_bytes)``; records requests."""

    def __init__(self, reply):
        self.reply = reply
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            data = _read_request(conn)
            self.requests.append(data)
            try:
                self.reply(conn, data, self.stop)
            except OSError:
                pass

    def url(self, path="/scene7/services/IpsApiService"):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server():
    made = []

    def make(reply):
        server = RawServer(reply)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def _read_request(conn) -> bytes:
    """The whole request: headers, then Content-Length bytes of body (they may come in pieces)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _trickle(conn, payload: bytes, stop):
    for byte in payload:
        if stop.is_set():
            return
        conn.sendall(bytes([byte]))
        stop.wait(TRICKLE)


def _client(url, **kwargs):
    endpoint = ips.Endpoint(service_url=url, user="service@example.com", password="S3cret-pw",
                            api_version="2014-04-03", connect_timeout=0.2, read_timeout=0.3, **kwargs)
    return ips.IpsClient(endpoint)


def test_headers_that_trickle_in_end_at_the_deadline(raw_server):
    headers = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200 + b"\r\nContent-Length: 0\r\n\r\n"
    server = raw_server(lambda conn, _, stop: _trickle(conn, headers, stop))
    started = time.monotonic()
    with pytest.raises(ips.IpsTimeout) as info:
        _client(server.url()).get_active_jobs("47")
    assert info.value.whole_reply and info.value.request_sent
    assert "the deadline for a whole reply" in str(info.value)
    # The headers alone take 200 x 0.05 s = 10 s: the deadline (0.5 s) cut them off.
    assert time.monotonic() - started < len(headers) * TRICKLE / 2


def test_no_redirect_is_followed_with_a_password_in_the_request(raw_server):
    elsewhere = raw_server(lambda conn, _, stop: conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
    redirect = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere.url()}\r\n"
                "Content-Length: 0\r\n\r\n").encode()
    server = raw_server(lambda conn, _, stop: conn.sendall(redirect))
    with pytest.raises(ips.IpsHttpError) as info:
        _client(server.url()).check_login("someone@example.com", "Their-pw")
    assert info.value.status == 307 and "does not follow" in str(info.value)
    assert len(server.requests) == 1 and b"Their-pw" in server.requests[0]
    assert elsewhere.requests == []  # the password went nowhere else


def test_a_remote_wsdl_that_trickles_in_ends_at_the_deadline(raw_server, ips_emulator):
    body = b"<?xml version='1.0'?>" + b" " * 400
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    server = raw_server(lambda conn, _, stop: (conn.sendall(head), _trickle(conn, body, stop)))
    started = time.monotonic()
    with pytest.raises(ips.IpsError):
        _client(ips_emulator.service_url, wsdl_url=server.url("/IpsApi.wsdl"))
    assert time.monotonic() - started < len(body) * TRICKLE / 2
