"""The IPS API versions the dashboard speaks, and what each one's types hold.

One table: the bundled WSDLs are generated from it (``scripts/build_wsdl.py``),
the emulator answers in the shapes those WSDLs declare, and the client
(``jobs/ips/``) reads replies by it. Sources of each fact:
``docs/ips-versions.md`` (the reference's type pages and change log). The
other IPS facts that are plain data live here too: the fault codes and the
regions' service hosts.

A field lives in the versions ``since <= version < until``; so does an
operation's parameter, and a request carries only those of its version (the
emulator refuses the others, as IPS does). ``required`` is minOccurs 1. Version
keys are the namespace dates; the unversioned namespace (pre-4.0) is ``""`` and
sorts first, ``2016-01-14-beta`` last. Adding a version is a row of
``VERSIONS``: run the build script, and its WSDL, its namespace and its shapes
follow.

Plain Python, no Django: the build script imports it outside a project.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_NS = "http://www.scene7.com/IpsApi/xsd"

V4_0 = "2008-01-15"
V4_4 = "2009-07-31"
V4_5 = "2010-01-31"
V6_0 = "2012-02-14"
V6_6 = "2013-02-15"
V6_8 = "2014-04-03"
V2016_BETA = "2016-01-14-beta"


@dataclass(frozen=True)
class Version:
    key: str  # "" for the unversioned namespace
    release: str

    @property
    def namespace(self) -> str:
        return f"{BASE_NS}/{self.key}" if self.key else BASE_NS

    @property
    def wsdl_file(self) -> str:
        return f"IpsApi-{self.key}.wsdl" if self.key else "IpsApi.wsdl"

    @property
    def label(self) -> str:
        return f"{self.release} ({self.key or 'unversioned'})"


#: The versions bundled, served by the emulator and selectable on a Connection: those
#: whose shapes this table can describe (docs/ips-versions.md, "Versions"). The 4.x
#: namespaces are not offered: several changes are dated "4.0" only because no page
#: dates them, which is true of 4.x as a whole and of no one 4.x release.
VERSIONS = (
    Version("", "pre-4.0"),
    Version(V6_0, "6.0 / 2012R1"),
    Version(V6_6, "6.6 / 2013R1"),
    Version(V6_8, "6.8 / 2014R1"),
    Version(V2016_BETA, "2016 beta"),
)
DEFAULT_VERSION = V6_8


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # an xsd type ("string", "int", "double", "boolean", "dateTime", "long") or a type of TYPES
    since: str = ""
    until: str | None = None
    many: bool = False  # maxOccurs unbounded (the items of an array type)
    #: minOccurs 1 in the real WSDL: a parameter the reference marks "Required: Yes", a
    #: return element likewise, a type's field Adobe's unversioned WSDL requires (the
    #: Axis2 classes generated from it). Written into the WSDLs; the client reads leniently.
    required: bool = False

    def in_version(self, key: str) -> bool:
        return self.since <= key and (self.until is None or key < self.until)


XSD_TYPES = frozenset({"string", "int", "long", "double", "boolean", "dateTime"})


def _array(item_type: str) -> tuple[Field, ...]:
    return (Field("items", item_type, many=True),)


# Job-detail elements closing ScheduledJob and ActiveJob: at most one, by job type.
_JOB_DETAILS = (
    Field("imageServingPublishJob", "ImageServingPublishJob"),
    Field("imageRenderingPublishJob", "ImageRenderingPublishJob"),
    Field("videoPublishJob", "VideoPublishJob"),
    Field("serverDirectoryPublishJob", "ServerDirectoryPublishJob"),
    Field("uploadDirectoryJob", "UploadDirectoryJob"),
    Field("uploadUrlsJob", "UploadUrlsJob"),
    Field("optimizeImagesJob", "OptimizeImagesJob", since=V4_0),
    Field("ripPdfsJob", "RipPdfsJob", since=V4_0),
    Field("reprocessAssetsJob", "ReprocessAssetsJob", since=V4_0),
    Field("exportJob", "ExportJob", since=V6_0),
)

JOB_DETAIL_ELEMENTS = tuple(f.name for f in _JOB_DETAILS)

#: Complex types by name, each field in its sequence order. Contradictions of the
#: reference (ips-api.md) are typed as strings: ScheduledJob.timeZone/triggerState,
#: ActiveJob.progressMessage. Where a field's type changed (ActiveJob.totalSize, the
#: upload options), the unversioned type is that of Adobe's unversioned WSDL (the
#: classes generated from it) and the later one that of the type page; no page dates
#: the change, so it is put at 4.0, the first versioned namespace.
TYPES: dict[str, tuple[Field, ...]] = {
    "StringArray": _array("string"),
    "HandleArray": _array("string"),
    "UploadUrl": (Field("sourceUrl", "string"), Field("destPath", "string")),
    # r-upload-url-array.md; the UrlArray of 4.5 is another type (string items, for CDN).
    "UploadUrlArray": _array("UploadUrl"),
    "ImageServingPublishJob": (
        Field("publishType", "string"),
        Field("emailSetting", "string"),
        Field("httpCompletionUrl", "string"),
        # A beta WSDL's (change-log/.../c-4-5/r-restricted-use.md); 2016-01-14-beta is one.
        Field("contextHandle", "string", since=V2016_BETA),
    ),
    "ImageRenderingPublishJob": (
        Field("emailSetting", "string"),
        Field("httpCompletionUrl", "string"),
        Field("contextHandle", "string", since=V6_0),
    ),
    "VideoPublishJob": (
        Field("emailSetting", "string"),
        Field("httpCompletionUrl", "string"),
        Field("contextHandle", "string", since=V6_0),
    ),
    "ServerDirectoryPublishJob": (
        Field("emailSetting", "string"),
        Field("httpCompletionUrl", "string"),
    ),
    # Upload jobs carry many option types; the ones a dashboard shows are modelled, in
    # the unversioned WSDL's order (the type pages list them alphabetically); the rest
    # arrive as elements the client ignores.
    "UploadDirectoryJob": (
        Field("destFolder", "string"),
        Field("serverDir", "string"),
        Field("overwrite", "boolean", until=V4_0),
        Field("overwrite", "string", since=V4_0),
        Field("readyForPublish", "boolean"),
        Field("includeSubfolders", "boolean", until=V4_0),
        Field("includeSubfolders", "string", since=V4_0),
        Field("emailSetting", "string"),
        Field("postHttpUrl", "string"),
    ),
    "UploadUrlsJob": (
        Field("urlArray", "UploadUrlArray"),
        Field("overwrite", "boolean"),
        Field("readyForPublish", "boolean"),
        Field("emailSetting", "string"),
        Field("postHttpUrl", "string"),
        Field("numUrls", "int", since=V4_5),
    ),
    "OptimizeImagesJob": (Field("emailSetting", "string"),),
    "RipPdfsJob": (
        Field("pdfHandleArray", "HandleArray"),
        Field("emailSetting", "string"),
        Field("postHttpUrl", "string"),
    ),
    "ReprocessAssetsJob": (
        Field("assetHandleArray", "HandleArray"),
        Field("readyForPublish", "boolean"),
        Field("emailSetting", "string"),
        Field("postHttpUrl", "string"),
    ),
    "ExportJob": (
        Field("assetHandleArray", "HandleArray"),
        Field("fmt", "string"),
        Field("macro", "string"),
        Field("emailSetting", "string"),
    ),
    "ScheduledJob": (
        Field("companyHandle", "string", required=True),
        Field("jobHandle", "string", required=True),
        Field("name", "string", required=True),
        Field("originalName", "string", required=True),
        Field("type", "string", required=True),
        Field("submitUserEmail", "string", required=True),
        Field("locale", "string", since=V4_0),
        Field("description", "string", since=V4_0),
        Field("execSchedule", "string"),
        Field("nextFireTime", "dateTime"),
        Field("timeZone", "string"),
        Field("triggerState", "string"),
        *_JOB_DETAILS,
    ),
    "ScheduledJobArray": _array("ScheduledJob"),
    "TaskItemProgress": (
        Field("itemName", "string"),
        Field("progress", "double"),
        Field("progressMessage", "string"),
        Field("lastProgressUpdate", "dateTime"),
    ),
    "TaskItemProgressArray": _array("TaskItemProgress"),
    "TaskProgress": (
        Field("taskType", "string"),
        Field("numProcessed", "int"),
        Field("numProcessing", "int"),
        Field("numPending", "int"),
        Field("progress", "double"),
        Field("progressMessage", "string"),
        Field("lastProgressUpdate", "dateTime"),
        Field("taskItemProgressArray", "TaskItemProgressArray"),
        Field("taskState", "string", since=V6_0),
    ),
    "TaskProgressArray": _array("TaskProgress"),
    "ActiveJob": (
        Field("companyHandle", "string", required=True),
        Field("jobHandle", "string", required=True),
        Field("name", "string", required=True),
        Field("originalName", "string", required=True),
        Field("type", "string", required=True),
        Field("state", "string", required=True),
        Field("submitUserEmail", "string", required=True),
        Field("locale", "string", since=V4_0),
        Field("description", "string", since=V4_0),
        Field("serverName", "string", required=True),
        Field("startDate", "dateTime", required=True),
        Field("totalSize", "int", required=True, until=V4_0),
        Field("totalSize", "string", required=True, since=V4_0),
        Field("progress", "int", required=True),
        Field("progressMessage", "string", required=True),
        Field("lastProgressUpdate", "dateTime", required=True),
        Field("taskProgressArray", "TaskProgressArray", since=V4_0),
        *_JOB_DETAILS,
    ),
    "ActiveJobArray": _array("ActiveJob"),
    "JobLogDetailAux": (
        Field("logMessage", "string"),
        Field("logType", "string"),
        Field("dateCreated", "dateTime"),
    ),
    "JobLogDetailAuxArray": _array("JobLogDetailAux"),
    "JobLogDetail": (
        Field("logMessage", "string", required=True),
        Field("logType", "string", required=True),
        Field("assetName", "string"),
        Field("assetType", "string"),
        Field("assetHandle", "string", since=V4_0),
        Field("auxArray", "JobLogDetailAuxArray", since=V4_5),
        # 2016-01-14-beta's (issue 16's audit of its generated classes); where it sits
        # in the sequence is not known: new elements are appended.
        Field("dateCreated", "dateTime", since=V2016_BETA),
    ),
    "JobLogDetailArray": _array("JobLogDetail"),
    "JobLog": (
        Field("companyHandle", "string"),
        Field("jobHandle", "string"),
        Field("jobName", "string"),
        Field("originalJobName", "string", since=V4_0),
        Field("submitUserEmail", "string"),
        Field("logType", "string"),
        Field("jobSubType", "string", since=V4_0),
        Field("startDate", "dateTime"),
        Field("endDate", "dateTime"),
        Field("description", "string", since=V4_0),
        Field("fileSuccessCount", "int"),
        Field("fileErrorCount", "int"),
        Field("fileWarningCount", "int"),
        Field("fileDuplicateCount", "int"),
        Field("fileUpdateCount", "int"),
        # In every version: the unversioned WSDL and the unversioned examples have it.
        Field("totalFileCount", "int"),
        Field("transferSuccessCount", "int", since=V4_4),
        Field("transferErrorCount", "int", since=V4_4),
        Field("transferWarningCount", "int", since=V4_4),
        Field("fatalError", "boolean"),
        Field("detailTotalRows", "int", since=V4_0),
        Field("detailArray", "JobLogDetailArray"),
    ),
    "JobLogArray": _array("JobLog"),
    "Company": (
        Field("companyHandle", "string", required=True),
        Field("name", "string", required=True),
        Field("rootPath", "string", required=True),
        Field("expires", "dateTime"),
    ),
    "CompanyArray": _array("Company"),
    "User": (
        Field("userHandle", "string"),
        Field("firstName", "string"),
        Field("lastName", "string"),
        Field("email", "string"),
        Field("role", "string", until=V6_0),
        Field("defaultRole", "string", since=V6_0, until=V2016_BETA),
        # From 2016-01-14-beta a user has no type of its own: IpsAdmin or not, and a
        # type in each company (getCompanyMembership). ips-api.md.
        Field("isIpsAdmin", "boolean", since=V2016_BETA),
        Field("isValid", "boolean"),
        Field("passwordExpires", "dateTime"),
    ),
    "CompanyMembership": (
        Field("company", "Company"),
        Field("role", "string"),
        Field("isActive", "boolean"),
    ),
    "CompanyMembershipArray": _array("CompanyMembership"),
}

#: Fields also read on a type's items, though another type declares them: the
#: reference's own getCompanyMembership example puts Company fields straight
#: under membershipArray. Read only, never generated into a WSDL.
READ_ALSO = {"CompanyMembership": ("Company",)}

#: Types that exist only from a version on.
TYPE_SINCE = {
    "JobLogDetailAux": V4_5,
    "JobLogDetailAuxArray": V4_5,
    "OptimizeImagesJob": V4_0,
    "RipPdfsJob": V4_0,
    "ReprocessAssetsJob": V4_0,
    "ExportJob": V6_0,
    "CompanyMembership": V6_0,
    "CompanyMembershipArray": V6_0,
}


@dataclass(frozen=True)
class Operation:
    name: str
    params: tuple[Field, ...]  # a version sends only those in_version(): the others are refused
    returns: tuple[Field, ...] = ()

    def params_in(self, key: str) -> tuple[Field, ...]:
        """The parameters ``<name>Param`` declares in version ``key``, in sequence order."""
        return tuple(p for p in self.params if p.in_version(key))


def _job_op(name: str) -> Operation:
    return Operation(name, (Field("companyHandle", "string", required=True), Field("jobHandle", "string", required=True)))


# Parameters and their "Required" column: each operation's page
# (operations/c-operations-intro/c-methods/r-<operation>.md); return elements the same.
OPERATIONS: tuple[Operation, ...] = (
    _job_op("executeJob"),
    Operation(
        "getScheduledJobs",
        (
            Field("companyHandle", "string", required=True),
            Field("jobHandle", "string"),
            Field("originalName", "string"),
        ),
        (Field("jobArray", "ScheduledJobArray", required=True),),
    ),
    Operation(
        "getActiveJobs",
        (
            Field("companyHandle", "string"),
            Field("jobHandle", "string"),
            Field("originalName", "string"),
            # 2016-01-14-beta's generated classes; the pages do not list it.
            Field("includeWaitingJobs", "boolean", since=V2016_BETA),
        ),
        (Field("jobArray", "ActiveJobArray", required=True),),
    ),
    Operation(
        "getJobLogs",
        (
            Field("companyHandle", "string"),
            Field("userHandle", "string"),
            Field("sortBy", "string"),
            Field("sortDirection", "string"),
            Field("startDate", "dateTime"),
            Field("endDate", "dateTime"),
            Field("numRows", "int"),
        ),
        (Field("jobLogArray", "JobLogArray", required=True),),
    ),
    Operation(
        "getJobLogDetails",
        (
            Field("companyHandle", "string", required=True),
            Field("jobHandle", "string"),
            Field("originalName", "string"),
            # Not in the unversioned request (its generated classes); the page lists them
            # today. No page dates them: with detailTotalRows, the count of their paging, 4.0.
            Field("logTypeArray", "StringArray", since=V4_0),
            Field("recordsPerPage", "int", since=V4_0),
            Field("resultsPage", "int", since=V4_0),
            Field("sortBy", "string", since=V4_0),
            Field("sortDirection", "string", since=V4_0),
        ),
        (Field("jobLogArray", "JobLogArray", required=True),),
    ),
    _job_op("pauseJob"),
    _job_op("resumeJob"),
    _job_op("stopJob"),
    _job_op("deleteJob"),
    Operation(
        "checkLogin",
        (
            Field("companyHandle", "string"),
            Field("email", "string", required=True),
            Field("password", "string", required=True),
        ),
        (Field("status", "string", required=True),),
    ),
    Operation(
        "getCompanyInfo",
        # "Either companyHandle or companyName is required": neither alone is.
        (Field("companyHandle", "string"), Field("companyName", "string")),
        (Field("companyInfo", "Company", required=True),),
    ),
    Operation(
        "getUserInfo",
        (Field("userHandle", "string"), Field("email", "string")),
        (Field("userInfo", "User", required=True),),
    ),
    Operation(
        "getCompanyMembership",
        (Field("userHandle", "string"),),
        (
            Field("companyArray", "CompanyArray", required=True, until=V6_0),
            Field("membershipArray", "CompanyMembershipArray", required=True, since=V6_0),
        ),
    ),
)
OPERATION_BY_NAME = {op.name: op for op in OPERATIONS}


@dataclass(frozen=True)
class Unfilled:
    """Fields a version declares on a type but an operation leaves out of its reply
    (``zero``: sends, always as 0)."""

    operation: str
    type: str
    fields: tuple[str, ...]
    until: str
    zero: bool = False


#: Before 4.0, getJobLogs filled neither endDate nor the duplicate and update counts
#: (only getJobLogDetails did): change-log/c-change-log/c-4-0/r-4-0-new.md. endDate is
#: left out; the counts are there, "always 0" (the page, and the unversioned getJobLogs
#: example shows them as 0). Written into the WSDL as appinfo notes on the Return
#: element, which the emulator obeys and zeep ignores.
UNFILLED = (
    Unfilled("getJobLogs", "JobLog", ("endDate",), until=V4_0),
    Unfilled("getJobLogs", "JobLog", ("fileDuplicateCount", "fileUpdateCount"), until=V4_0, zero=True),
)
NOTES_NS = "urn:ipsadmin:wsdl-notes"


def unfilled(operation: str, key: str, *, zero: bool = False) -> dict[str, tuple[str, ...]]:
    """{type name: fields left out (``zero``: sent as 0)} of ``operation``'s reply in version ``key``."""
    out: dict[str, tuple[str, ...]] = {}
    for u in UNFILLED:
        if u.operation == operation and key < u.until and u.zero == zero:
            out[u.type] = out.get(u.type, ()) + u.fields
    return out


def type_in_version(name: str, key: str) -> bool:
    return TYPE_SINCE.get(name, "") <= key


def fields(type_name: str, key: str) -> tuple[Field, ...]:
    """The elements of ``type_name`` in version ``key``, in sequence order."""
    return tuple(
        f
        for f in TYPES[type_name]
        if f.in_version(key) and (f.type in XSD_TYPES or type_in_version(f.type, key))
    )


def returns(operation: str, key: str) -> tuple[Field, ...]:
    return tuple(f for f in OPERATION_BY_NAME[operation].returns if f.in_version(key))


def params(operation: str, key: str) -> tuple[Field, ...]:
    """The parameters ``operation`` declares in version ``key``: all a request may carry."""
    return OPERATION_BY_NAME[operation].params_in(key)


def version(key: str) -> Version | None:
    """The bundled version of that key (None: not bundled)."""
    return next((v for v in VERSIONS if v.key == key), None)


#: The codes of IPS faults (ips-api.md), by number.
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

#: The IpsApiService host of each Adobe region.
REGION_HOSTS = {
    "na": "s7sps1apissl.scene7.com",
    "na-staging": "s7sps1apissl-staging.scene7.com",
    "emea": "s7sps3apissl.scene7.com",
    "emea-staging": "s7sps3apissl-staging.scene7.com",
    "apac": "s7sps5apissl.scene7.com",
    "apac-staging": "s7sps5apissl-staging.scene7.com",
}


def region_service_url(region: str, webapp: str = "scene7") -> str:
    """The IpsApiService address of an Adobe region (see ips-api.md)."""
    return f"https://{REGION_HOSTS[region]}/{webapp}/services/IpsApiService"
