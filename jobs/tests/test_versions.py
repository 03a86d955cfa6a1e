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
    ],
)
def test_fields_follow_the_change_log(type_name, field, unversioned, v2014):
    assert (field in [f.name for f in ipsversions.fields(type_name, "")]) is unversioned
    assert (field in [f.name for f in ipsversions.fields(type_name, "2014-04-03")]) is v2014


def test_memberships_are_a_company_array_before_6_0():
    assert [f.name for f in ipsversions.returns("getCompanyMembership", "")] == ["companyArray"]
    assert [f.name for f in ipsversions.returns("getCompanyMembership", "2014-04-03")] == ["membershipArray"]
