"""The dashboard against an IPS as strict as the real one may be, all at once, in every API version the dashboard offers.

The emulator refuses any parameter a version does not declare (always: a
refused call would fail the step that made it), answers
in SOAP 1.2 (the connection speaks its 1.2 binding) and answers void operations
with an empty Body. Test connection, sync, a Run whose result the company's
watcher records (getActiveJobs, getJobLogs by start date and, before 4.0,
getJobLogDetails by the run's handle, each in the version's own parameters),
the run's page with its log details, and a Stop all work.
"""

import pytest
from django.urls import reverse

from ipsemulator.clock import ManualClock
from jobs import ipsversions
from jobs.models import CompanyWatch, Execution
from jobs.services import connections, sync

from .conftest import HTMX, look, press_run

RUN_SECONDS = 10.0
NAMESPACE = {v.key: v.namespace for v in ipsversions.VERSIONS}


@pytest.fixture
def strict_ips(settings, ips_emulator, connection, request):
    """The emulator in SOAP 1.2 with empty void replies; the connection in the test's API version."""
    connection.api_version = request.param
    connection.save()
    settings.IPS_SOAP_VERSION = "1.2"
    ips_emulator.state.void_empty_body = True
    ips_emulator.state.clock = ManualClock(7000.0)
    ips_emulator.state.job_duration = RUN_SECONDS
    return request.param


def test_every_version_the_dashboard_offers_is_tested_here():
    assert sorted(NAMESPACE) == sorted(["", "2012-02-14", "2013-02-15", "2014-04-03", "2016-01-14-beta"])


@pytest.mark.parametrize("strict_ips", sorted(NAMESPACE), indirect=True)
def test_test_connection_sync_run_watch_details_and_stop_work_against_a_strict_ips(
    strict_ips, connection, company, users, client, login, ips_emulator, django_capture_on_commit_callbacks
):
    ok, message = connections.check_connection(connection)
    assert ok, message
    result = sync.sync_company(company)
    assert not result.error and result.created, str(result)
    job = company.jobs.get(handle="47|My Test Job|")

    with django_capture_on_commit_callbacks(execute=True):
        execution = press_run(job, users["IpsUser"])
    assert execution.outcome == "accepted", execution.message
    assert CompanyWatch.objects.filter(pk=company.pk).exists()  # the press woke its company's watcher

    # A second job runs and is stopped (stopJob's empty Body read as success).
    other = company.jobs.exclude(pk=job.pk).filter(is_gone=False).first()
    with django_capture_on_commit_callbacks(execute=True):
        other_run = press_run(other, users["IpsUser"], request_id="press-other")
    assert other_run.outcome == "accepted", other_run.message
    login("IpsUser")
    ips_emulator.state.clock.advance(RUN_SECONDS / 2)
    look(company)  # names both runs, in 1.2
    execution.refresh_from_db()
    assert execution.ips_run_handle, "the run was named by the watcher in 1.2"
    assert execution.ips_state == "Running"
    stop = client.post(reverse("jobs:stop", args=[other.pk]), **HTMX)
    assert stop.status_code == 200, stop.content.decode()[:300]

    ips_emulator.state.clock.advance(RUN_SECONDS * 2)  # both over, and gone from getActiveJobs
    with django_capture_on_commit_callbacks(execute=True):
        assert look(company).ended == 2
    execution.refresh_from_db()
    assert execution.ips_result == "ok" and execution.ips_success_count > 0
    assert execution.ips_ended_at is not None and execution.ips_runtime_ms is not None
    assert Execution.objects.get(pk=other_run.pk).ips_result == "stopped"

    page = client.get(reverse("jobs:run_detail", args=[execution.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert '<table class="details">' in body, body[body.find('id="log-details"'):][:600]
    assert body.count('<tr class="log-') >= 1 and "No details." not in body

    calls = ips_emulator.state.calls
    assert calls and {c["soap_version"] for c in calls} == {"1.2"}
    assert {c["namespace"] for c in calls} == {NAMESPACE[strict_ips]}
    operations = {c["operation"] for c in calls}
    assert {"getActiveJobs", "getJobLogs", "executeJob", "stopJob", "getJobLogDetails"} <= operations
    assert not [c for c in calls if c["injected"]]
    assert list(Execution.objects.filter(operation="stopJob").values_list("outcome", flat=True)) == ["accepted"]
