"""The version table is the one description of IPS shapes: the bundled WSDLs follow from it."""

import subprocess
import sys
from pathlib import Path

import pytest
import zeep

from jobs import ips, ipsversions

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_wsdls_are_generated_from_the_version_table():
    result = subprocess.run(
        [sys.executable, "scripts/build_wsdl.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", ipsversions.VERSIONS, ids=lambda v: v.key or "unversioned")
def test_each_version_has_a_wsdl_in_its_own_namespace(version):
    client = zeep.Client(str(ROOT / "wsdl" / version.wsdl_file))
    assert client.wsdl.types.get_element(f"{{{version.namespace}}}executeJobParam")
    assert ips.BUNDLED_VERSIONS[version.key] == version.wsdl_file


@pytest.mark.parametrize(
    "type_name, field, unversioned, v2014",
    [
        ("User", "role", True, False),
        ("User", "defaultRole", False, True),
        ("JobLog", "originalJobName", False, True),
        ("JobLog", "detailTotalRows", False, True),
        ("JobLogDetail", "auxArray", False, True),
        ("ScheduledJob", "locale", False, True),
        ("ScheduledJob", "imageServingPublishJob", True, True),
        ("ScheduledJob", "exportJob", False, True),
        ("ActiveJob", "taskProgressArray", False, True),
        ("TaskProgress", "taskState", False, True),
        # The unversioned WSDL (its generated classes) and the reference's unversioned examples:
        ("JobLog", "totalFileCount", True, True),
        ("UploadUrlsJob", "urlArray", True, True),
        ("UploadUrlsJob", "numUrls", False, True),
        ("UploadUrlsJob", "destFolder", False, False),  # no version's type page has it
    ],
)
def test_fields_follow_the_change_log(type_name, field, unversioned, v2014):
    assert (field in [f.name for f in ipsversions.fields(type_name, "")]) is unversioned
    assert (field in [f.name for f in ipsversions.fields(type_name, "2014-04-03")]) is v2014


def test_memberships_are_a_company_array_before_6_0():
    assert [f.name for f in ipsversions.returns("getCompanyMembership", "")] == ["companyArray"]
    assert [f.name for f in ipsversions.returns("getCompanyMembership", "2014-04-03")] == ["membershipArray"]


# --- Each version in its own shapes and parameters ------------------------------------

V2016 = ipsversions.V2016_BETA
ALL = [v.key for v in ipsversions.VERSIONS]
IDS = [k or "unversioned" for k in ALL]


def test_the_versions_the_reference_names_are_offered_where_the_table_can_describe_them():
    assert ALL == ["", "2012-02-14", "2013-02-15", "2014-04-03", "2016-01-14-beta"]
    assert ipsversions.DEFAULT_VERSION == "2014-04-03"
    # The Connection's choices are the table's (a new version needs the model's choices migrated).
    from jobs.models import Connection

    assert [key for key, _ in Connection._meta.get_field("api_version").choices] == ALL


@pytest.mark.parametrize(
    "key, user_fields, memberships",
    [
        ("", ["role"], "companyArray"),
        ("2012-02-14", ["defaultRole"], "membershipArray"),
        ("2014-04-03", ["defaultRole"], "membershipArray"),
        ("2016-01-14-beta", ["isIpsAdmin"], "membershipArray"),
    ],
)
def test_a_users_type_and_companies_in_each_version(key, user_fields, memberships):
    names = [f.name for f in ipsversions.fields("User", key)]
    assert [n for n in names if n in ("role", "defaultRole", "isIpsAdmin")] == user_fields
    assert [f.name for f in ipsversions.returns("getCompanyMembership", key)] == [memberships]


def test_unversioned_get_job_log_details_declares_three_parameters():
    assert [p.name for p in ipsversions.params("getJobLogDetails", "")] == [
        "companyHandle", "jobHandle", "originalName"]
    assert [p.name for p in ipsversions.params("getJobLogDetails", "2014-04-03")] == [
        "companyHandle", "jobHandle", "originalName", "logTypeArray", "recordsPerPage", "resultsPage",
        "sortBy", "sortDirection"]
    assert "includeWaitingJobs" in [p.name for p in ipsversions.params("getActiveJobs", V2016)]
    assert "includeWaitingJobs" not in [p.name for p in ipsversions.params("getActiveJobs", "2014-04-03")]


def _declared(wsdl_file: str) -> dict[str, tuple[str, str | None]]:
    """{complex type or Param element: [(element, minOccurs)]} of a bundled WSDL."""
    from lxml import etree

    xsd = "{http://www.w3.org/2001/XMLSchema}"
    root = etree.parse(str(ROOT / "wsdl" / wsdl_file)).getroot()
    out = {}
    for node in root.iter(f"{xsd}complexType", f"{xsd}element"):
        name = node.get("name")
        if node.tag == f"{xsd}element":
            node = node.find(f"{xsd}complexType")
            if node is None:
                continue
        out[name] = [(e.get("name"), e.get("minOccurs")) for e in node.iter(f"{xsd}element")]
    return out


def test_the_wsdls_require_what_the_real_ones_require():
    unversioned = _declared("IpsApi.wsdl")
    # The Axis2 classes generated from Adobe's unversioned WSDL: these are minOccurs 1.
    required = {n for n, occurs in unversioned["ActiveJob"] if occurs == "1"}
    assert required == {"companyHandle", "jobHandle", "name", "originalName", "type", "state", "submitUserEmail",
                        "serverName", "startDate", "totalSize", "progress", "progressMessage", "lastProgressUpdate"}
    assert {n for n, o in unversioned["ScheduledJob"] if o == "1"} == {
        "companyHandle", "jobHandle", "name", "originalName", "type", "submitUserEmail"}
    assert {n for n, o in unversioned["JobLogDetail"] if o == "1"} == {"logMessage", "logType"}
    assert {n for n, o in unversioned["Company"] if o == "1"} == {"companyHandle", "name", "rootPath"}
    # The operation pages' "Required: Yes", parameters and return elements alike.
    assert unversioned["stopJobParam"] == [("companyHandle", "1"), ("jobHandle", "1")]
    assert unversioned["getJobLogsReturn"] == [("jobLogArray", "1")]
    assert ("companyHandle", "1") in unversioned["getJobLogDetailsParam"]
    # A field required before stays required: the change log says when one became optional.
    for wsdl in ("IpsApi-2014-04-03.wsdl", "IpsApi-2016-01-14-beta.wsdl"):
        assert {n for n, o in _declared(wsdl)["ActiveJob"] if o == "1"} == required
    # What issue 16's audit of the 2016-01-14-beta classes found missing, in that version's WSDL.
    beta = _declared("IpsApi-2016-01-14-beta.wsdl")
    assert ("dateCreated", "0") in beta["JobLogDetail"]
    assert ("contextHandle", "0") in beta["ImageServingPublishJob"]
    assert ("includeWaitingJobs", "0") in beta["getActiveJobsParam"]


def test_the_types_of_the_unversioned_wsdl_are_the_real_ones():
    from lxml import etree

    xsd = "{http://www.w3.org/2001/XMLSchema}"

    def types(wsdl_file, type_name):
        root = etree.parse(str(ROOT / "wsdl" / wsdl_file)).getroot()
        node = next(n for n in root.iter(f"{xsd}complexType") if n.get("name") == type_name)
        return {e.get("name"): e.get("type") for e in node.iter(f"{xsd}element")}

    # Adobe's unversioned WSDL: totalSize an int, the directory upload's options booleans; the
    # type pages (today's versions): strings.
    assert types("IpsApi.wsdl", "ActiveJob")["totalSize"] == "xsd:int"
    assert types("IpsApi-2014-04-03.wsdl", "ActiveJob")["totalSize"] == "xsd:string"
    assert {k: v for k, v in types("IpsApi.wsdl", "UploadDirectoryJob").items()
            if k in ("overwrite", "includeSubfolders")} == {"overwrite": "xsd:boolean", "includeSubfolders": "xsd:boolean"}
    assert types("IpsApi-2014-04-03.wsdl", "UploadDirectoryJob")["overwrite"] == "xsd:string"
    assert list(types("IpsApi.wsdl", "JobLog"))[-4:] == ["fileUpdateCount", "totalFileCount", "fatalError", "detailArray"]


# --- The dashboard in every version, against an emulator that refuses what a version does not declare


@pytest.fixture(params=ALL, ids=IDS)
def version(request, connection):
    connection.api_version = request.param
    connection.save()
    return request.param


def test_test_connection_works_in_every_version(version, connection, company, other_company):
    from jobs.services import connections

    ok, text = connections.check_connection(connection)
    assert ok, text
    # service@example.com: IpsUser in 47 and 48; from 2016-01-14-beta a user has no type of its own.
    assert f"login works as service@example.com ({'a type in each company' if version == V2016 else 'IpsUser'})" in text
    assert "47 Demo Company as IpsUser" in text


def test_a_run_is_followed_to_its_final_log_in_every_version(version, ips_clock, job, users, ips_emulator):
    from .conftest import look, press_run

    ips_emulator.state.job_duration = 10
    execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    ips_clock.advance(5)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_run_handle and execution.ips_state == "Running" and not execution.ips_result
    ips_clock.advance(30)
    calls = len(ips_emulator.state.calls)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == "ok"
    assert (execution.ips_success_count, execution.ips_total_count) == (4, 4)
    # Before 4.0 getJobLogs never fills endDate: the end comes from the run's own log, by its handle.
    by_handle = [c["job_handle"] for c in ips_emulator.state.calls[calls:] if c["operation"] == "getJobLogDetails"]
    assert by_handle == ([execution.ips_run_handle] if version == "" else [])


@pytest.mark.parametrize("problems_only, page, rows, pages", [
    (False, 1, ["BeginImageServingPublish", "OriginalJobName", "JobClient"], 3),
    (False, 3, ["ImageServingPublishSuccess", "ImageServingPublishError", "EndImageServingPublish"], 3),
    (True, 1, ["ImageServingPublishError"], 1),
])
def test_the_run_page_filters_and_pages_alike_in_every_version(
    version, problems_only, page, rows, pages, ips_clock, job, users, ips_emulator, monkeypatch
):
    # Before 4.0 the request has no filter nor paging: every row comes, and they are the dashboard's.
    from jobs.services import activity

    from .conftest import look, press_run

    monkeypatch.setattr(activity, "DETAILS_PER_PAGE", 3)
    ips_emulator.state.jobs[job.handle].outcome = "errors"
    execution = press_run(job, users["IpsUser"])
    look(job.company)  # the watcher names the run
    execution.refresh_from_db()
    ips_clock.advance(30)
    details = activity.log_details(execution, page, problems_only)
    assert not details.error, details.error
    assert [d.log_type for d in details.rows] == rows
    assert (details.page, details.pages, details.log.detail_total_rows) == (page, pages, 9 if not problems_only else 1)


def test_the_run_page_shows_the_pages_of_an_unversioned_log(ips_clock, client, login, job, users, ips_emulator,
                                                            connection, monkeypatch):
    from django.urls import reverse

    from jobs.services import activity

    from .conftest import look, press_run

    connection.api_version = ""
    connection.save()
    monkeypatch.setattr(activity, "DETAILS_PER_PAGE", 3)
    ips_emulator.state.jobs[job.handle].outcome = "errors"
    execution = press_run(job, users["IpsUser"])
    look(job.company)  # the watcher names the run
    ips_clock.advance(30)
    login("IpsUser")
    url = reverse("jobs:run_detail", args=[execution.pk])
    first = client.get(url).content.decode()
    assert "9 rows" in first and "Page 1 of 3" in first and "Later →" in first
    problems = client.get(url + "?show=problems").content.decode()
    rows = problems.split('<table class="details">', 1)[1]  # the log's lines, not the run's own log type
    assert "ImageServingPublishError" in rows and "BeginImageServingPublish" not in rows


def test_a_client_sending_what_its_version_does_not_declare_is_refused(ips_emulator, tmp_path):
    """The WSDL bundled before issue 16 declared getJobLogDetails' paging in the unversioned
    namespace: a client built from it is refused by the emulator, as by IPS (30003)."""
    from lxml import etree

    xsd = "http://www.w3.org/2001/XMLSchema"
    root = etree.parse(str(ROOT / "wsdl" / "IpsApi.wsdl")).getroot()
    param = next(e for e in root.iter(f"{{{xsd}}}element") if e.get("name") == "getJobLogDetailsParam")
    etree.SubElement(param.find(f"{{{xsd}}}complexType/{{{xsd}}}sequence"), f"{{{xsd}}}element",
                     name="recordsPerPage", type="xsd:int", minOccurs="0")
    old = tmp_path / "IpsApi.wsdl"
    old.write_bytes(etree.tostring(root))
    client = ips.IpsClient(ips.Endpoint(service_url=ips_emulator.service_url, user="service@example.com",
                                        password="demo", wsdl_url=str(old)))
    try:
        assert client.declares("getJobLogDetails", "recordsPerPage")
        with pytest.raises(ips.IpsApiFault) as refused:
            client.get_job_log_details("47", job_handle="47|My Test Job|", records_per_page=1)
    finally:
        client.close()
    assert refused.value.code == 30003 and "'recordsPerPage' is not declared" in refused.value.reason


# --- 2016-01-14-beta: no user type of its own, only isIpsAdmin and a type in each company


def test_sign_in_reads_each_companys_type_and_is_ips_admin_in_2016_beta(connection, company, other_company):
    from jobs.models import IpsIdentity
    from jobs.services import people

    connection.api_version = V2016
    connection.ips_sign_in = True
    connection.save()
    user = people.sign_in_with_ips(connection, "ipsuser@example.com", "demo")
    assert {(m.company.handle, m.role) for m in user.memberships.all()} == {("47", "IpsUser")}
    assert IpsIdentity.objects.get(user=user).default_role == ""  # none in this version
    admin = people.sign_in_with_ips(connection, "ipsadmin@example.com", "demo")
    assert {(m.company.handle, m.role) for m in admin.memberships.all()} == {("47", "IpsAdmin"), ("48", "IpsAdmin")}
    assert IpsIdentity.objects.get(user=admin).default_role == "IpsAdmin"  # isIpsAdmin


def test_an_ips_admin_service_account_is_one_in_2016_beta(connection, company, ips_emulator):
    from jobs.services import connections, people

    connection.api_version = V2016
    connection.username = "ipsadmin@example.com"
    connection.save()
    ok, text = connections.check_connection(connection)
    assert ok and "login works as ipsadmin@example.com (IpsAdmin)" in text, text
    # Only an IpsAdmin may read other people: isIpsAdmin says it is one.
    refreshed, why = people.refresh_ips_memberships(connection)
    assert why == ""


def test_a_2016_beta_service_account_of_another_type_in_a_company_is_told_so(connection, company, other_company,
                                                                              ips_emulator):
    from jobs.services import connections

    ips_emulator.state.change_user("service@example.com", memberships={"48": "ImagePortalUser"})
    connection.api_version = V2016
    connection.save()
    ok, text = connections.check_connection(connection)
    assert not ok and "ImagePortalUser in company 48, which may not run jobs" in text, text


def test_user_info_reads_is_ips_admin():
    from jobs.ips.replies import read_reply

    def reply(inner):
        return (f'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                f'<getUserInfoReturn xmlns="{ipsversions.BASE_NS}/{V2016}"><userInfo>{inner}</userInfo>'
                f'</getUserInfoReturn></e:Body></e:Envelope>').encode()

    admin = read_reply("getUserInfo", reply("<email>a@b.c</email><isIpsAdmin>true</isIpsAdmin>"))
    assert (admin.default_role, admin.is_ips_admin) == ("IpsAdmin", True)
    other = read_reply("getUserInfo", reply("<email>a@b.c</email><isIpsAdmin>false</isIpsAdmin>"))
    assert (other.default_role, other.is_ips_admin) == (None, False)
    before = read_reply("getUserInfo", reply("<email>a@b.c</email><defaultRole>IpsUser</defaultRole>"))
    assert (before.default_role, before.is_ips_admin) == ("IpsUser", False)
