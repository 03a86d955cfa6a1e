"""The emulator's fixed tables: roles and who may call what, operations, job
types, constants and the IPS fault.

Kept apart from the live state so that a fact of the reference is written
once, here, and read by every other module.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------- roles
ROLES = (
    "IpsAdmin",
    "IpsCompanyAdmin",
    "IpsUser",
    "WebServiceUser",
    "TrialSiteAdmin",
    "TrialSiteUser",
    "ImagePortalAdmin",
    "ImagePortalUser",
    "ImagePortalContrib",
    "ImagePortalContribUser",
)

# Authorized user types per operation: the reference's operation pages, copied
# verbatim (a multi-operation row names each of its operations).
_AUTHORIZATION_TABLE = """
| operation | IpsAdmin | IpsCompanyAdmin | IpsUser | WebServiceUser | TrialSiteAdmin | TrialSiteUser | ImagePortalAdmin | ImagePortalUser | ImagePortalContrib | ImagePortalContribUser |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| executeJob | ✓ | | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| submitJob | ✓ | | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getScheduledJobs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getActiveJobs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| pauseJob, resumeJob, stopJob, deleteJob | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | | ✓ | ✓ |
| getJobLogs | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getJobLogDetails | ✓ | ✓ | ✓ | | | ✓ | ✓ | ✓ | ✓ | ✓ |
| checkLogin, getUserInfo | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getCompanyMembership | ✓ | ✓ | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
| getCompanyInfo | ✓ | | ✓ | | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
"""


def _parse_authorization_table(text: str) -> dict[str, frozenset[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.strip().splitlines()]
    header, body = rows[0], rows[2:]
    if tuple(header[1:]) != ROLES:
        raise ValueError(f"authorization table header {header!r}")
    table: dict[str, frozenset[str]] = {}
    for cells in body:
        if len(cells) != len(header):
            raise ValueError(f"authorization table row {cells!r}")
        allowed = frozenset(role for role, mark in zip(ROLES, cells[1:]) if mark == "✓")
        for operation in cells[0].split(","):
            table[operation.strip()] = allowed
    return table


AUTHORIZED: dict[str, frozenset[str]] = _parse_authorization_table(_AUTHORIZATION_TABLE)

# ---------------------------------------------------------------- operations
# Operations the emulator implements (submitJob is not). A namespace whose
# WSDL does not declare one of them does not offer it.
OPERATIONS = (
    "executeJob",
    "getScheduledJobs",
    "getActiveJobs",
    "getJobLogs",
    "getJobLogDetails",
    "pauseJob",
    "resumeJob",
    "stopJob",
    "deleteJob",
    "checkLogin",
    "getCompanyInfo",
    "getUserInfo",
    "getCompanyMembership",
)

REQUIRED: dict[str, tuple[str, ...]] = {
    "executeJob": ("companyHandle", "jobHandle"),
    "getScheduledJobs": ("companyHandle",),
    "getJobLogDetails": ("companyHandle",),
    "pauseJob": ("companyHandle", "jobHandle"),
    "resumeJob": ("companyHandle", "jobHandle"),
    "stopJob": ("companyHandle", "jobHandle"),
    "deleteJob": ("companyHandle", "jobHandle"),
    "checkLogin": ("email", "password"),
}

# Parameters that are arrays (``items`` children); every other one is text.
ARRAY_PARAMS = frozenset({"logTypeArray"})


# ----------------------------------------------------------------- job types
@dataclass(frozen=True)
class JobType:
    family: str  # log types: Begin<family>, End<family>, <family>Success/Warning/Error
    asset_type: str
    extension: str  # of generated asset names
    detail: str | None  # the job-detail element of ScheduledJob/ActiveJob
    tasks: bool  # has a taskProgressArray while running


JOB_TYPES: dict[str, JobType] = {
    "ImageServingPublish": JobType("ImageServingPublish", "Image", "jpg", "imageServingPublishJob", True),
    "ImageRenderingPublish": JobType("ImageRenderingPublish", "Image", "tif", "imageRenderingPublishJob", True),
    "ServerDirectoryPublish": JobType("ServerDirectoryPublish", "Image", "jpg", "serverDirectoryPublishJob", True),
    "ServerDirectoryPublishWithTemplate": JobType("ServerDirectoryPublish", "Image", "jpg",
                                                  "serverDirectoryPublishJob", True),
    "VideoPublish": JobType("VideoPublish", "Video", "mp4", "videoPublishJob", True),
    "UploadFromServerDirectory": JobType("Upload", "Image", "jpg", "uploadDirectoryJob", True),
    "UrlUpload": JobType("Upload", "Image", "png", "uploadUrlsJob", True),
    "MetadataUpload": JobType("Upload", "Image", "jpg", "uploadDirectoryJob", True),
    "ImageOptimization": JobType("ImageOptimization", "Image", "jpg", "optimizeImagesJob", True),
    "Cleanup": JobType("Cleanup", "Image", "jpg", None, False),
}

# ImageServingPublishJob/publishType -> JobLog/jobSubType (4.0 change log).
JOB_SUB_TYPES = {"Full": "full", "Incremental": "increment", "FullWithSearch": "fullwithsearch"}

TRIGGER_STATES = ("Blocked", "Complete", "Error", "None", "Normal", "Paused")
OUTCOMES = ("success", "warnings", "errors", "fatal")

# --------------------------------------------------------------- injections
INJECTION_KINDS = (
    "latency",
    "soap_fault",
    "http_500_html",
    "malformed_xml",
    "empty_body",
    "drop_connection",
    "trickle",
    "gzip_bomb",
)

# -------------------------------------------------------------------- faults
FAULT_NAMES = {
    10000: "NO_CREDENTIALS",
    10001: "INVALID_CREDENTIALS",
    10002: "INVALID_USER",
    20000: "INVALID_COMPANY",
    20001: "INVALID_REQUEST_USERNAME",
    20002: "INVALID_REQUEST_USER",
    20003: "NO_OPERATION_PERMISSION",
    20004: "NO_IMPERSONATION_PERMISSION",
    20005: "ILLEGAL_PARAMETER_VALUE",
    20006: "ILLEGAL_COMPANY",
    20007: "ILLEGAL_REQUEST_USER",
    20008: "ILLEGAL_ACCESS_GROUP",
    20009: "MISSING_PERMISSION",
    30000: "EXCEPTION",
    30001: "INVALID_PARAMETER",
    30002: "MISSING_PARAMETER",
    30003: "INVALID_REQUEST_XML",
}
_FAMILIES = {
    "authenticationFault": "AuthenticationException",
    "authorizationFault": "AuthorizationException",
    "ipsApiFault": "IpsApiException",
}
_FAMILY_ALIASES = {
    "authentication": "authenticationFault",
    "authenticationfault": "authenticationFault",
    "authorization": "authorizationFault",
    "authorizationfault": "authorizationFault",
    "ipsapi": "ipsApiFault",
    "ipsapifault": "ipsApiFault",
    "ips": "ipsApiFault",
}


class IpsFault(Exception):
    """A SOAP fault with an IPS fault element (family), code and reason."""

    def __init__(self, code: int, reason: str, *, family: str | None = None,
                 faultcode: str | None = None, faultstring: str | None = None):
        super().__init__(f"{code} {reason}")
        self.code = int(code)
        self.reason = reason
        if family is None:
            family = {1: "authenticationFault", 2: "authorizationFault"}.get(
                self.code // 10000, "ipsApiFault")
        self.family = family
        self.faultcode = faultcode or ("Server" if self.code == 30000 else "Client")
        self.faultstring = faultstring or _FAMILIES.get(family, "IpsApiException")


def fault_family(value: str | None) -> str | None:
    """Normalise a fault family name ("authorization", "ipsApiFault", ...)."""
    if value is None:
        return None
    if value in _FAMILIES:
        return value
    try:
        return _FAMILY_ALIASES[value.replace("_", "").lower()]
    except KeyError:
        raise ValueError(f"unknown fault family {value!r}; use one of {sorted(_FAMILIES)}") from None
