"""The client of a dashboard connection: its Endpoint from the connection's
fields and the Django settings, and where a password may go (``url_problem``:
every endpoint is checked, whatever path asks for it). The connection is duck-typed (a
``jobs.models.Connection`` or anything with the same methods), so the
package never imports the models."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .client import Endpoint, IpsClient, get_client
from .errors import IpsError
from .urls import url_problem


def refused_url(connection) -> str | None:
    """Why ``connection``'s stored service or WSDL URL gets no request (saved before it was
    checked, or bypassing the form); None when both may be used."""
    for what, url in (("service URL", connection.resolved_service_url()), ("WSDL URL", connection.wsdl_url)):
        problem = url_problem(url) if url or what == "service URL" else None
        if problem:
            return f"connection “{connection}”: its {what} is refused, nothing was sent: {problem}"
    return None


def endpoint_for(connection) -> Endpoint:
    """Where and as whom ``connection`` calls IPS.

    Raises IpsError when its service or WSDL URL fails url_problem (the password would go
    there, or the WSDL come from where the form refuses), ImproperlyConfigured when its
    password cannot be decrypted."""
    refused = refused_url(connection)
    if refused:
        raise IpsError(refused)
    return Endpoint(
        service_url=connection.resolved_service_url(),
        user=connection.username,
        password=connection.get_password(),
        api_version=connection.api_version,
        wsdl_url=connection.wsdl_url,
        connect_timeout=settings.IPS_CONNECT_TIMEOUT,
        read_timeout=settings.IPS_READ_TIMEOUT,
        app_name=settings.IPS_APP_NAME,
        app_version=settings.IPS_APP_VERSION,
        soap_version=settings.IPS_SOAP_VERSION,
    )


def client_for(connection) -> IpsClient:
    """The process-wide client of ``connection`` (``get_client`` of its endpoint)."""
    try:
        endpoint = endpoint_for(connection)
    except ImproperlyConfigured as error:
        # A password stored under another encryption key: say so, not a 500.
        raise IpsError(f"connection “{connection}”: {error}") from None
    return get_client(endpoint)
