"""Watcher processes under faults: every IPS run ends with exactly one row and its own result.

Real ``manage.py watch_ips`` processes (or a small driver that runs the same
command: see ``WATCHER``) on this pass's database (an SQLite file or
PostgreSQL), over real HTTP to the in-process emulator, whose clock stands
still until a test moves it (runs start, progress and end only then). A
watcher is SIGKILLed while IPS holds its call (``hold_calls``), or kills
itself right after a step of its look returns (its database writes
committed, its next IPS call not made): each step boundary. The task queue
is emptied, Redis goes down and comes back empty, a press's process dies on
either side of executeJob, executeJob is answered after the timeout, IPS's
clock is an hour off. Nobody runs a command by hand: the watchers (a lease
per company, ``services.watch``) bring every run to its row.

``Wire`` records each SOAP call the emulator serves with the real time it
began and ended (the emulator's own record is in its clock's time, which
these tests hold still): a company is looked at by one watcher at a time
when no two watcher calls for it are ever in progress together.

Timeouts are short (``WATCH_ENV``) so that a dead watcher's lease ends in
about a second; the tests wait for other processes with ``wait_for`` on
database predicates, never for time to pass.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass

import pytest
import redis
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from jobs.models import Company, CompanyWatch, Execution, Job
from jobs.services import chores, sync, watch

from .conftest import executes, press_run, wait_for
from .test_workers import BASE_DIR, PYTHON, Proc, Processes, RedisServer, subprocess_env, use_rq
from .test_workers import procs  # noqa: F401  (the fixture: processes stopped before the tables are emptied)

pytestmark = pytest.mark.django_db(transaction=True)

R = Execution.IpsResult

#: How long a run lasts on the emulator's clock.
RUN_SECONDS = 60.0
#: A look every 0.1 s, busy or idle; a lease of one IPS call's deadline plus the margin,
#: 0.2 + 1 + 0.2 = 1.4 s, so that a dead watcher's ends soon; a 'sending' row whose process
#: died is stale after 2 calls x 1.2 s + 0.2 s.
WATCH_ENV = {
    "IPS_WATCH_INTERVAL": "0.1",
    "IPS_WATCH_IDLE_INTERVAL": "0.1",
    "IPS_CONNECT_TIMEOUT": "0.2",
    "IPS_READ_TIMEOUT": "1",
    "IPS_WATCH_LEASE_MARGIN": "0.2",
    "IPS_STALE_MARGIN": "0.2",
}
#: Failures wait this long at most for the watchers (a passing run takes a fraction of it).
PATIENCE = 20.0

#: A watcher process that waits for a line on its stdin before it starts (Django set up, its
#: IPS client built: it asks IPS as soon as it may), and, with WATCH_DIE_AFTER, SIGKILLs
#: itself right after that step of services.watch returns: its writes committed, its next
#: IPS call not made. Then it is ``manage.py watch_ips`` itself (its arguments are ours).
WATCHER = r"""
import os, signal, sys

import django

django.setup()
from django.core.management import call_command
from django.db import close_old_connections

from jobs import ips
from jobs.models import Connection
from jobs.services import watch

point = os.environ.get("WATCH_DIE_AFTER", "")
if point:
    step = getattr(watch, point)

    def dying(*args, **kwargs):
        result = step(*args, **kwargs)
        if point != "claim" or result is not None:
            print(f"dying after {point}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(watch, point, dying)
for connection in Connection.objects.all():
    ips.client_for(connection)
close_old_connections()
print("ready", flush=True)
sys.stdin.readline()
call_command("watch_ips", *sys.argv[1:])
"""


# --- the wire: every SOAP call with its real times ------------------------------------------


@dataclass(frozen=True)
class Call:
    operation: str
    company: str | None
    params: dict
    began: dt.datetime
    ended: dt.datetime

    @property
    def by_watcher(self) -> bool:
        """A watcher's call: a press asks getActiveJobs of its job by name, and never reads logs (the
        tests sync jobs, getScheduledJobs, before they start watchers, never while they run)."""
        if self.operation == "getActiveJobs":
            return not self.params.get("originalName")
        return self.operation in ("getJobLogs", "getJobLogDetails", "getScheduledJobs")


class Wire:
    """Records every call the emulator serves (not one it holds, until it goes on), real times."""

    def __init__(self, state):
        self._state = state
        self._through = state.dispatch
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        state.dispatch = self._dispatch

    def _dispatch(self, operation, params, credentials, generation=None):
        began = timezone.now()
        try:
            return self._through(operation, params, credentials, generation=generation)
        finally:
            call = Call(operation, params.get("companyHandle"), dict(params), began, timezone.now())
            with self._lock:
                self._calls.append(call)

    def calls(self, since: dt.datetime | None = None, company: str | None = None) -> list[Call]:
        """The watchers' calls (for ``company``) that began at or after ``since``, by start."""
        with self._lock:
            calls = list(self._calls)
        return sorted(
            (c for c in calls if c.by_watcher and (since is None or c.began >= since)
             and (company is None or c.company == company)),
            key=lambda c: c.began,
        )

    def close(self):
        if self._state.__dict__.get("dispatch") == self._dispatch:
            del self._state.__dict__["dispatch"]


@pytest.fixture
def wire(ips_emulator):
    recorder = Wire(ips_emulator.state)
    yield recorder
    recorder.close()


@pytest.fixture
def hold_calls(wire, hold_calls):
    """The root conftest's, set up after ``wire`` (a hold wraps the recorder) and torn down before it."""
    return hold_calls


def at_once(calls: list[Call]) -> list[tuple[Call, Call]]:
    """Pairs of watcher calls for one company in progress together (none when one watcher at a
    time looks at each company: one watcher's calls follow one another)."""
    by_company = collections.defaultdict(list)
    for c in calls:
        if c.by_watcher:
            by_company[c.company].append(c)
    overlapping = []
    for calls_of_one in by_company.values():
        calls_of_one.sort(key=lambda c: c.began)
        latest = None
        for c in calls_of_one:
            if latest is not None and c.began < latest.ended:
                overlapping.append((latest, c))
            if latest is None or c.ended > latest.ended:
                latest = c
    return overlapping


def test_the_overlap_check_finds_two_watchers_asking_at_once():
    """The check of one watcher at a time can fail: two calls for one company that overlap."""
    t = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)

    def call(op, company, began, ended, **params):
        return Call(op, company, params, t + dt.timedelta(seconds=began), t + dt.timedelta(seconds=ended))

    first, second = call("getActiveJobs", "47", 0, 2), call("getJobLogs", "47", 1, 3)
    assert at_once([second, first]) == [(first, second)]
    # Back to back, another company's, or a press's look (by the job's name) is not at once.
    assert at_once([first, call("getJobLogs", "47", 2, 3)]) == []
    assert at_once([first, call("getJobLogs", "48", 1, 3)]) == []
    assert at_once([first, call("getActiveJobs", "47", 1, 3, originalName="My Test Job")]) == []


# --- watcher processes --------------------------------------------------------------------


class Watchers:
    """Watcher processes on the test database: ``manage.py watch_ips -v 2`` (a line per look)."""

    def __init__(self, procs: Processes):
        self.procs = procs

    def start(self, name: str, **env) -> Proc:
        argv = [PYTHON, "manage.py", "watch_ips", "-v", "2", "--owner", name]
        return self.procs.start(name, argv, watcher_env(**env))

    def gated(self, name: str, die_after: str = "", verbosity: str = "2", **env) -> Proc:
        """A watcher that starts on ``go()``; with ``die_after``, SIGKILLs itself after that step."""
        argv = [PYTHON, "-c", WATCHER, "-v", verbosity, "--owner", name]
        return self.procs.start(name, argv, watcher_env(WATCH_DIE_AFTER=die_after, **env), gated=True)


def watcher_env(**extra) -> dict:
    return subprocess_env(**{**WATCH_ENV, **extra})


@pytest.fixture
def watchers(procs):
    return Watchers(procs)


def ready(*gated: Proc) -> None:
    def all_ready():
        for p in gated:
            p.check_alive()
        return all("ready" in p.log() for p in gated)

    wait_for(all_ready, "the watchers to be ready", timeout=60)


def looks_of(proc: Proc) -> list[str]:
    """The look lines a watcher wrote (-v 2): "company 47: 3 IPS calls, …"."""
    return [line for line in proc.log().splitlines() if re.match(r"company \S+: \d+ IPS calls", line)]


# --- IPS's runs and the rows they end on -------------------------------------------------------


@pytest.fixture
def clock(ips_emulator):
    """The emulator's clock stands still (runs stay where they are) until the test moves it."""
    ips_emulator.state.advance(0)  # a ManualClock from now on
    ips_emulator.state.job_duration = RUN_SECONDS
    return ips_emulator.state


def runs_since(state, since: int) -> list:
    """IPS's runs started after ``since`` runs were there, in the companies the dashboard has
    (IPS's scheduler fires jobs of others too)."""
    ours = set(Company.objects.values_list("handle", flat=True))
    return [r for r in state.runs[since:] if r.job.company in ours]


def runs_of(state, since: int, job_handle: str) -> list[str]:
    """The handles of the job's runs since, oldest first."""
    return [r.handle for r in runs_since(state, since) if r.job.handle == job_handle]


def result_of(log) -> str:
    if log.fatal:
        return R.FATAL
    if log.counts["error"]:
        return R.ERRORS
    if log.counts["warning"]:
        return R.WARNINGS
    return R.OK


def run_rows():
    return Execution.objects.filter(operation="executeJob").exclude(ips_run_handle="")


def recorded(state, since: int, *procs: Proc, ended: bool = True) -> bool:
    """Every run IPS started since has its row (and, with ``ended``, its result)."""
    for p in procs:
        p.check_alive()
    rows = dict(run_rows().values_list("ips_run_handle", "ips_result"))
    return all(r.handle in rows and (rows[r.handle] or not ended) for r in runs_since(state, since))


def wait_recorded(state, since, *procs, ended=True, what="every run's row and result"):
    try:
        wait_for(lambda: recorded(state, since, *procs, ended=ended), what, timeout=PATIENCE)
    except AssertionError:
        rows = list(run_rows().values_list("ips_run_handle", "ips_result"))
        runs = [r.handle for r in runs_since(state, since)]
        logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in procs)
        raise AssertionError(f"runs {runs}\nrows {rows}\n{logs}") from None


def ms(when: dt.datetime) -> dt.datetime:
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def assert_each_run_once_with_its_result(state, since: int) -> None:
    """Every IPS run since has exactly one row, with its own result, times and counts; no row
    names a run IPS never made; no run is left open."""
    runs = runs_since(state, since)
    logs = {log.handle: log for log in state.job_logs()}
    rows = list(run_rows())
    per_run = collections.Counter((row.company_handle, row.ips_run_handle) for row in rows)
    assert [k for k, n in per_run.items() if n > 1] == []
    assert {handle for _, handle in per_run} == {r.handle for r in runs}
    for row in rows:
        log = logs[row.ips_run_handle]
        assert log.final, row.ips_run_handle
        assert (row.company_handle, row.ips_result, row.ips_state) == (log.company, result_of(log), "Done")
        assert (row.ips_started_at, row.ips_ended_at) == (ms(log.start), ms(log.end))  # IPS sends milliseconds
        assert (row.ips_success_count, row.ips_warning_count, row.ips_error_count, row.ips_total_count) == (
            log.counts["success"], log.counts["warning"], log.counts["error"], log.counts["total"]
        )
        assert row.ips_log_type == log.log_type
    assert not Execution.objects.open_runs().exists(), list(Execution.objects.open_runs().values())


def assert_on_the_press_row(press: Execution, handle: str) -> Execution:
    """The run a press started ended on the press's own row."""
    press.refresh_from_db()
    assert press.ips_run_handle == handle and press.started_by == Execution.StartedBy.HERE
    assert press.user is not None and press.ips_result
    return press


def named(presses: list[Execution], *procs: Proc) -> bool:
    """Every one of these presses has its run (a watcher found it in IPS)."""
    for p in procs:
        p.check_alive()
    handles = dict(Execution.objects.filter(pk__in=[p.pk for p in presses]).values_list("pk", "ips_run_handle"))
    return all(handles.values())


def scheduled_row(handle: str) -> Execution:
    row = run_rows().get(ips_run_handle=handle)
    assert row.started_by == Execution.StartedBy.SCHEDULE and row.user is None and row.outcome == "accepted"
    return row


def park(*handles: str) -> None:
    """Nobody looks at these companies during the test (their next look is a day away)."""
    watch.ensure_watches()
    CompanyWatch.objects.filter(company__handle__in=handles).update(
        next_look_at=timezone.now() + dt.timedelta(days=1)
    )


def job_named(handle: str) -> Job:
    return Job.objects.select_related("company__connection").get(handle=handle)


MY_TEST_JOB = "47|My Test Job|"
NIGHTLY = "47|Nightly | Publish|"
ZURICH = "48|Menü Bilder Upload|"


# --- 1. two watchers, two companies, many runs (PostgreSQL) ----------------------------------------

PER_COMPANY = 5
ROUNDS = 3


@pytest.mark.postgres
def test_two_watchers_record_every_run_once_and_look_at_a_company_one_at_a_time(
    synced, users, clock, ips_emulator, wire, watchers
):
    """Two watcher processes (two app servers) on one PostgreSQL, two companies: runs pressed here
    and runs IPS's own scheduler fires, round after round. Each IPS run ends on exactly one row
    with its own result; no two watcher calls for one company are ever in progress together."""
    state = ips_emulator.state
    state.scheduler = True  # IPS fires its jobs at their fire times, on its (standing) clock
    for company in ("47", "48"):
        for n in range(PER_COMPANY):
            # Pressed here: a schedule that does not fire during the test (1 January).
            state.add_job(company, f"Pressed {n}", exec_schedule="00 00 00 1 1 ",
                          submit_user_email="service@example.com",
                          outcome=("success", "warnings", "errors", "fatal")[n % 4], time_zone="PST")
            state.add_job(company, f"Scheduled {n}", exec_schedule="00 */10 * * * ",
                          submit_user_email="ipsadmin@example.com", outcome=("warnings", "success")[n % 2],
                          time_zone="PST")
    for company in Company.objects.filter(handle__in=("47", "48")):
        assert not sync.sync_company(company).error
    pressed = list(Job.objects.filter(name__startswith="Pressed "))
    assert len(pressed) == 2 * PER_COMPANY
    admin = users["admin"]
    since = len(state.runs)
    began = timezone.now()
    pair = [watchers.start("watcher-a", IPS_READ_TIMEOUT="2"), watchers.start("watcher-b", IPS_READ_TIMEOUT="2")]

    presses = []
    for round_ in range(ROUNDS):
        made = [press_run(job, admin, f"press-{round_}-{job.pk}") for job in pressed]
        assert {p.outcome for p in made} == {"accepted"}, [p.message for p in made if p.outcome != "accepted"]
        presses += made
        wait_for(lambda: named(made, *pair), "the watchers to find every pressed run", timeout=PATIENCE)
        # To the next fire time of the schedule, and half a run on: IPS fires its jobs; the pressed runs end.
        fire_at = min(j.next_fire_time for j in state.jobs.values() if j.name.startswith("Scheduled "))
        state.advance((fire_at - state.now()).total_seconds() + RUN_SECONDS / 2)
        state.fire_due()  # (or a watcher's next call does)
        fired = [r for r in runs_since(state, since) if r.job.name.startswith("Scheduled ") and r.start == fire_at]
        assert len(fired) == 2 * PER_COMPANY, [r.handle for r in runs_since(state, since)]
        wait_recorded(state, since, *pair, ended=False, what="a row for every run, the fired ones running")
        state.advance(RUN_SECONDS)
        wait_recorded(state, since, *pair)

    assert_each_run_once_with_its_result(state, since)
    for press in presses:
        press.refresh_from_db()
        [run] = [r for r in runs_since(state, since) if r.handle == press.ips_run_handle]
        assert run.job.handle == press.job_handle and run.submit_user_email == "service@example.com"
        assert_on_the_press_row(press, run.handle)
    by = collections.Counter(run_rows().values_list("started_by", flat=True))
    assert by["here"] == len(presses) == ROUNDS * 2 * PER_COMPANY
    assert by["schedule"] >= ROUNDS * 2 * PER_COMPANY
    assert len(executes(ips_emulator)) == len(presses)

    for w in pair:
        w.stop()
    calls = wire.calls(since=began)
    assert {c.company for c in calls} == {"47", "48"}
    assert at_once(calls) == []
    looks = {w.name: len(looks_of(w)) for w in pair}
    assert all(looks.values()), looks  # both took part
    print(f"\n{len(runs_since(state, since))} runs, {len(calls)} watcher calls, looks {looks}")


# --- 2. a watcher killed at each step of its look, replaced once its lease ends -----------------


def dead_lease(name: str, company: str = "47") -> dt.datetime:
    """The lease a dead watcher left on the company: its own, until when."""
    row = CompanyWatch.objects.get(company__handle=company)
    assert row.lease_owner == name and row.lease_until is not None, (row.lease_owner, row.lease_until)
    return row.lease_until


def took_over(proc: Proc, wire: Wire, since: dt.datetime, until: dt.datetime, company: str = "47") -> Call:
    """The next watcher's first IPS call for the company after ``since``: not before the dead
    watcher's lease ended, and soon after it (a watcher tries at least every second)."""
    first = wait_for(lambda: proc.check_alive() or wire.calls(since=since, company=company),
                     f"{proc.name} to take the company over", timeout=PATIENCE)[0]
    assert first.began >= until, f"{proc.name} asked IPS at {first.began}, inside the dead lease (to {until})"
    assert first.began - until < dt.timedelta(seconds=5), (first.began, until)
    return first


def test_watchers_killed_at_each_step_of_a_look_are_replaced_and_no_run_is_lost_or_doubled(
    synced, users, clock, ips_emulator, wire, hold_calls, watchers
):
    """A chain of watcher processes on company 47, each killed at the next step of one look: having
    claimed it; while IPS holds its getJobLogs; after it inserted a scheduled run's row; after it
    wrote that run's result; after it named a press's row with its run; after the look's last
    write (its place in the logs), its lease still held. Each next watcher, started and waiting,
    takes the company only once the dead one's lease has ended, and carries on from the rows."""
    state = ips_emulator.state
    since = len(state.runs)
    scheduled = state.fire_schedule(NIGHTLY)
    state.advance(5)
    press = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-chain")
    assert press.outcome == "accepted"
    state.advance(RUN_SECONDS + 1)  # both over before any watcher looks
    park("48")  # the chain is about company 47 alone

    chain = [
        ("after claim", "claim", None),
        ("mid getJobLogs", "", "getJobLogs"),
        ("after _new_row", "_new_row", None),
        ("after _write", "_write", None),
        ("after _name", "_name", None),
        ("after _look", "_look", None),
    ]
    links = [watchers.gated(f"w{i}-{label.replace(' ', '-')}", die_after=point)
             for i, (label, point, _) in enumerate(chain)]
    survivor = watchers.gated("w-survivor")
    ready(*links, survivor)

    def states():
        press.refresh_from_db()
        rows = {r.ips_run_handle: r for r in run_rows()}
        return rows.get(scheduled), press

    def holding(step: int):
        """The hold a link needs, made before it goes: once gone, it may pass the call unheld."""
        held = chain[step][2] if step < len(chain) else None
        return hold_calls(ips_emulator, held) if held else None

    hold = holding(0)
    gone = timezone.now()
    links[0].go()
    for i, (label, point, held) in enumerate(chain):
        link = links[i]  # gone already: the first above, each next one as the one before's follower
        if hold is not None:
            wait_for(lambda: link.check_alive() or hold.held, f"{link.name}'s {held} to wait at the emulator")
            link.kill()
        else:
            assert link.proc.wait(timeout=PATIENCE) == -signal.SIGKILL, link.log()
            assert f"dying after {point}" in link.log()
        until = dead_lease(link.name)
        if hold is not None:
            hold.drop()  # its caller is dead: no reply
        row, p = states()
        if label == "after claim":
            assert row is None and not wire.calls(since=gone)
        elif label == "mid getJobLogs":
            assert row is None and not p.ips_run_handle
        elif label == "after _new_row":
            assert row is not None and not row.ips_result and not p.ips_run_handle
        elif label == "after _write":
            assert row.ips_result and not p.ips_run_handle
            written = (row.ips_result, row.ips_result_at)
        elif label == "after _name":
            assert p.ips_run_handle and not p.ips_result
        elif label == "after _look":
            assert p.ips_result
            assert CompanyWatch.objects.get(company__handle="47").log_cursor is not None
        following = links[i + 1] if i + 1 < len(chain) else survivor
        hold = holding(i + 1)
        went = timezone.now()
        following.go()
        took_over(following, wire, went, until)

    # The survivor looks on as any watcher does: a new run of each kind, found and ended.
    more = state.fire_schedule(NIGHTLY)
    again = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-after")
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, survivor)
    survivor.stop()

    assert_each_run_once_with_its_result(state, since)
    row = scheduled_row(scheduled)
    assert (row.ips_result, row.ips_result_at) == written, "the result was written again"
    scheduled_row(more)
    first, second = runs_of(state, since, MY_TEST_JOB)
    assert_on_the_press_row(press, first)
    assert_on_the_press_row(again, second)
    assert at_once(wire.calls()) == []
    assert len(executes(ips_emulator)) == 2


def test_a_watcher_killed_while_it_reads_a_runs_final_log_is_replaced(
    synced, users, clock, ips_emulator, wire, hold_calls, watchers, connection
):
    """Before IPS 4.0 (the unversioned API) getJobLogs has no end date: a run's result is read by its
    handle (getJobLogDetails). The watcher is SIGKILLed while IPS holds that call, the run's row
    written and its result not: the next watcher writes it, on the same row."""
    connection.api_version = ""
    connection.save()
    state = ips_emulator.state
    since = len(state.runs)
    scheduled = state.fire_schedule(NIGHTLY)
    state.advance(5)
    press = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-details")
    assert press.outcome == "accepted"
    state.advance(RUN_SECONDS + 1)
    park("48")
    doomed, survivor = watchers.gated("w-doomed"), watchers.gated("w-survivor")
    ready(doomed, survivor)
    hold = hold_calls(ips_emulator, "getJobLogDetails")
    doomed.go()
    wait_for(lambda: doomed.check_alive() or hold.held, "the final log's call to wait at the emulator")
    doomed.kill()
    until = dead_lease(doomed.name)
    hold.drop()
    row = run_rows().get(ips_run_handle=scheduled)
    assert not row.ips_result  # its row is there, its result not yet
    went = timezone.now()
    survivor.go()
    took_over(survivor, wire, went, until)
    wait_recorded(state, since, survivor)
    assert_each_run_once_with_its_result(state, since)
    assert run_rows().get(ips_run_handle=scheduled).pk == row.pk
    assert_on_the_press_row(press, runs_of(state, since, MY_TEST_JOB)[0])


def test_a_watcher_waiting_out_a_dead_watchers_lease_does_not_spin(
    synced, clock, ips_emulator, wire, hold_calls, watchers
):
    """While another watcher's lease keeps it off the only company that is due, a watcher waits for
    the lease to end (a round at most every second), not round after round on the database."""
    park("48")
    doomed, waiting = watchers.gated("w-doomed"), watchers.gated("w-waiting", verbosity="3")
    ready(doomed, waiting)
    hold = hold_calls(ips_emulator, "getJobLogs")
    doomed.go()
    wait_for(lambda: doomed.check_alive() or hold.held, "the doomed watcher's getJobLogs to wait at the emulator")
    doomed.kill()
    until = dead_lease(doomed.name)
    hold.drop()
    went = timezone.now()
    waiting.go()
    took_over(waiting, wire, went, until)
    wait_for(lambda: waiting.check_alive() or "round: 1 looks" in waiting.log(), "the look's round to end")
    rounds = re.findall(r"round: (\d+) looks", waiting.log())
    idle = rounds[: rounds.index("1")]
    lease = (until - went).total_seconds()
    assert len(idle) <= lease + 3, f"{len(idle)} rounds in {lease:.1f} s waiting for the lease"


# --- 3. a watcher stopped for a while catches up from its place in the logs ------------------------


def test_a_watcher_stopped_for_a_while_catches_up_from_where_it_was(synced, users, clock, ips_emulator, wire, watchers):
    """Stopped (SIGTERM) while IPS goes on for four hours of its clock: runs fired every half hour in
    both companies, and a press made meanwhile. Started again, the watcher reads the logs from its
    cursor (less the overlap), not from its back-fill (an hour here, which would miss most): every
    run is recorded once, with its result."""
    state = ips_emulator.state
    backfill = {"IPS_WATCH_BACKFILL_HOURS": "1"}
    since = len(state.runs)
    first = watchers.start("watcher-before", **backfill)
    state.fire_schedule(NIGHTLY)
    state.fire_schedule(ZURICH)
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, first)
    wait_for(lambda: CompanyWatch.objects.filter(log_cursor__isnull=False).count() == 2, "both cursors set")
    first.stop()
    assert first.proc.returncode == 0, first.log()  # a graceful stop: the look in hand finished
    cursors = dict(CompanyWatch.objects.values_list("company__handle", "log_cursor"))
    assert all(w.lease_owner == "" for w in CompanyWatch.objects.all())

    stopped = timezone.now()
    for half_hour in range(8):
        state.fire_schedule(NIGHTLY)
        state.fire_schedule(ZURICH)
        if half_hour == 2:
            pressed = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-while-stopped")
            assert pressed.outcome == "accepted"
        state.advance(30 * 60)
    assert not recorded(state, since)  # nobody watched

    restarted = watchers.start("watcher-after", **backfill)
    wait_recorded(state, since, restarted)
    assert_each_run_once_with_its_result(state, since)
    assert len(runs_since(state, since)) == 2 + 16 + 1
    assert_on_the_press_row(pressed, runs_of(state, since, MY_TEST_JOB)[0])
    overlap = dt.timedelta(minutes=5)  # IPS_WATCH_LOG_OVERLAP
    for company, cursor in cursors.items():
        first_read = next(c for c in wire.calls(since=stopped, company=company) if c.operation == "getJobLogs")
        assert dt.datetime.fromisoformat(first_read.params["startDate"]) == cursor - overlap, company


# --- 4. the task queue lost, Redis down and back empty: the watcher needs no queue -----------------


def test_runs_are_watched_to_their_results_with_the_task_queue_lost(
    synced, users, clock, ips_emulator, watchers, procs
):
    """The db backend's queue emptied (every DBTaskResult gone) and its worker SIGKILLed: runs
    pressed and fired before and after still end on their rows, nobody running a command."""
    state = ips_emulator.state
    since = len(state.runs)
    worker = procs.db_worker("db-worker")
    chores.start_chore(chores.REFRESH_MEMBERSHIPS)
    watcher = watchers.start("watcher")
    first = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-before")
    state.fire_schedule(NIGHTLY)
    wait_recorded(state, since, watcher, worker, ended=False)

    DBTaskResult.objects.all().delete()
    worker.kill()
    state.advance(RUN_SECONDS + 1)
    second = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-after")
    state.fire_schedule(ZURICH)
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, watcher)

    assert_each_run_once_with_its_result(state, since)
    for press in (first, second):
        press.refresh_from_db()
        assert press.ips_result and press.started_by == Execution.StartedBy.HERE
    assert not DBTaskResult.objects.exists()  # nothing was queued for a run


@pytest.mark.redis
def test_runs_are_watched_to_their_results_with_redis_down_and_back_empty(
    synced, users, clock, ips_emulator, wire, watchers, procs, tmp_path, settings
):
    """TASKS_BACKEND=rq (the app server and two watcher processes): Redis SIGKILLed, the RQ worker
    that runs the scheduler SIGKILLed, presses made and runs fired with Redis down, then Redis
    started again empty: every run ends on its row, nobody running a command, and each company
    is looked at by one watcher at a time as on the db backend."""
    state = ips_emulator.state
    server = RedisServer(tmp_path)
    server.start()
    try:
        use_rq(settings, server.url)
        rq = {"TASKS_BACKEND": "rq", "REDIS_URL": server.url}
        since = len(state.runs)
        worker = procs.rq_worker("rq-worker", server.url)
        chores.start_chore(chores.REFRESH_MEMBERSHIPS)
        began = timezone.now()
        pair = [watchers.start("watcher-a", **rq), watchers.start("watcher-b", **rq)]
        presses = [press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-redis-up")]
        state.fire_schedule(NIGHTLY)
        wait_recorded(state, since, *pair, ended=False)

        server.kill()
        worker.kill()
        state.advance(RUN_SECONDS + 1)
        presses.append(press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-redis-down"))
        state.fire_schedule(ZURICH)
        state.advance(RUN_SECONDS + 1)
        wait_recorded(state, since, *pair)

        server.start()  # the same address, nothing in it
        assert server.pings() and not redis.Redis.from_url(server.url).dbsize()
        presses.append(press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-redis-back"))
        state.advance(RUN_SECONDS + 1)
        wait_recorded(state, since, *pair)
    finally:
        server.stop()
    for w in pair:
        w.stop()
    assert at_once(wire.calls(since=began)) == []
    assert [p.outcome for p in presses] == ["accepted"] * 3
    assert_each_run_once_with_its_result(state, since)
    for press in presses:
        press.refresh_from_db()
        assert press.ips_result and press.ips_run_handle


# --- 5. a press whose process dies on either side of executeJob -------------------------------------

KILLED_PRESS = """
from django.contrib.auth import get_user_model
from jobs.services import actions, base
from jobs.models import Job

job = Job.objects.select_related("company__connection").get(pk={job_pk})
user = get_user_model().objects.get(pk={user_pk})
actions.run_job(job, job.company.access(user, "executeJob"), user, base.RequestInfo("{request_id}"))
print("the press finished: it should have been killed", flush=True)
"""


def kill_a_press(procs: Processes, emulator, hold_calls, job, user, request_id, held: str, fate: str) -> Execution:
    """A press of Run in a process of its own (an app server's), SIGKILLed while IPS holds its
    ``held`` call; then IPS lets that call go on (``release``: it acts on it) or not (``drop``)."""
    hold = hold_calls(emulator, held)
    code = KILLED_PRESS.format(job_pk=job.pk, user_pk=user.pk, request_id=request_id)
    # A read timeout longer than the test: only the kill ends this call.
    press = procs.start("press", [PYTHON, "manage.py", "shell", "-c", code], subprocess_env(IPS_READ_TIMEOUT=120))

    def sending():
        press.check_alive()
        row = Execution.objects.filter(request_id=request_id).first()
        return row if row is not None and row.outcome == "sending" and hold.held else None

    wait_for(sending, f"the press to be sending and its {held} held at the emulator")
    press.kill()
    getattr(hold, fate)()
    row = Execution.objects.get(request_id=request_id)
    assert row.outcome == "sending" and row.finished_at is None, "a killed process writes nothing more"
    assert (row.sent_at is not None) is (held == "executeJob")
    return row


def wait_for_row(row: Execution, done, what: str, watcher: Proc) -> None:
    """Wait until ``done(row)`` (refreshed), as the watcher writes it; on failure, say where it stands."""
    try:
        wait_for(lambda: watcher.check_alive() or (row.refresh_from_db() or done(row)), what, timeout=PATIENCE)
    except AssertionError:
        fields = ("outcome", "sent_at", "ips_clock_at", "finished_at", "ips_run_handle", "ips_result")
        raise AssertionError(
            f"timed out after {PATIENCE:g} s waiting for {what}: execution {row.pk} "
            + ", ".join(f"{f}={getattr(row, f)!r}" for f in fields)
            + f"\n--- {watcher.name}\n{watcher.log()[-1500:]}"
        ) from None


def test_a_press_killed_after_ips_started_its_run_gets_that_run_and_no_second_execute_job(
    synced, users, clock, ips_emulator, hold_calls, watchers, procs
):
    """The press's process dies while IPS holds its executeJob, which IPS then carries out: the run
    ends on the press's row (never a row of its own), found by the watcher alone; while the press's
    fate is unknown, another press of the job sends nothing."""
    state = ips_emulator.state
    job, user = job_named(MY_TEST_JOB), users["IpsUser"]
    since = len(state.runs)
    killed = kill_a_press(procs, ips_emulator, hold_calls, job, user, "press-killed-late", "executeJob", "release")
    wait_for(lambda: runs_since(state, since), "IPS to start the run of the dead press")
    [run] = runs_since(state, since)
    watcher = watchers.start("watcher")
    refused = press_run(job, user, "press-meanwhile")
    assert refused.outcome == "already_running"
    assert len(executes(ips_emulator)) == 1

    state.advance(RUN_SECONDS + 1)
    wait_for_row(killed, lambda r: r.ips_result, "the watcher to bring the dead press's run to its row", watcher)
    assert_on_the_press_row(killed, run.handle)
    assert killed.outcome == "interrupted"
    assert_each_run_once_with_its_result(state, since)
    assert len(executes(ips_emulator)) == 1
    assert press_run(job, user, "press-after").outcome == "accepted"
    assert len(executes(ips_emulator)) == 2


def test_a_press_killed_before_its_execute_job_reached_ips_settles_not_started(
    synced, users, clock, ips_emulator, hold_calls, watchers, procs, settings
):
    """The press's process dies while IPS holds its executeJob, which never reaches IPS (the
    connection dropped): no run; past the grace in IPS's clock the row says "not started by IPS",
    and Run is offered again. No second executeJob is sent while its fate is unknown."""
    state = ips_emulator.state
    job, user = job_named(MY_TEST_JOB), users["IpsUser"]
    since = len(state.runs)
    killed = kill_a_press(procs, ips_emulator, hold_calls, job, user, "press-killed-unsent", "executeJob", "drop")
    watcher = watchers.start("watcher")
    assert press_run(job, user, "press-meanwhile").outcome == "already_running"
    state.advance(settings.IPS_WATCH_GRACE.total_seconds() + 60)
    wait_for_row(killed, lambda r: r.ips_result, "the watcher to settle the dead press", watcher)
    assert killed.ips_result == R.NOT_STARTED and not killed.ips_run_handle
    assert killed.outcome == "interrupted"
    assert runs_since(state, since) == []
    assert len(executes(ips_emulator)) == 1
    assert press_run(job, user, "press-after").outcome == "accepted"


def test_a_press_killed_before_executing_blocks_no_run_of_its_job(
    synced, users, clock, ips_emulator, hold_calls, watchers, procs
):
    """The press's process dies while IPS holds its look at getActiveJobs, before executeJob: its
    row is left 'sending'. IPS's schedule fires the job meanwhile: that run gets its own row and
    its result (the dead press does not hold it back), the press ends interrupted with nothing
    sent (no run to wait for: not open), and Run goes out again."""
    state = ips_emulator.state
    job, user = job_named(MY_TEST_JOB), users["IpsUser"]
    since = len(state.runs)
    killed = kill_a_press(procs, ips_emulator, hold_calls, job, user, "press-killed-early", "getActiveJobs", "drop")
    fired = state.fire_schedule(job.handle)
    watcher = watchers.start("watcher")
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, watcher)
    scheduled_row(fired)
    wait_for_row(killed, lambda r: r.outcome != "sending", "the dead press's row to be finished", watcher)
    assert killed.outcome == "interrupted" and killed.sent_at is None
    assert not killed.is_open and not killed.ips_run_handle
    assert_each_run_once_with_its_result(state, since)
    assert executes(ips_emulator) == []
    assert press_run(job, user, "press-after").outcome == "accepted"


# --- 6. executeJob answered after the timeout, IPS's clock an hour off, a run not found at first -----


def test_a_late_execute_job_with_ips_an_hour_behind_ends_on_its_press(
    synced, users, clock, ips_emulator, hold_calls, watchers, settings
):
    """IPS's clock an hour behind the dashboard's; a scheduled run that ended just before the press;
    the press's executeJob answered only after the dashboard gave up (timed out). The watcher
    gives the late run to the timed-out press (not the scheduled one, not a row of its own);
    meanwhile another press sends nothing; once the run ended, Run goes out again."""
    state = ips_emulator.state
    state.shift(-3600)
    job, user = job_named(MY_TEST_JOB), users["IpsUser"]
    since = len(state.runs)
    earlier = state.fire_schedule(job.handle)
    state.advance(RUN_SECONDS + 1)
    settings.IPS_READ_TIMEOUT = 0.5
    hold = hold_calls(ips_emulator, "executeJob")
    late = press_run(job, user, "press-late")  # the dashboard waits its read timeout, then gives up
    assert late.outcome == "timed_out" and late.is_uncertain and hold.held == 1
    hold.release()  # IPS gets to it now
    wait_for(lambda: len(runs_since(state, since)) == 2, "IPS to start the late run")
    late_run = runs_since(state, since)[-1].handle
    assert late_run != earlier

    watcher = watchers.start("watcher")
    refused = press_run(job, user, "press-meanwhile")
    assert refused.outcome == "already_running" and "checking IPS" in refused.message
    assert len(executes(ips_emulator)) == 1
    wait_for_row(late, lambda r: r.ips_run_handle, "the watcher to find the late run", watcher)
    assert late.ips_run_handle == late_run and not late.ips_result
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, watcher)
    assert_on_the_press_row(late, late_run)
    assert late.outcome == "timed_out"
    scheduled_row(earlier)
    assert_each_run_once_with_its_result(state, since)

    settings.IPS_READ_TIMEOUT = 10
    again = press_run(job, user, "press-again")
    assert again.outcome == "accepted" and len(executes(ips_emulator)) == 2
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, watcher)
    assert_on_the_press_row(again, runs_since(state, since)[-1].handle)
    assert_each_run_once_with_its_result(state, since)


def test_a_press_whose_run_cannot_be_read_at_first_still_gets_it(synced, users, clock, ips_emulator, watchers):
    """The calls that find a press's run fail (the press no longer names its run after executeJob: the
    watcher does): IPS answers the watcher's getJobLogs with an error page, then drops its
    getActiveJobs. Those looks fail, say so, and are made again an interval later; the run ends on
    the press's row, once."""
    state = ips_emulator.state
    since = len(state.runs)
    press = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-unread")
    assert press.outcome == "accepted"
    state.inject("http_500_html", operation="getJobLogs", times=2)
    state.inject("drop_connection", operation="getActiveJobs", times=2)
    watcher = watchers.start("watcher")
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, watcher)
    assert_on_the_press_row(press, runs_of(state, since, MY_TEST_JOB)[0])
    assert_each_run_once_with_its_result(state, since)
    # Every injected failure was met, each failing a look (that said so in its line).
    assert not [i for i in state.injections if i["operation"] in ("getJobLogs", "getActiveJobs")]
    assert len([line for line in looks_of(watcher) if "; failed: " in line]) >= 4, watcher.log()
    assert len(executes(ips_emulator)) == 1


# --- 7. `make run` starts a watcher or worker again when it exits -----------------------------------

KEEP_RUNNING = BASE_DIR / "scripts" / "keep_running.sh"


def keep_running(procs: Processes, name: str, argv: list[str], env: dict) -> Proc:
    """``keep_running ARGV`` as scripts/run.sh runs it, in a process group of its own."""
    script = f'set -euo pipefail; source "{KEEP_RUNNING}"; keep_running "$@"'
    return procs.start(name, ["bash", "-c", script, "keep_running", *argv], {**env, "KEEP_RUNNING_DELAY": "0.05"})


def test_keep_running_starts_a_command_again_whenever_it_exits(procs, tmp_path):
    starts = tmp_path / "starts"
    loop = keep_running(procs, "loop", ["sh", "-c", 'echo $$ >> "$0"; exit 3', str(starts)], subprocess_env())
    wait_for(lambda: loop.check_alive() or (starts.exists() and len(starts.read_text().split()) >= 3),
             "three starts of a command that exits")
    loop.stop()
    assert len(set(starts.read_text().split())) >= 3  # a new process each time
    assert "keep_running: sh -c" in loop.log() and "exited with status 3; starting it again" in loop.log()


def test_make_run_starts_a_watcher_killed_mid_look_again(synced, users, clock, ips_emulator, hold_calls, procs):
    """The watcher under keep_running, SIGKILLed while IPS holds its look: started again, it
    takes the company over once the lease ends and brings the run to its row."""
    state = ips_emulator.state
    since = len(state.runs)
    started = re.compile(r"watching IPS as (\S+)")
    loop = keep_running(procs, "make-run-watcher", [PYTHON, "manage.py", "watch_ips", "-v", "2"], watcher_env())
    first = wait_for(lambda: loop.check_alive() or started.findall(loop.log()), "the watcher to start")[0]
    hold = hold_calls(ips_emulator, "getJobLogs")
    press = press_run(job_named(MY_TEST_JOB), users["IpsUser"], "press-make-run")
    wait_for(lambda: loop.check_alive() or hold.held, "the watcher's getJobLogs to wait at the emulator")
    pid = int(first.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the watcher, not its restart loop
    hold.drop()
    wait_for(lambda: loop.check_alive() or len(started.findall(loop.log())) >= 2, "the watcher to start again")
    second = started.findall(loop.log())[1]
    assert second != first
    state.advance(RUN_SECONDS + 1)
    wait_recorded(state, since, loop)
    assert_on_the_press_row(press, runs_since(state, since)[0].handle)
    assert "was killed by signal 9; starting it again" in loop.log()
    # The restarted watcher finishes its looks: the count of looks goes up, the lease is let go.
    wait_for(lambda: CompanyWatch.objects.filter(company__handle="47", looks__gte=1).exists(), "a whole look")


def test_make_run_keeps_the_watcher_and_the_task_worker_running():
    """scripts/run.sh runs both through keep_running (whose restarts the tests above prove)."""
    run_sh = (BASE_DIR / "scripts" / "run.sh").read_text()
    assert "source scripts/keep_running.sh" in run_sh
    assert re.search(r'^keep_running "\$PY" manage\.py watch_ips &$', run_sh, re.M)
    assert re.search(r'^keep_running "\$PY" manage\.py db_worker --no-reload &$', run_sh, re.M)
    result = subprocess.run(["bash", "-n", str(BASE_DIR / "scripts" / "run.sh")], capture_output=True)
    assert result.returncode == 0, result.stderr

