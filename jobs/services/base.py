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


def fit(model, name: str, value):
    """``value`` cut to the size of ``model``'s column ``name`` (its last character "…"), else as it is.

    Text from IPS has no length limit; PostgreSQL refuses a value longer than
    its varchar (SQLite stores it): one odd value must never fail the work."""
    limit = getattr(model._meta.get_field(name), "max_length", None)
    if limit and isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value
