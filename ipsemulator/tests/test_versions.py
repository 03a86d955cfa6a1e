"""Each namespace answers in its own version's shapes: every reply of every
operation validates against the schema of the WSDL the emulator serves for
that namespace, and the version differences of the reference show.

The XML Schema is assembled here from the served WSDL's xsd:schema elements
(not with the emulator's code)."""

from pathlib import Path

import pytest
import requests
from lxml import etree

from ipsemulator.clock import ManualClock

from .soap import NS, NS_2014, SOAP_ENV, call, envelope, execute, job_logs, log_details, post

XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"
ADMIN = "ipsadmin@example.com"
OPERATIONS = ("executeJob", "getScheduledJobs", "getActiveJobs", "getJobLogs", "getJobLogDetails",
              "pauseJob", "resumeJob", "stopJob", "deleteJob", "checkLogin", "getCompanyInfo",
              "getUserInfo", "getCompanyMembership")


def _wsdl_files():
    return {etree.parse(str(p)).getroot().get("targetNamespace"): p.name
            for p in sorted(WSDL_DIR.glob("IpsApi*.wsdl"))}


def xml_schema(wsdl_bytes: bytes) -> etree.XMLSchema:
    """An XMLSchema of every xsd:schema in a WSDL: each becomes a document of
    its own (keeping the WSDL's namespace declarations), imports point at one
    another, and a driver schema imports them all."""
    root = etree.fromstring(wsdl_bytes)
    schemas = root.findall(f"{{{WSDL}}}types/{{{XSD}}}schema")
    names = {s.get("targetNamespace"): f"part{i}.xsd" for i, s in enumerate(schemas)}
    docs = {}
    for i, s in enumerate(schemas):
        doc = etree.Element(s.tag, dict(s.attrib), nsmap={**root.nsmap, **s.nsmap})
        doc.extend(etree.fromstring(etree.tostring(c)) for c in s)
        for imp in doc.findall(f"{{{XSD}}}import"):
            imp.set("schemaLocation", names[imp.get("namespace")])
        docs[f"part{i}.xsd"] = etree.tostring(doc)
    driver = etree.Element(f"{{{XSD}}}schema", targetNamespace="urn:test:driver")
    for ns, name in names.items():
        etree.SubElement(driver, f"{{{XSD}}}import", namespace=ns, schemaLocation=name)

    class Parts(etree.Resolver):
        def resolve(self, url, pubid, context):
            return self.resolve_string(docs[url.rsplit("/", 1)[-1]], context)

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Parts())
    return etree.XMLSchema(etree.fromstring(etree.tostring(driver), parser, base_url="mem:/driver.xsd"))


def _body_element(resp):
    root = etree.fromstring(resp.content)
    (el,) = list(root.find(f"{{{SOAP_ENV}}}Body"))
    return el


class Replies:
    """Calls every operation in one namespace, in many situations, and
    validates each reply."""

    def __init__(self, emu, ns):
        self.emu, self.ns = emu, ns
        wsdl = requests.get(emu.wsdl_url(None if ns == NS else ns.rsplit("/", 1)[1]), timeout=10)
        self.schema = xml_schema(wsdl.content)
        self.returns: list[etree._Element] = []
        self.operations: set[str] = set()

    def __call__(self, operation, params=(), user=ADMIN, fault=False):
        resp = call(self.emu, operation, params, user=user, ns=self.ns)
        el = _body_element(resp)
        if fault:
            assert resp.status_code == 500, resp.text
            (detail,) = list(el.find("detail"))
            self.schema.assertValid(etree.ElementTree(etree.fromstring(etree.tostring(detail))))
            return detail
        assert resp.status_code == 200, resp.text
        assert el.tag == f"{{{self.ns}}}{operation}Return"
        self.schema.assertValid(etree.ElementTree(etree.fromstring(etree.tostring(el))))
        self.returns.append(el)
        self.operations.add(operation)
        return el

    def names(self, parent_local=None) -> set[str]:
        """Local names of every element in the replies (optionally only the
        children of elements with that local name)."""
        out = set()
        for ret in self.returns:
            for el in ret.iter():
                if parent_local is None or (el.getparent() is not None
                                            and etree.QName(el.getparent()).localname == parent_local):
                    out.add(etree.QName(el).localname)
        return out


def exercise(emu, ns) -> Replies:
    """Every operation; runs of every job type at every stage of their life."""
    state = emu.state
    clock = ManualClock()
    state.clock = clock
    state.job_duration = 10
    r = Replies(emu, ns)
    companies = ("47", "48", "52", "60")
    jobs = {c: [j.handle for j in state.jobs.values() if j.company == c] for c in companies}
    for c in companies:
        r("getScheduledJobs", [("companyHandle", c)])
        r("getCompanyInfo", [("companyHandle", c)])
    r("getActiveJobs", [("companyHandle", "47")])  # empty
    for c in companies:
        for handle in jobs[c]:
            r("executeJob", [("companyHandle", c), ("jobHandle", handle)])
    # Paging and filtering of details: from 4.0 on (the unversioned request has neither).
    paged = ns != NS
    # at 0.5 s New; 3 and 5.5 Running (then one stops); 7.5 Stopped; 10.5 Done
    for moment in (0.5, 2.5, 2.5, 2.0, 3.0):
        clock.advance(moment)
        r("getActiveJobs")
        r("getJobLogs", [("numRows", "500")])
        for c in companies:
            r("getJobLogDetails", [("companyHandle", c), *([("recordsPerPage", "1000")] if paged else [])])
        if clock() == 5.5:
            r("stopJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")])
            r("getActiveJobs", [("companyHandle", "47")])
    clock.advance(10)
    r("getActiveJobs")
    r("getJobLogs", [("companyHandle", "47"), ("sortBy", "JobName"), ("sortDirection", "Ascending")])
    if paged:
        r("getJobLogDetails", [("companyHandle", "47"), ("logTypeArray", ["ImageServingPublishSuccess"])])
    r("pauseJob", [("companyHandle", "47"), ("jobHandle", "47|Video Sync|")])
    r("resumeJob", [("companyHandle", "47"), ("jobHandle", "47|Video Sync|")])
    r("deleteJob", [("companyHandle", "47"), ("jobHandle", "47|Video Sync|")])
    r("checkLogin", [("email", "ipsuser@example.com"), ("password", "demo")])
    r("checkLogin", [("email", "ipsuser@example.com"), ("password", "nope")])
    r("getCompanyInfo", [("companyName", "Café Zürich")])
    for user in (ADMIN, "ipsuser@example.com", "service@example.com"):
        r("getUserInfo", user=user)
        r("getCompanyMembership", user=user)
    # faults: the detail element validates too
    r("executeJob", [("companyHandle", "47")], fault=True)
    r("executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")],
      user="ipscompanyadmin@example.com", fault=True)
    return r


def test_the_emulator_serves_the_namespace_of_every_bundled_wsdl(ips_emulator):
    files = _wsdl_files()
    assert set(files) >= {NS, NS_2014}
    assert ips_emulator.namespaces == sorted(files)
    for ns, name in files.items():
        resp = requests.get(f"{ips_emulator.base_url}/scene7/webservice/{name}", timeout=10)
        assert etree.fromstring(resp.content).get("targetNamespace") == ns
        # and it answers in that namespace
        ret = _body_element(call(ips_emulator, "getUserInfo", ns=ns))
        assert ret.tag == f"{{{ns}}}getUserInfoReturn"


@pytest.mark.parametrize("ns", sorted(_wsdl_files()))
def test_every_reply_of_every_operation_validates_against_its_wsdl(ips_emulator, ns):
    replies = exercise(ips_emulator, ns)
    assert replies.operations == set(OPERATIONS)
    assert len(replies.returns) > 50


def test_a_reply_in_the_wrong_shape_does_not_validate(ips_emulator):
    # The check above would catch a 2014 shape in the unversioned namespace.
    schema = xml_schema(requests.get(ips_emulator.wsdl_url(), timeout=10).content)
    wrong = etree.fromstring(
        f'<x:getUserInfoReturn xmlns:x="{NS}"><x:userInfo><x:email>a@b.c</x:email>'
        f'<x:defaultRole>IpsUser</x:defaultRole></x:userInfo></x:getUserInfoReturn>'.encode())
    assert not schema.validate(etree.ElementTree(wrong))


ONLY_FROM_4_0 = {"locale", "description", "originalJobName", "jobSubType",
                 "transferSuccessCount", "detailTotalRows", "taskProgressArray", "assetHandle",
                 "optimizeImagesJob"}
ONLY_FROM_4_5 = {"auxArray", "dateCreated", "numUrls"}
ONLY_FROM_6_0 = {"membershipArray", "isActive", "taskState"}
NS_2012 = "http://www.scene7.com/IpsApi/xsd/2012-02-14"
NS_2013 = "http://www.scene7.com/IpsApi/xsd/2013-02-15"
NS_2016 = "http://www.scene7.com/IpsApi/xsd/2016-01-14-beta"


def test_pre_4_0_replies_have_the_old_shapes(ips_emulator):
    replies = exercise(ips_emulator, NS)
    names = replies.names()
    assert not names & (ONLY_FROM_4_0 | ONLY_FROM_4_5 | ONLY_FROM_6_0 | {"defaultRole", "isIpsAdmin"})
    assert {"role", "companyArray"} <= names
    assert "role" in replies.names("userInfo")
    # totalFileCount and a URL upload's urlArray: the unversioned WSDL has them (its generated classes).
    assert {"endDate", "fileDuplicateCount", "fileUpdateCount", "totalFileCount", "progress",
            "imageServingPublishJob", "uploadUrlsJob", "uploadDirectoryJob", "urlArray", "sourceUrl",
            "destPath"} <= names


@pytest.mark.parametrize("ns", [NS_2012, NS_2013, NS_2014])
def test_6_x_replies_have_the_new_shapes(ips_emulator, ns):
    replies = exercise(ips_emulator, ns)
    names = replies.names()
    assert ONLY_FROM_4_0 | ONLY_FROM_4_5 | ONLY_FROM_6_0 | {"defaultRole"} <= names
    assert not names & {"companyArray", "isIpsAdmin"}
    assert "role" not in replies.names("userInfo")
    assert {"role", "isActive", "company"} == replies.names("items") & {"role", "isActive", "company"}
    task_fields = replies.names("items") & {"taskType", "numProcessed", "numProcessing", "numPending",
                                            "progressMessage", "lastProgressUpdate", "taskState"}
    assert len(task_fields) == 7


def test_2016_beta_users_have_no_type_of_their_own(ips_emulator):
    replies = exercise(ips_emulator, NS_2016)
    assert {"isIpsAdmin", "membershipArray"} <= replies.names()
    assert not replies.names("userInfo") & {"role", "defaultRole"}
    assert {"role", "isActive", "company"} <= replies.names("items")
    admin = {r.findtext(f"{{{NS_2016}}}userInfo/{{{NS_2016}}}email"):
             r.findtext(f"{{{NS_2016}}}userInfo/{{{NS_2016}}}isIpsAdmin")
             for r in replies.returns if r.tag == f"{{{NS_2016}}}getUserInfoReturn"}
    assert admin == {ADMIN: "true", "ipsuser@example.com": "false", "service@example.com": "false"}


def test_2016_beta_log_details_carry_their_date(ips_emulator, clock):
    execute(ips_emulator, ns=NS_2016)
    clock.advance(60)
    [(log, rows)] = log_details(ips_emulator, "47", ips_emulator.state.runs[-1].handle, ns=NS_2016)
    assert rows and all(row["dateCreated"] for row in rows)
    assert rows[0]["dateCreated"] == log["startDate"] and rows[-1]["dateCreated"] == log["endDate"]


def test_an_operation_a_namespace_does_not_declare_is_30003(ips_emulator, tmp_path):
    # A WSDL is the whole contract of its namespace: drop getCompanyInfo from a
    # copy and that namespace no longer offers it.
    from ipsemulator import server

    text = (WSDL_DIR / "IpsApi-2014-04-03.wsdl").read_text(encoding="utf-8")
    ns_x = "http://www.scene7.com/IpsApi/xsd/2099-01-01"
    root = etree.fromstring(text.replace("http://www.scene7.com/IpsApi/xsd/2014-04-03", ns_x).encode())
    for el in root.iter(f"{{{XSD}}}element"):
        if el.get("name") in ("getCompanyInfoReturn", "taskState"):
            el.getparent().remove(el)
    (tmp_path / "IpsApi-2099-01-01.wsdl").write_bytes(etree.tostring(root))
    emu = server.start(wsdl_dir=tmp_path, job_duration=10)
    try:
        assert emu.namespaces == [ns_x]
        resp = call(emu, "getCompanyInfo", [("companyHandle", "47")], ns=ns_x)
        assert "Unknown operation" in _body_element(resp).findtext("faultstring") + resp.text
        emu.state.clock = ManualClock()
        call(emu, "executeJob", [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")], ns=ns_x)
        emu.state.clock.advance(5)
        ret = _body_element(call(emu, "getActiveJobs", ns=ns_x))
        names = {etree.QName(e).localname for e in ret.iter()}
        assert "taskType" in names and "taskState" not in names
        # the unversioned namespace is not served by this emulator
        body = envelope("getUserInfo", ns=NS)
        assert "Unsupported namespace" in post(emu, body).text
    finally:
        emu.stop()


def test_before_4_0_get_job_logs_leaves_out_end_date_and_zeroes_two_counts(ips_emulator, clock):
    """The 4.0 change log: getJobLogs "now" fills endDate, fileDuplicateCount and
    fileUpdateCount; before, only getJobLogDetails did, and getJobLogs said 0 for both
    (as the reference's unversioned example shows them): the WSDL's appinfo notes."""
    execute(ips_emulator)
    clock.advance(60)  # the run is over and its log final
    for ns, filled in ((NS, False), (NS_2014, True)):
        mine = [log for log in job_logs(ips_emulator, ns=ns) if log["jobHandle"].startswith("47||My Test Job_")]
        assert mine and all(("endDate" in log) is filled for log in mine), ns
        assert all(log["fileDuplicateCount"] == log["fileUpdateCount"] == "0" for log in mine)
        assert all(int(log["totalFileCount"]) > 0 for log in mine)
        newest = max(mine, key=lambda log: log["startDate"])
        [(detailed, _)] = log_details(ips_emulator, "47", newest["jobHandle"], ns=ns)
        assert detailed["endDate"], ns  # getJobLogDetails has it in every version
