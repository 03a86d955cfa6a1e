"""The wire's hard edges, against small raw-socket servers: a whole-reply
deadline that holds while the headers trickle in, no redirect followed with
a password in the request, a remote WSDL under the same deadline, the reply
size cap on the wire, and an empty Body with an error status."""

import socket
import threading
import time

import pytest

from jobs import ips
from jobs.ips import transport

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


def _patient_client(url, **kwargs):
    # Timeouts no test waits out: these replies end by themselves or by the size cap.
    endpoint = ips.Endpoint(service_url=url, user="service@example.com", password="S3cret-pw",
                            api_version="2014-04-03", connect_timeout=2.0, read_timeout=5.0, **kwargs)
    return ips.IpsClient(endpoint)


@pytest.mark.parametrize("soap_version", ["1.1", "1.2"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ["check_login", "execute_job"])
def test_no_redirect_of_any_kind_is_followed_in_either_soap_version(raw_server, status, soap_version, call):
    # checkLogin carries a password in its body, every call the service account's in the authHeader.
    elsewhere = raw_server(lambda conn, _, stop: conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
    redirect = f"HTTP/1.1 {status} Moved\r\nLocation: {elsewhere.url()}\r\nContent-Length: 0\r\n\r\n".encode()
    server = raw_server(lambda conn, _, stop: conn.sendall(redirect))
    client = _patient_client(server.url(), soap_version=soap_version)

    with pytest.raises(ips.IpsHttpError) as info:
        if call == "check_login":
            client.check_login("someone@example.com", "Their-pw")
        else:
            client.execute_job("47", "47|My Test Job|")

    assert info.value.status == status and "does not follow" in str(info.value)
    (request,) = server.requests
    assert b"S3cret-pw" in request
    assert (b"application/soap+xml" in request) == (soap_version == "1.2")
    assert elsewhere.requests == []  # neither password went anywhere else


def test_a_reply_whose_length_is_past_the_cap_is_not_read(raw_server):
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
            + f"Content-Length: {transport.MAX_REPLY_BYTES + 1}\r\n\r\n".encode())
    server = raw_server(lambda conn, _, stop: (conn.sendall(head), conn.sendall(b" " * 65536)))

    with pytest.raises(ips.IpsReplyTooLarge) as info:
        _patient_client(server.url()).get_active_jobs("47")

    assert (info.value.wire_bytes, info.value.inflated_bytes) == (0, 0)
    assert "IPS sent a reply larger than 20 MB to getActiveJobs" in str(info.value)


def test_a_reply_without_a_length_is_cut_off_at_the_cap(raw_server):
    piece = b" " * 1_000_000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    def endless(conn, _, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n")
        # Twice the cap at most: a client without one would read it all.
        for _ in range(2 * transport.MAX_REPLY_BYTES // len(piece)):
            if stop.is_set():
                return
            conn.sendall(chunk)
        conn.sendall(b"0\r\n\r\n")

    server = raw_server(endless)

    with pytest.raises(ips.IpsReplyTooLarge) as info:
        _patient_client(server.url()).get_active_jobs("47")

    error = info.value  # stopped at the step past the cap, before keeping it
    assert transport.MAX_REPLY_BYTES < error.wire_bytes <= transport.MAX_REPLY_BYTES + 65536
    assert error.inflated_bytes <= transport.MAX_REPLY_BYTES
    assert "larger than 20 MB" in str(error)


@pytest.mark.parametrize("envelope", ["http://schemas.xmlsoap.org/soap/envelope/",
                                      "http://www.w3.org/2003/05/soap-envelope"], ids=["soap-1.1", "soap-1.2"])
def test_an_empty_body_with_an_error_status_is_no_success(raw_server, envelope):
    body = f'<s:Envelope xmlns:s="{envelope}"><s:Body/></s:Envelope>'.encode()
    reply = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml\r\n"
             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    server = raw_server(lambda conn, _, stop: conn.sendall(reply))

    with pytest.raises(ips.IpsHttpError) as info:
        _patient_client(server.url()).execute_job("47", "47|My Test Job|")

    assert info.value.status == 500 and info.value.request_sent
    assert "without a SOAP fault" in str(info.value)
