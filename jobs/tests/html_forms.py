"""What a browser would submit from a page's form, and a socket that records whatever reaches it.

``form_data(html, form_id)`` reads the form's inputs, selects and textareas as
a browser submits them unchanged (checked boxes only, selected options), so a
test changes one field of the admin's real change form and posts the rest as
it was. ``Listener`` is a TCP port on 127.0.0.1 that answers nothing and keeps
every byte sent to it: where a password must never go."""

from __future__ import annotations

import socket
import threading
from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def _add(self, name, value):
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and "disabled" not in a:
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(name, a.get("value") or "on")
            elif kind not in ("submit", "button", "image", "file"):
                self._add(name, a.get("value") or "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self._add(self._select, a.get("value") or "")
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self._add(self._textarea, "".join(self._text).lstrip("\n"))
            self._textarea = None


def form_data(html: str, form_id: str) -> dict[str, list[str]]:
    """{field name: values} that the form with ``form_id`` submits as the page shows it."""
    reader = _FormReader(form_id)
    reader.feed(html)
    return reader.data


class Listener:
    """A TCP port on 127.0.0.1 that keeps what it receives and answers nothing (it closes)."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        #: The bytes of each connection made to it.
        self.received: list[bytes] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._closed:
                conn.close()
                return
            with conn:
                conn.settimeout(0.5)
                chunks = []
                try:
                    while chunk := conn.recv(65536):
                        chunks.append(chunk)
                        got = b"".join(chunks)
                        if b"Envelope>" in got or (got.startswith(b"GET") and b"\r\n\r\n" in got):
                            break  # a whole request: no need to wait for more
                except OSError:
                    pass
                self.received.append(b"".join(chunks))

    def close(self):
        self._closed = True
        try:
            # Wake accept() up, then close.
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
