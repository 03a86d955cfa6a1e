"""jobs/roles.py against the table of authorized user types in shared/ips-api.md."""

import pytest

from jobs import roles
from jobs.roles import UserType

TYPES = [
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
]

# Copied cell by cell from ips-api.md ("x" = authorized), in the TYPES order.
TABLE = {
    "executeJob": "x.x.xxx.xx",
    "submitJob": "x.x.xxx.xx",
    "getScheduledJobs": "xxx.xxx.xx",
    "getActiveJobs": "xxx.xxx.xx",
    "pauseJob": "xxx.xxx.xx",
    "resumeJob": "xxx.xxx.xx",
    "stopJob": "xxx.xxx.xx",
    "deleteJob": "xxx.xxx.xx",
    "getJobLogs": "xxx.xxxxxx",
    "getJobLogDetails": "xxx..xxxxx",
    "checkLogin": "xxx.xxxxxx",
    "getUserInfo": "xxx.xxxxxx",
    "getCompanyMembership": "xxx.xxxxxx",
    "getCompanyInfo": "x.x.xxxxxx",
}
CELLS = [(op, t, marks[i] == "x") for op, marks in TABLE.items() for i, t in enumerate(TYPES)]


def test_there_are_the_ten_documented_user_types():
    assert [t.value for t in UserType] == TYPES


def test_every_operation_is_in_the_table():
    assert set(roles.AUTHORIZED) == set(TABLE)


@pytest.mark.parametrize("operation,user_type,allowed", CELLS)
def test_authorized_user_types(operation, user_type, allowed):
    assert roles.is_authorized(user_type, operation) is allowed


def test_execute_job_is_exactly_the_mission_list():
    assert roles.AUTHORIZED["executeJob"] == {
        "IpsAdmin",
        "IpsUser",
        "TrialSiteAdmin",
        "TrialSiteUser",
        "ImagePortalAdmin",
        "ImagePortalContrib",
        "ImagePortalContribUser",
    }


@pytest.mark.parametrize("operation", list(TABLE))
def test_no_role_is_never_authorized(operation):
    assert roles.is_authorized(None, operation) is False
    assert roles.is_authorized("", operation) is False


def test_refusal_reason_names_role_company_and_operation():
    assert (
        roles.refusal_reason("IpsCompanyAdmin", "executeJob", "47")
        == "Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)."
    )
    assert "no role in company 47" in roles.refusal_reason(None, "getScheduledJobs", "47")


def test_role_of_reads_memberships_and_superusers(users, company, other_company):
    assert company.role_of(users["IpsCompanyAdmin"]) == "IpsCompanyAdmin"
    assert other_company.role_of(users["IpsCompanyAdmin"]) is None
    assert other_company.role_of(users["admin"]) == "IpsAdmin"
    assert company.role_of(users["nomember"]) is None
    users["IpsUser"].is_active = False
    assert company.role_of(users["IpsUser"]) is None
    assert roles.may(users["TrialSiteUser"], "executeJob", company) is True
    assert roles.may(users["ImagePortalUser"], "executeJob", company) is False
