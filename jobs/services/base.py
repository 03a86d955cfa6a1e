"""What every capability shares: who asked, and log lines in one language."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.utils import translation


@dataclass(frozen=True)
class RequestInfo:
    """Who asked, from where: stored on the audit row."""

    request_id: str
    client_ip: str | None = None
    user_agent: str = ""


def english(text) -> str:
    """Log lines read the same whatever language the request that wrote them spoke."""
    with translation.override("en"):
        return str(text())


def new_token() -> str:
    """A follow's or chore's chain token: a step holding an older one is a stale duplicate."""
    return secrets.token_hex(16)
