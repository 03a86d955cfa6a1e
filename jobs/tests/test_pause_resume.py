"""Pause and Resume: a job's schedule paused or resumed in IPS (pauseJob, resumeJob), from the
jobs page and the job's page, over real HTTP to the emulator.

Who may press them is the reference's (r-pause-job.md, r-resume-job.md); the
button offered follows the trigger state IPS reports, read back after each
press; every press leaves one audit row.
"""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs import ips, roles
from jobs.models import Execution, Job, Membership
from jobs.services import sync

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, NO_MEMBERSHIP, OTHER_COMPANY_ONLY, SUPERUSER, soap_calls

#: "Authorized User Types" of r-pause-job.md and r-resume-job.md, word for word: the same eight.
REFERENCE_TYPES = {
    "IpsUser",
    "IpsAdmin",
    "IpsCompanyAdmin",
    "TrialSiteAdmin",
    "TrialSiteUser",
    "ImagePortalAdmin",
    "ImagePortalContrib",
    "ImagePortalContribUser",
}

#: (action, IPS operation, trigger state before, trigger state IPS reports after).
CASES = [
    ("pause", "pauseJob", "Normal", "Paused"),
    ("resume", "resumeJob", "Paused", "Normal"),
]
ITALIAN = {"HTTP_ACCEPT_LANGUAGE": "it-IT,it;q=0.9"}


def expected(operation: str, actor: str) -> tuple[int, str | None]:
    """(HTTP status, outcome of the one audit row, or None for no row), by roles.AUTHORIZED."""
    if actor == ANONYMOUS:
        return 200, None  # htmx: HX-Redirect to the login page
    if actor in (NO_MEMBERSHIP, OTHER_COMPANY_ONLY):
        return 404, "denied"  # no role in company 47: the job is not even named
    if actor == SUPERUSER or actor in roles.AUTHORIZED[operation]:
        return 200, "accepted"
    return 403, "denied"


def form_of(job, name: str) -> str:
    """The opening of the button's form in a page: its address."""
    return f'action="{reverse(f"jobs:{name}", args=[job.pk])}"'


def set_trigger(ips_emulator, job, state: str):
    """The job's schedule in that state in IPS, and the dashboard synced to it."""
    ips_emulator.state.jobs[job.handle].trigger_state = state
    assert not sync.sync_company(job.company).error
    job.refresh_from_db()
    assert job.trigger_state == state
    return job


def press(client, job, name, **extra):
    return client.post(reverse(f"jobs:{name}", args=[job.pk]), **HTMX, **extra)


def test_roles_py_authorizes_the_reference_types_for_pause_and_resume():
    assert roles.AUTHORIZED["pauseJob"] == REFERENCE_TYPES
    assert roles.AUTHORIZED["resumeJob"] == REFERENCE_TYPES


@pytest.mark.parametrize("actor", ALL_ACTORS)
@pytest.mark.parametrize("name, operation, before, after", CASES)
def test_the_role_table(name, operation, before, after, actor, client, login, job, ips_emulator):
    job = set_trigger(ips_emulator, job, before)
    user = login(actor)

    response = press(client, job, name)

    status, outcome = expected(operation, actor)
    assert response.status_code == status
    body = response.content.decode()
    rows = list(Execution.objects.all())
    sent = soap_calls(ips_emulator, operation)
    job.refresh_from_db()
    in_ips = ips_emulator.state.jobs[job.handle]
    if outcome is None:
        assert rows == [] and sent == []
        assert response["HX-Redirect"].startswith(reverse("login"))
        assert job.trigger_state == in_ips.trigger_state == before
        return
    [row] = rows
    assert (row.operation, row.outcome, row.user, row.job) == (operation, outcome, user, job)
    if actor in roles.UserType.values:
        assert row.role == actor
    if outcome == "accepted":
        assert [(c["company_handle"], c["job_handle"]) for c in sent] == [("47", "47|My Test Job|")]
        # Read back after the change: the stored state is what IPS says.
        operations = [c["operation"] for c in ips_emulator.state.calls]
        assert operations[operations.index(operation) + 1:] == ["getScheduledJobs"]
        assert job.trigger_state == in_ips.trigger_state == after
        assert job.next_fire_time == in_ips.next_fire_time
        verb = {"pause": "pausing", "resume": "resuming"}[name]
        assert row.message.startswith(
            f"IPS accepted {verb} “My Test Job” and now reports its trigger state as {after}"
        ), row.message
        assert row.fault_code is None
        # The answer is the job's row, its button flipped, and the message.
        assert body.lstrip().startswith(f'<tr id="job-{job.pk}"')
        flipped = {"pause": "resume", "resume": "pause"}[name]
        assert form_of(job, flipped) in body and form_of(job, name) not in body
        assert escape(row.message) in body
    else:
        assert sent == []
        assert job.trigger_state == in_ips.trigger_state == before
    if status == 403:
        words = {"pause": "pause jobs (pauseJob)", "resume": "resume jobs (resumeJob)"}[name]
        assert row.message == f"Your role {actor} in company 47 cannot {words}."
        assert escape(row.message) in body
    if status == 404:
        assert "My Test Job" not in body


@pytest.mark.parametrize("page", ["list", "job_detail"])
def test_the_button_offered_flips_with_the_trigger_state(page, client, login, job, ips_emulator):
    login("IpsUser")
    url = reverse("jobs:list") if page == "list" else reverse("jobs:job_detail", args=[job.pk])

    def offered():
        body = client.get(url).content.decode()
        return [name for name in ("run", "pause", "resume") if form_of(job, name) in body]

    assert offered() == ["run", "pause"]
    assert press(client, job, "pause").status_code == 200
    assert offered() == ["run", "resume"]
    assert press(client, job, "resume").status_code == 200
    assert offered() == ["run", "pause"]


def test_a_job_paused_in_ips_offers_resume_after_a_sync(client, login, job, ips_emulator):
    login("IpsUser")
    set_trigger(ips_emulator, job, "Paused")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert form_of(job, "resume") in body and form_of(job, "pause") not in body
    assert '<button type="submit" class="resume" data-action="resume"><span aria-hidden="true">Resume</span>' in body


def test_pause_stays_offered_while_ips_runs_the_job(client, login, job, ips_emulator):
    """Pause acts on the schedule, not on the run: a running job's schedule can be paused."""
    login("IpsUser")
    answer = client.post(reverse("jobs:run", args=[job.pk]), **HTMX).content.decode()
    assert Execution.objects.get().outcome == "accepted"
    assert form_of(job, "pause") in answer


def test_the_confirms_name_the_job_and_its_company(client, login, job, ips_emulator):
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert (
        'hx-confirm="Pause the schedule of “My Test Job” in company 47 (Demo Company)? '
        'IPS will not start it at its fire times until it is resumed."'
    ) in body
    # A name from IPS stays text in the confirm too (that job is Paused in the demo data).
    assert 'hx-confirm="Resume the schedule of “&lt;b&gt;Bold&lt;/b&gt; Upload” in company 47 (Demo Company)?' in body
    set_trigger(ips_emulator, job, "Paused")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert (
        'hx-confirm="Resume the schedule of “My Test Job” in company 47 (Demo Company)? '
        'IPS will start it again from its next fire time."'
    ) in body


def test_pause_is_disabled_with_the_reason_when_it_cannot_be_pressed(client, login, users, job):
    Membership.objects.filter(user=users["IpsUser"]).update(
        from_ips=True, read_at=timezone.now() - dt.timedelta(days=30)
    )
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert form_of(job, "pause") not in body
    assert '<button type="button" class="pause" aria-disabled="true" title="Your IPS user type in company 47 was last read' in body


def test_pause_on_a_job_gone_from_ips_is_disabled_and_refused(client, login, job, ips_emulator):
    Job.objects.filter(pk=job.pk).update(is_gone=True, gone_at=timezone.now())
    login("IpsUser")
    body = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert ('<button type="button" class="pause" aria-disabled="true" title="This job no longer exists in IPS." '
            'data-action="pause"><span aria-hidden="true">Pause</span>') in body
    assert press(client, job, "pause").status_code == 409
    assert Execution.objects.get().outcome == "job_gone"
    assert soap_calls(ips_emulator, "pauseJob") == []


@pytest.mark.parametrize(
    "injection, outcome, message",
    [
        (
            dict(kind="soap_fault", fault="ipsApiFault", code=30000, reason="Scheduler down"),
            "refused",
            "IPS refused to pause the job: 30000 EXCEPTION — Scheduler down.",
        ),
        (
            dict(kind="soap_fault", fault="authorizationFault", code=20003, reason="No permission"),
            "refused",
            "IPS refused to pause the job: 20003 NO_OPERATION_PERMISSION — No permission. This is about the "
            "dashboard's IPS service account or the set-up of company 47, not your own role: ask an "
            "administrator to check the connection.",
        ),
        (
            dict(kind="http_500_html"),
            "ips_error",
            "IPS answered with an HTTP 500 error page instead of SOAP. The job may or may not be paused: "
            "sync from IPS to see its trigger state before trying again.",
        ),
    ],
    ids=["ips-fault", "authorization-fault", "http-500"],
)
def test_a_refused_pause_is_audited_and_changes_nothing(injection, outcome, message, client, login, job, ips_emulator):
    ips_emulator.state.inject(injection.pop("kind"), operation="pauseJob", **injection)
    login("IpsUser")

    response = press(client, job, "pause")

    assert response.status_code == 502
    [row] = Execution.objects.all()
    assert (row.operation, row.outcome, row.message) == ("pauseJob", outcome, message)
    if injection.get("code"):
        assert (row.fault_code, row.fault_reason) == (injection["code"], injection["reason"])
    job.refresh_from_db()
    assert job.trigger_state == ips_emulator.state.jobs[job.handle].trigger_state == "Normal"
    # Nothing read back after a refusal; the row keeps offering Pause, and says why not.
    operations = [c["operation"] for c in ips_emulator.state.calls]
    assert operations[operations.index("pauseJob") + 1:] == []
    body = response.content.decode()
    assert form_of(job, "pause") in body and form_of(job, "resume") not in body
    assert escape(message) in body


@pytest.mark.parametrize("kind", ["soap_fault", "drop_connection"])
def test_a_failed_read_back_still_accepts_and_says_so(kind, client, login, job, ips_emulator):
    params = dict(fault="ipsApiFault", code=30000, reason="Busy") if kind == "soap_fault" else {}
    ips_emulator.state.inject(kind, operation="getScheduledJobs", **params)
    login("IpsUser")

    response = press(client, job, "pause")

    assert response.status_code == 200
    [row] = Execution.objects.all()
    assert (row.operation, row.outcome, row.fault_code) == ("pauseJob", "accepted", None)
    assert row.message.startswith("IPS accepted pausing “My Test Job”, but its trigger state could not be read back (")
    assert row.message.endswith("): sync from IPS to see it.")
    assert escape(row.message) in response.content.decode()
    assert ips_emulator.state.jobs[job.handle].trigger_state == "Paused"
    # Not assumed: the dashboard keeps what IPS last said until it says more.
    job.refresh_from_db()
    assert job.trigger_state == "Normal"


def test_a_pause_is_in_history_and_the_job_page_shows_what_ips_said(client, login, job, ips_emulator):
    login("IpsUser")
    press(client, job, "pause")
    row = Execution.objects.get()
    history = client.get(reverse("jobs:history")).content.decode()
    assert f'id="execution-{row.pk}"' in history and '<span class="badge">pauseJob</span>' in history
    page = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    assert f'id="execution-{row.pk}"' in page
    assert '<dt>Trigger state</dt><dd>Paused</dd>' in page
    assert client.get(reverse("jobs:run_detail", args=[row.pk])).status_code == 200


def test_pause_speaks_italian_and_is_recorded_in_english(client, login, job, ips_emulator):
    login("IpsUser")
    page = client.get(reverse("jobs:list"), **ITALIAN).content.decode()
    assert '<button type="submit" class="pause" data-action="pause"><span aria-hidden="true">Sospendi</span>' in page
    assert "hx-confirm=\"Sospendere la pianificazione di “My Test Job” nell'azienda 47 (Demo Company)?" in page
    answer = press(client, job, "pause", **ITALIAN).content.decode()
    assert "IPS ha accettato di sospendere “My Test Job” e ora ne riporta lo stato del trigger come Paused." in answer
    assert '<button type="submit" class="resume" data-action="resume"><span aria-hidden="true">Riprendi</span>' in answer
    assert Execution.objects.get().message == (
        "IPS accepted pausing “My Test Job” and now reports its trigger state as Paused."
    )


# --- End to end, with IPS's own scheduler -------------------------------------------


def runs_since(client, job, since) -> list:
    """The job's runs IPS logged from ``since`` on (getJobLogs; each call also lets IPS's scheduler fire)."""
    return [
        log for log in client.get_job_logs(job.company.handle, start_date=since)
        if log.original_job_name == job.name or log.job_name == job.name
    ]


def test_a_paused_job_does_not_fire_and_fires_again_from_its_next_fire_time_after_resume(
    client, login, job, ips_emulator, ips_clock
):
    state = ips_emulator.state
    state.job_duration = 60.0
    state.scheduler = True  # fire times from now on, rolled forward from the data file's
    in_ips = state.jobs[job.handle]
    ips_client = ips.client_for(job.company.connection)
    since = state.now()
    login("IpsUser")

    assert press(client, job, "pause").status_code == 200
    job.refresh_from_db()
    assert job.trigger_state == in_ips.trigger_state == "Paused"
    missed = in_ips.next_fire_time
    assert missed > state.now()

    # Its fire time passes while paused: IPS starts nothing.
    ips_clock.advance((missed - state.now()).total_seconds() + 60)
    assert runs_since(ips_client, job, since) == []
    assert [a for a in ips_client.get_active_jobs(job.company.handle) if a.original_name == job.name] == []

    assert press(client, job, "resume").status_code == 200
    job.refresh_from_db()
    assert job.trigger_state == in_ips.trigger_state == "Normal"
    # The missed fire time is not made up for: the next one is after now, and the page shows it.
    following = in_ips.next_fire_time
    assert following > state.now() > missed
    assert job.next_fire_time == following

    ips_clock.advance((following - state.now()).total_seconds() - 1)
    assert runs_since(ips_client, job, since) == []
    ips_clock.advance(2)
    [log] = runs_since(ips_client, job, since)
    assert log.start_date == following
    [active] = [a for a in ips_client.get_active_jobs(job.company.handle) if a.original_name == job.name]
    assert active.start_date == following
    # IPS's own run: the dashboard sent no executeJob.
    assert soap_calls(ips_emulator, "executeJob") == []
