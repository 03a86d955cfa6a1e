"""User type x operation, as in the table of shared/ips-api.md.

The expected table is written out here from ips-api.md, not imported from the
emulator: each demo user <type lowercased>@example.com has that type as its
defaultRole and its role in company 47."""

import pytest

from .soap import call, fault, result

Y, N = True, False

# type: executeJob, getScheduledJobs, getJobLogs, getJobLogDetails, getActiveJobs,
#       stopJob (pause/resume/stop/delete row), getCompanyInfo, getUserInfo
EXPECTED = {
    "IpsAdmin":               (Y, Y, Y, Y, Y, Y, Y, Y),
    "IpsCompanyAdmin":        (N, Y, Y, Y, Y, Y, N, Y),
    "IpsUser":                (Y, Y, Y, Y, Y, Y, Y, Y),
    "WebServiceUser":         (N, N, N, N, N, N, N, N),
    "TrialSiteAdmin":         (Y, Y, Y, N, Y, Y, Y, Y),
    "TrialSiteUser":          (Y, Y, Y, Y, Y, Y, Y, Y),
    "ImagePortalAdmin":       (Y, Y, Y, Y, Y, Y, Y, Y),
    "ImagePortalUser":        (N, N, Y, Y, N, N, Y, Y),
    "ImagePortalContrib":     (Y, Y, Y, Y, Y, Y, Y, Y),
    "ImagePortalContribUser": (Y, Y, Y, Y, Y, Y, Y, Y),
}
COMPANY_JOB = [("companyHandle", "47"), ("jobHandle", "47|My Test Job|")]
OPERATIONS = [
    ("executeJob", COMPANY_JOB),
    ("getScheduledJobs", [("companyHandle", "47")]),
    ("getJobLogs", [("companyHandle", "47")]),
    ("getJobLogDetails", [("companyHandle", "47")]),
    ("getActiveJobs", [("companyHandle", "47")]),
    # the job is started first (as IpsAdmin) so that a permitted stop succeeds
    ("stopJob", COMPANY_JOB),
    ("getCompanyInfo", [("companyHandle", "47")]),
    ("getUserInfo", []),
]
CASES = [pytest.param(role, op, params, allowed, id=f"{role}-{op}")
         for role, row in EXPECTED.items()
         for (op, params), allowed in zip(OPERATIONS, row)]


def test_the_table_covers_ten_user_types():
    assert len(EXPECTED) == 10


@pytest.mark.parametrize("role, operation, params, allowed", CASES)
def test_user_type_may_or_may_not_perform_operation(ips_emulator, role, operation, params, allowed):
    if operation == "stopJob":
        result(call(ips_emulator, "executeJob", COMPANY_JOB), "executeJob")
    resp = call(ips_emulator, operation, params, user=f"{role.lower()}@example.com")
    if allowed:
        result(resp, operation)
    else:
        f = fault(resp)
        assert (f["status"], f["faultcode"], f["faultstring"], f["family"], f["code"]) == (
            500, "soapenv:Client", "AuthorizationException", "authorizationFault", 20003)
        assert operation in f["reason"]


def test_an_administrator_changes_users_over_http(ips_emulator):
    import requests

    url = ips_emulator.base_url + "/_emulator/users"
    resp = requests.post(url, json={"email": "ipsuser@example.com", "default_role": "IpsCompanyAdmin",
                                    "memberships": {"47": "TrialSiteUser", "48": None},
                                    "password_expires": "2020-01-01T00:00:00Z"}, timeout=5)
    assert resp.status_code == 200, resp.text
    user = ips_emulator.state.users["ipsuser@example.com"]
    assert user.default_role == "IpsCompanyAdmin"
    assert {c: (m.role, m.active) for c, m in user.memberships.items()} == {"47": ("TrialSiteUser", True)}
    assert user.password_expires.year == 2020
    resp = requests.post(url, json={"email": "ipsuser@example.com", "memberships": {"47": ["IpsUser", False]}},
                         timeout=5)
    assert resp.json()["memberships"] == {"47": ["IpsUser", False]}
    assert requests.post(url, json={"email": "nobody@example.com"}, timeout=5).status_code == 400
    assert requests.post(url, json={"email": "ipsuser@example.com", "colour": "red"}, timeout=5).status_code == 400
    assert requests.post(url, json={"email": "ipsuser@example.com", "default_role": "King"}, timeout=5).status_code == 400
