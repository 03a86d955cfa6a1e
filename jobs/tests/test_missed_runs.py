"""Missed runs (issue 19): a scheduled job whose fire time, plus its grace, passes on IPS's clock with no
run of it in IPS is recorded once (a MissedRun) and announced; the run that comes clears it.

Against the emulator over real HTTP, its scheduler on, its clock moved through /_emulator/clock (never
slept for), a job held back through /_emulator/hold (its fire times pass with no run, as when IPS
silently misses one). The watcher is driven look by look (``look``)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests
from django.contrib.auth.models import Permission
from django.db import connection as db_connection
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import events, roles
from jobs.models import Job, MissedRun
from jobs.services import sync, watch

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, NO_MEMBERSHIP, OTHER_COMPANY_ONLY, SUPERUSER, look, wait_for
from .html_forms import form_data
from .test_watch_faults import Watchers, looks_of
from .test_workers import procs  # noqa: F401  (the fixture: processes stopped before the tables are emptied)

GRACE = dt.timedelta(minutes=15)


# --- the emulator, over HTTP ---------------------------------------------------------------------


def control(emulator, name: str, payload=None, method: str = "post") -> dict:
    resp = requests.request(method, f"{emulator.base_url}/_emulator/{name}", json=payload, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ips_now(emulator) -> dt.datetime:
    return dt.datetime.fromisoformat(control(emulator, "clock", method="get")["now"])


def advance_to(emulator, when: dt.datetime, plus: dt.timedelta = dt.timedelta(0)) -> None:
    """IPS's clock to ``when`` + ``plus`` (its scheduler fires what is due on the way, at its next call)."""
    seconds = (when + plus - ips_now(emulator)).total_seconds()
    assert seconds >= 0, f"IPS's clock is past {when + plus} already"
    control(emulator, "clock", {"advance": seconds})


def advance_both(emulator, dashboard_clock, when: dt.datetime, plus: dt.timedelta = dt.timedelta(0)) -> None:
    """Time passes for IPS and the dashboard alike (their clocks keep their offset): IPS's to ``when`` + ``plus``."""
    seconds = (when + plus - ips_now(emulator)).total_seconds()
    control(emulator, "clock", {"advance": seconds})
    dashboard_clock.advance(seconds)


def hold(emulator, job, held=True) -> None:
    assert control(emulator, "hold", {"job_handle": job.handle, "held": held})["ok"]


@pytest.fixture
def scheduling(ips_emulator):
    """IPS's scheduler on, on a clock that moves only when told: fire times from now on."""
    control(ips_emulator, "clock", {"advance": 0})
    control(ips_emulator, "config", {"scheduler": True, "job_duration": 60})
    return ips_emulator


@pytest.fixture
def announced(django_capture_on_commit_callbacks):
    """The missed-run events sent (after their commit), by MissedRun id."""
    said = []

    def receiver(sender, missed_id, **kwargs):
        said.append(missed_id)

    events.run_missed.connect(receiver)
    yield said
    events.run_missed.disconnect(receiver)


def look_now(company, django_capture_on_commit_callbacks, owner="test-watcher"):
    """One look, its after-commit events sent as a real commit would send them."""
    with django_capture_on_commit_callbacks(execute=True):
        return look(company, owner)


def synced_job(company, handle="47|My Test Job|") -> Job:
    assert not sync.sync_company(company).error
    return Job.objects.get(company=company, handle=handle)


def missed_of(job) -> list[MissedRun]:
    return list(MissedRun.objects.filter(job=job).order_by("fire_time"))


# --- detection -----------------------------------------------------------------------------------


def test_a_held_back_job_misses_once_after_its_grace_not_before_and_clears_when_its_run_comes(
    company, scheduling, announced, django_capture_on_commit_callbacks
):
    emu = scheduling
    job = synced_job(company)
    fire = job.next_fire_time
    assert job.expected_fire_at == fire and job.missed_grace == GRACE and fire > ips_now(emu)
    hold(emu, job)

    advance_to(emu, fire, GRACE - dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == [] and announced == []  # the grace has not ended on IPS's clock

    advance_to(emu, fire, GRACE + dt.timedelta(seconds=1))
    result = look_now(company, django_capture_on_commit_callbacks)
    [missed] = missed_of(job)
    assert result.missed == 1 and announced == [missed.pk]
    assert (missed.fire_time, missed.company_id, missed.fires_missed) == (fire, company.pk, 1)
    assert missed.cleared_at is None and missed.cleared_by_execution is None
    assert fire + GRACE < missed.detected_at <= ips_now(emu)

    for _ in range(2):  # later looks record nothing more
        look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == [missed] and announced == [missed.pk]

    # Let go: IPS fires the job at its next fire time; the watcher records the run, which clears it.
    hold(emu, job, held=False)
    following = emu.state.jobs[job.handle].next_fire_time
    assert following > fire
    advance_to(emu, following, dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    missed.refresh_from_db()
    run = missed.cleared_by_execution
    assert run is not None and run.job == job and run.started_by == "schedule"
    assert run.ips_started_at == following and missed.cleared_at is not None
    assert announced == [missed.pk]


def test_a_run_within_the_grace_is_no_miss(company, scheduling, announced, django_capture_on_commit_callbacks):
    emu = scheduling
    job = synced_job(company)
    fire = job.next_fire_time
    advance_to(emu, fire, dt.timedelta(seconds=1))  # IPS fires it
    look_now(company, django_capture_on_commit_callbacks)
    advance_to(emu, fire, GRACE + dt.timedelta(minutes=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == [] and announced == []
    # Accounted for: the job expects its next fire time, as the watcher's first look synced it.
    job.refresh_from_db()
    assert job.expected_fire_at == job.next_fire_time == emu.state.jobs[job.handle].next_fire_time > fire


def test_a_job_paused_before_its_fire_time_never_misses(
    client, users, company, scheduling, announced, django_capture_on_commit_callbacks
):
    emu = scheduling
    job = synced_job(company)
    fire = job.next_fire_time
    client.force_login(users["IpsAdmin"])
    assert client.post(reverse("jobs:pause", args=[job.pk]), **HTMX).status_code == 200
    job.refresh_from_db()
    assert job.trigger_state == "Paused"
    advance_to(emu, fire, GRACE + dt.timedelta(minutes=1))
    look_now(company, django_capture_on_commit_callbacks)
    synced_job(company)  # and synced while paused
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == [] and announced == []
    job.refresh_from_db()
    assert job.expected_fire_at is None


def test_a_job_paused_over_its_fire_time_and_resumed_before_any_look_missed_nothing(
    client, users, company, scheduling, announced, django_capture_on_commit_callbacks, dashboard_clock
):
    emu = scheduling
    job = synced_job(company)
    fire = job.next_fire_time
    client.force_login(users["IpsAdmin"])
    assert client.post(reverse("jobs:pause", args=[job.pk]), **HTMX).status_code == 200
    advance_both(emu, dashboard_clock, fire, dt.timedelta(minutes=1))  # its fire time passes while paused
    assert client.post(reverse("jobs:resume", args=[job.pk]), **HTMX).status_code == 200
    job.refresh_from_db()
    assert job.trigger_state == "Normal" and job.expected_fire_at == fire  # no look saw the pause
    advance_both(emu, dashboard_clock, fire, GRACE + dt.timedelta(minutes=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == [] and announced == []
    job.refresh_from_db()
    assert job.expected_fire_at == job.next_fire_time > fire  # on to the fire time after the resume


def test_a_job_ips_has_paused_expects_no_run(company, scheduling, announced, django_capture_on_commit_callbacks):
    emu = scheduling
    paused = synced_job(company, "47|<b>Bold</b> Upload|")
    assert paused.trigger_state == "Paused"
    assert paused.expected_fire_at is None and paused.next_fire_time is not None
    advance_to(emu, max(paused.next_fire_time, ips_now(emu)), GRACE + dt.timedelta(minutes=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(paused) == []


def test_a_fire_time_sync_replaces_before_the_grace_ends_is_not_lost(
    company, scheduling, announced, django_capture_on_commit_callbacks
):
    """A job due every 2 minutes, grace 15: IPS's next fire time moves on many times within one grace."""
    emu = scheduling
    emu.state.add_job("47", "Every Two", exec_schedule="00 */2 * * * ", submit_user_email="ipsadmin@example.com",
                      time_zone="PST")
    job = synced_job(company, "47|Every Two|")
    first = job.expected_fire_at
    hold(emu, job)
    advance_to(emu, first, dt.timedelta(minutes=5))
    look_now(company, django_capture_on_commit_callbacks)  # within the grace: nothing yet
    job = synced_job(company, "47|Every Two|")  # IPS's next fire time has moved on; the expected one has not
    assert job.next_fire_time > first and job.expected_fire_at == first
    advance_to(emu, first, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    [missed] = missed_of(job)
    assert missed.fire_time == first and announced == [missed.pk]
    # The next expected fire time is the one sync saw; its miss is counted on the open one, not announced.
    job.refresh_from_db()
    second = job.expected_fire_at
    assert second is not None and second > first
    advance_to(emu, second, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    [missed] = missed_of(job)
    assert (missed.fire_time, missed.last_fire_time, missed.fires_missed) == (first, second, 2)
    assert announced == [missed.pk]


def test_a_job_gone_from_ips_misses_nothing(company, scheduling, announced, django_capture_on_commit_callbacks):
    emu = scheduling
    job = synced_job(company)
    fire = job.expected_fire_at
    control(emu, "remove_job", {"job_handle": job.handle})
    synced_job(company, "47|Nightly | Publish|")
    job.refresh_from_db()
    assert job.is_gone and job.expected_fire_at is None
    advance_to(emu, fire, GRACE + dt.timedelta(minutes=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert missed_of(job) == []


def test_the_grace_is_the_jobs_own(company, scheduling, announced, django_capture_on_commit_callbacks):
    emu = scheduling
    job = synced_job(company)
    Job.objects.filter(pk=job.pk).update(missed_grace=dt.timedelta(minutes=2))
    hold(emu, job)
    advance_to(emu, job.next_fire_time, dt.timedelta(minutes=2, seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    assert [m.fire_time for m in missed_of(job)] == [job.next_fire_time]


# --- two watchers at once (PostgreSQL) -----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_watchers_checking_at_once_record_and_announce_a_miss_once(company, scheduling):
    """Two watchers (two app servers) check the company in the same instant, each on its own database
    connection: one MissedRun, one announcement (missedrun_once_per_fire)."""
    assert db_connection.vendor == "postgresql"
    emu = scheduling
    job = synced_job(company)
    hold(emu, job)
    advance_to(emu, job.next_fire_time, GRACE + dt.timedelta(seconds=1))
    now = ips_now(emu)
    said = []
    events.run_missed.connect(lambda sender, missed_id, **kw: said.append(missed_id), weak=False,
                              dispatch_uid="two-watchers")
    start = threading.Barrier(2)
    errors = []

    def watcher():
        try:
            start.wait(timeout=10)
            watch.check_missed(company, now)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    try:
        threads = [threading.Thread(target=watcher) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        events.run_missed.disconnect(dispatch_uid="two-watchers")
    assert errors == []
    [missed] = missed_of(job)
    assert said == [missed.pk]


# --- shown on the jobs page and the job's page ---------------------------------------------------


def shown(when: dt.datetime) -> str:
    """A time as the pages write it for a user in UTC (TIME_ZONE; no zone of their own)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture
def history_of_misses(company, scheduling, django_capture_on_commit_callbacks):
    """My Test Job missed a fire time, a run cleared it, then it missed another (open): as recorded by
    the watcher. Returns (job, cleared, open)."""
    emu = scheduling
    job = synced_job(company)
    hold(emu, job)
    first = job.next_fire_time
    advance_to(emu, first, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    hold(emu, job, held=False)
    second = emu.state.jobs[job.handle].next_fire_time
    advance_to(emu, second, dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)  # the run at the second fire time clears the first
    advance_to(emu, second, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)  # and accounts for the second
    hold(emu, job)
    third = synced_job(company).expected_fire_at  # the next sync: the job expects its next fire time
    assert third > second
    advance_to(emu, third, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    cleared, open_ = missed_of(job)
    assert cleared.fire_time == first and cleared.cleared_by_execution is not None
    assert open_.fire_time == third and open_.is_open
    return job, cleared, open_


def test_the_jobs_page_shows_the_missed_run_on_its_row_and_a_count_on_the_company(client, users, history_of_misses):
    job, cleared, open_ = history_of_misses
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:list")).content.decode()
    row = page[page.index(f'id="job-{job.pk}"'):]
    row = row[:row.index("</tr>")]
    assert f'id="missed-{job.pk}"' in row
    assert f'Missed run at <time datetime="{open_.fire_time.isoformat()}">{shown(open_.fire_time)}</time>' in row
    assert shown(cleared.fire_time) not in page  # cleared: no longer on the jobs page
    assert f'id="missed-count-{job.company_id}"' in page
    assert "1 job with a missed run" in page
    # Another job's row says nothing of it.
    other = Job.objects.filter(company=job.company).exclude(pk=job.pk).first()
    assert f'id="missed-{other.pk}"' not in page


def test_the_pages_in_italian(client, users, history_of_misses):
    job, _, open_ = history_of_misses
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:list"), HTTP_ACCEPT_LANGUAGE="it-IT,it;q=0.9").content.decode()
    assert f'Esecuzione mancata: <time datetime="{open_.fire_time.isoformat()}">' in page
    assert "1 processo con un’esecuzione mancata" in page
    detail = client.get(reverse("jobs:job_detail", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="it-IT,it;q=0.9")
    detail = detail.content.decode()
    assert "<h2>Esecuzioni mancate</h2>" in detail and "Aperta: nessuna esecuzione da allora" in detail


def test_the_jobs_page_shows_nothing_missed_when_nothing_was(client, users, company, scheduling):
    synced_job(company)
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:list")).content.decode()
    assert "badge-missed" not in page and "missed-count-" not in page


def test_the_jobs_page_asks_for_missed_runs_in_one_query_whatever_their_number(
    client, users, history_of_misses, django_assert_max_num_queries
):
    job, _, _ = history_of_misses
    client.force_login(users["IpsUser"])
    with CaptureQueriesContext(db_connection) as queries:
        client.get(reverse("jobs:list"))
    few = len(queries)
    # Every job of the company with a missed run open.
    for other in Job.objects.filter(company=job.company).exclude(pk=job.pk):
        MissedRun.objects.create(job=other, company=job.company, fire_time=other.next_fire_time or job.next_fire_time,
                                 last_fire_time=other.next_fire_time or job.next_fire_time,
                                 detected_at=job.next_fire_time)
    with django_assert_max_num_queries(few):
        page = client.get(reverse("jobs:list")).content.decode()
    assert page.count('class="badge badge-missed"') == Job.objects.filter(company=job.company).count()


def test_the_jobs_own_page_lists_its_open_and_recent_missed_runs(client, users, history_of_misses):
    job, cleared, open_ = history_of_misses
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    section = page[page.index('id="missed-runs"'):]
    section = section[:section.index("</section>")]
    # Latest first: the open one, then the one a run cleared (with a link to that run).
    assert section.index(f'id="missed-run-{open_.pk}"') < section.index(f'id="missed-run-{cleared.pk}"')
    assert "Open: no run since" in section
    assert f"Cleared at {shown(cleared.cleared_at)}" in section
    assert reverse("jobs:run_detail", args=[cleared.cleared_by_execution_id]) in section
    assert f'<time datetime="{open_.fire_time.isoformat()}">{shown(open_.fire_time)}</time>' in section
    assert "Missed after" in page and "15 min past a fire time with no run in IPS" in page


# Who sees missed runs: whoever may list the company's jobs (getScheduledJobs: the schedule is theirs to
# see); the run that cleared one is linked for those who may read its history too (getJobLogs).
def _sees(actor: str, operation: str) -> bool:
    if actor == SUPERUSER:
        return True
    if actor in (ANONYMOUS, NO_MEMBERSHIP, OTHER_COMPANY_ONLY):
        return False
    return actor in roles.AUTHORIZED["getScheduledJobs"] and actor in roles.AUTHORIZED[operation]


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_the_role_table_of_missed_runs(actor, client, login, history_of_misses):
    job, cleared, open_ = history_of_misses
    login(actor)
    listing = client.get(reverse("jobs:list")).content.decode()
    detail = client.get(reverse("jobs:job_detail", args=[job.pk])).content.decode()
    sees = _sees(actor, "getScheduledJobs")
    assert (f'id="missed-{job.pk}"' in listing) is sees
    assert (f'id="missed-count-{job.company_id}"' in listing) is sees
    assert (f'id="missed-run-{open_.pk}"' in detail) is sees
    run_link = reverse("jobs:run_detail", args=[cleared.cleared_by_execution_id])
    assert (run_link in detail) is _sees(actor, "getJobLogs")


# --- the grace, in the admin ---------------------------------------------------------------------


@pytest.mark.parametrize("perm, status", [("jobs.change_job", 302), ("jobs.view_job", 403)])
def test_a_staff_user_with_only_the_change_job_permission_sets_a_jobs_grace(perm, status, job, django_user_model):
    staff = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    app, codename = perm.split(".")
    staff.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    browser = Client()
    browser.force_login(staff)
    url = reverse("admin:jobs_job_change", args=[job.pk])
    page = browser.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "grace before a run counts as missed" in html.lower()
    data = form_data(html, "job_form")
    if status == 403:
        assert "missed_grace" not in data  # shown, not editable
        data["missed_grace"] = "00:30:00"
    else:
        assert data["missed_grace"] == ["00:15:00"]
        data["missed_grace"] = "00:30:00"
    answer = browser.post(url, data)
    assert answer.status_code == status, answer.content.decode()[:2000]
    job.refresh_from_db()
    assert job.missed_grace == (dt.timedelta(minutes=30) if status == 302 else GRACE)


def test_the_admin_refuses_a_negative_grace(admin_client, job):
    url = reverse("admin:jobs_job_change", args=[job.pk])
    data = form_data(admin_client.get(url).content.decode(), "job_form")
    data["missed_grace"] = "-00:05:00"
    answer = admin_client.post(url, data)
    assert answer.status_code == 200 and "errornote" in answer.content.decode()
    job.refresh_from_db()
    assert job.missed_grace == GRACE


@pytest.mark.postgres
def test_two_watcher_processes_record_a_miss_once(company, other_company, ips_emulator, procs):
    """Two ``manage.py watch_ips`` processes (two app servers) on one PostgreSQL, looking at the companies
    in turn: the held-back job's miss is recorded once (and announced once: the one log line of it)."""
    emu = ips_emulator
    emu.state.advance(0)  # IPS's clock stands still until moved
    control(emu, "config", {"scheduler": True, "job_duration": 60})
    job = synced_job(company)
    assert not sync.sync_company(other_company).error
    hold(emu, job)
    watchers = Watchers(procs)
    pair = [watchers.start("watcher-a"), watchers.start("watcher-b")]
    advance_to(emu, job.next_fire_time, GRACE + dt.timedelta(seconds=1))
    wait_for(lambda: [p.check_alive() for p in pair] and MissedRun.objects.filter(job=job).exists(),
             "a watcher to record the miss", timeout=30)
    # Both go on looking (each at least twice more) and record nothing more.
    seen = {p.name: len(looks_of(p)) for p in pair}
    wait_for(lambda: all(len(looks_of(p)) >= seen[p.name] + 2 for p in pair), "both watchers to look again",
             timeout=30)
    for p in pair:
        p.stop()
    [missed] = missed_of(job)
    assert missed.fire_time == job.next_fire_time
    said = [line for p in pair for line in p.log().splitlines() if f"(missed run {missed.pk})" in line]
    assert len(said) == 1, said


# --- Changed in IPS itself since the last sync: read again before a miss is recorded -------------


def test_a_job_rescheduled_in_ips_since_the_last_sync_misses_nothing(
    company, scheduling, announced, django_capture_on_commit_callbacks
):
    """Its old fire time passes with no run because IPS no longer has it: the look reads the
    catalogue before recording a miss, finds the new schedule, and expects its fire time instead."""
    emu = scheduling
    job = synced_job(company)
    look_now(company, django_capture_on_commit_callbacks)  # the watcher's first look syncs: not due again soon
    old_fire = job.expected_fire_at
    scheduled = emu.state.jobs[job.handle]
    scheduled.exec_schedule = "00 30 * * * "  # IPS's own UI: every hour at :30 now
    scheduled.next_fire_time = None  # the emulator works the next one out from the new schedule
    advance_to(emu, old_fire, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert missed_of(job) == [] and announced == []
    assert job.exec_schedule == "00 30 * * * " and job.expected_fire_at == job.next_fire_time != old_fire


def test_a_job_paused_in_ips_itself_before_its_fire_time_misses_nothing(
    company, scheduling, announced, django_capture_on_commit_callbacks
):
    emu = scheduling
    job = synced_job(company)
    look_now(company, django_capture_on_commit_callbacks)
    fire = job.expected_fire_at
    emu.state.jobs[job.handle].trigger_state = "Paused"  # in IPS's own UI, not through the dashboard
    advance_to(emu, fire, GRACE + dt.timedelta(seconds=1))
    look_now(company, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert missed_of(job) == [] and announced == []
    assert job.trigger_state == "Paused" and job.expected_fire_at is None
