"""The one door to IPS: every SOAP call of the project goes through here.

This is the only package that imports zeep. It parses each WSDL once per
process, keeps one client per connection, puts an ``authHeader`` and a connect
and read timeout on every call, and turns whatever zeep or requests raise into
the project's own exception types. Results come back as plain dataclasses.

``errors`` holds the exceptions, ``replies`` the reply types and their reading,
``transport`` the HTTP with its whole-reply deadline, ``client`` the endpoint
and the client, ``connections`` the client of a dashboard connection. The rest
of the project uses only the names below, as ``ips.X``.
"""

from ..ipsversions import FAULT_NAMES, region_service_url
from .client import BUNDLED_VERSIONS, IPS_NS, Endpoint, IpsClient, clear_clients, get_client, stats
from .connections import client_for, endpoint_for, refused_url
from .errors import (
    IpsApiFault,
    IpsAuthenticationFault,
    IpsAuthorizationFault,
    IpsError,
    IpsFault,
    IpsHttpError,
    IpsMalformedReply,
    IpsReplyTooLarge,
    IpsTimeout,
    IpsUnavailable,
)
from .urls import Origin, origin_of, url_problem
from .replies import (
    ActiveJob,
    CompanyInfo,
    CompanyMembership,
    JobDetail,
    JobLog,
    JobLogDetail,
    JobLogDetailAux,
    ScheduledJob,
    TaskItemProgress,
    TaskProgress,
    UserInfo,
    read_reply,
)

__all__ = [
    # errors
    "IpsError",
    "IpsFault",
    "IpsAuthenticationFault",
    "IpsAuthorizationFault",
    "IpsApiFault",
    "IpsUnavailable",
    "IpsHttpError",
    "IpsTimeout",
    "IpsMalformedReply",
    "IpsReplyTooLarge",
    # the client
    "Endpoint",
    "IpsClient",
    "get_client",
    "clear_clients",
    "client_for",
    "endpoint_for",
    # where a password may go
    "Origin",
    "origin_of",
    "url_problem",
    "refused_url",
    "stats",
    "BUNDLED_VERSIONS",
    "IPS_NS",
    # replies
    "JobDetail",
    "ScheduledJob",
    "TaskItemProgress",
    "TaskProgress",
    "ActiveJob",
    "JobLogDetailAux",
    "JobLogDetail",
    "JobLog",
    "CompanyInfo",
    "UserInfo",
    "CompanyMembership",
    "read_reply",
    # IPS facts, from ipsversions
    "FAULT_NAMES",
    "region_service_url",
]
