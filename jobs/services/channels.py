"""The channels notifications go out by: every outbound call of services.notify passes here (tests patch it),
as every IPS call passes through jobs/ips/.

Email through Django's email framework (settings.EMAIL_BACKEND). Webhooks, Slack and Teams are one HTTP POST
each, through ``post``: http(s) only, no redirects followed (a receiver cannot bounce us elsewhere), connect
and read timeouts, and, unless NOTIFY_ALLOW_PRIVATE_TARGETS, no loopback, private, link-local or reserved
address (SSRF: a subscriber must not make the dashboard call into its own network). Slack and Teams get their
documented incoming-webhook JSON (a few lines each) rather than apprise: one HTTP path keeps those rules."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import smtplib
import socket
import threading
import time
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.mail import EmailMessage
from standardwebhooks.webhooks import Webhook

from ..ips.transport import _Watch, _WatchedConnectionMixin


class DeliveryError(Exception):
    """A send that did not get through. ``permanent``: trying again will not help (a refused URL)."""

    def __init__(self, error: str, status_code: int | None = None, permanent: bool = False):
        super().__init__(error)
        self.error = error
        self.status_code = status_code
        self.permanent = permanent


# Forms of loopback, private and metadata addresses inside IPv6 that is_global lets through.
_EMBEDDING = [ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96")]


def public(address) -> bool:
    """Is this an address of the public internet (no loopback, private, link-local, reserved, nor one
    of those embedded in IPv6: mapped, NAT64, 6to4, IPv4-compatible)?"""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return public(address.ipv4_mapped)
        if any(address in net for net in _EMBEDDING):
            return False
    return address.is_global


def check_url(url: str) -> None:
    """Refuse what a notification may not be posted to (raises DeliveryError, permanent)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("only http and https addresses are allowed", permanent=True)
    if settings.NOTIFY_ALLOW_PRIVATE_TARGETS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as error:
        raise DeliveryError(f"cannot resolve the host: {error.strerror or error}") from None
    for info in infos:
        if not public(ipaddress.ip_address(info[4][0].split("%")[0])):
            raise DeliveryError("the address is not a public one", permanent=True)


class _NotPublic(Exception):
    """The connection reached an address that is not a public one (the name resolved anew: DNS rebinding)."""


_checking = threading.local()


class _CheckedConnectionMixin(_WatchedConnectionMixin):
    """The address actually connected to is checked (check_url's look-up may differ from the connection's:
    a name that resolves to a public address first and to 127.0.0.1 next), and the answer is cut off at
    the post's deadline (the IPS calls' watchdog: a read timeout bounds each read, not a trickle)."""

    def _new_conn(self):
        sock = super()._new_conn()
        if getattr(_checking, "on", False):
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            if not public(peer):
                sock.close()
                raise _NotPublic()
        return sock


class _CheckedHTTPConnection(_CheckedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _CheckedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the environment's proxies are passed per post (post()), no ~/.netrc
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = _CheckedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_sessions = threading.local()


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the status code of a 2xx answer, else DeliveryError. Within the connect plus the
    read timeout in all (a receiver that trickles its answer is cut off there), no redirect followed."""
    check_url(url)
    session = getattr(_sessions, "session", None) or _session()
    _sessions.session = session
    proxies = requests.utils.get_environ_proxies(url)
    # Through a proxy (the operator's egress), the proxy is what is connected to: it is trusted with the rest.
    _checking.on = not settings.NOTIFY_ALLOW_PRIVATE_TARGETS and not proxies
    budget = settings.NOTIFY_CONNECT_TIMEOUT + settings.NOTIFY_READ_TIMEOUT
    try:
        with _Watch(budget) as watch:
            try:
                response = session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json", "User-Agent": "ipsadmin-notifications", **headers},
                    timeout=(settings.NOTIFY_CONNECT_TIMEOUT, settings.NOTIFY_READ_TIMEOUT),
                    allow_redirects=False,
                    stream=True,
                    proxies=proxies,
                )
                response.close()
                if watch.fired:
                    # Cut off mid-headers, http.client may still make an answer of what came: not one.
                    raise DeliveryError(f"timed out ({budget:g} s in all)")
            except _NotPublic:
                raise DeliveryError("the address is not a public one", permanent=True) from None
            except requests.Timeout:
                raise DeliveryError("timed out") from None
            except requests.RequestException as error:
                if watch.fired:
                    raise DeliveryError(f"timed out ({budget:g} s in all)") from None
                raise DeliveryError(f"could not connect: {type(error).__name__}") from None
    finally:
        _checking.on = False
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}", status_code=response.status_code)
    return response.status_code


def dumps(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def send_webhook(url: str, secret: str, message_id: str, payload: dict) -> int:
    """A Standard Webhooks delivery: webhook-id (the same on every try), -timestamp (now, wall clock), -signature."""
    body = dumps(payload)
    now = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
    signature = Webhook(secret).sign(message_id, now, body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return post(url, body.encode(), headers)


def slack_text(text: str) -> str:
    """Text as Slack shows it, never as markup: its three control characters escaped, as Slack
    documents, so that a job name from IPS ("<!channel>", "<https://x|y>") pings or links nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_text(text: str) -> str:
    """Text as Teams shows it, never as Markdown: each character Markdown reads escaped with a
    backslash (a job name's "[here](https://x)" is no link, its "**" no bold)."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>~|" else c for c in text)


def send_slack(url: str, text: str, link: str) -> int:
    """Slack's incoming webhook: {"text": ...}, the text escaped (slack_text), then the run's link."""
    return post(url, dumps({"text": f"{slack_text(text)}\n<{link}>"}).encode(), {})


def send_teams(url: str, text: str, link: str, link_title: str) -> int:
    """A Teams incoming webhook (Workflows): a message carrying one Adaptive Card, the text escaped
    (teams_text), and the run's link as its action."""
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": teams_text(text), "wrap": True}],
        "actions": [{"type": "Action.OpenUrl", "title": link_title, "url": link}],
    }
    payload = {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
    ]}
    return post(url, dumps(payload).encode(), {})


def send_email(to: str, subject: str, body: str, message_id: str = "") -> None:
    """One email (settings.EMAIL_BACKEND: the console in development, SMTP in production). ``message_id``:
    the same on every try of one notification, so that a mail reader shows a message sent twice once."""
    headers = {"Message-ID": f"<ipsadmin.{message_id}@{_mail_domain()}>"} if message_id else {}
    try:
        EmailMessage(subject=subject, body=body, to=[to], headers=headers).send()
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"email not sent: {type(error).__name__}: {error}") from None


def _mail_domain() -> str:
    """The domain of the notifications' Message-IDs: the dashboard's, else the sender's."""
    host = urlsplit(settings.SITE_URL).hostname if settings.SITE_URL else ""
    return host or settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(" >") or "ipsadmin.invalid"
