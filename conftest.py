"""Project-wide pytest fixtures.

``ips_emulator`` gives a test a running IPS emulator (ipsemulator/) with fresh
demo data: use ``ips_emulator.service_url``, ``ips_emulator.wsdl_url()`` and
``ips_emulator.state`` (inject faults, read calls, ...). See
ipsemulator/README.md.

No test sleeps for time to pass: ``ips_clock`` moves the emulator's runs,
``hold_calls`` keeps a call waiting at the emulator for as long as a test
needs (instead of a latency of guessed seconds). ``wait_for`` is only for
other processes and threads; ``free_port`` gives a port nothing listens on.
"""

import os
import socket
import threading
import time

import pytest

from ipsemulator import server as ips_emulator_server_module
from ipsemulator.app import DropConnection
from ipsemulator.clock import ManualClock

TEST_JOB_DURATION = 1.0


@pytest.fixture(scope="session")
def ips_emulator_server():
    """One emulator for the whole session, on a free port; job_duration=1.0."""
    emulator = ips_emulator_server_module.start(port=0, job_duration=TEST_JOB_DURATION)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def ips_emulator(ips_emulator_server):
    """The session's emulator, reset (demo data reloaded, injections and calls
    cleared) and with job_duration back to 1.0."""
    ips_emulator_server.state.reset()
    ips_emulator_server.state.job_duration = TEST_JOB_DURATION
    yield ips_emulator_server


@pytest.fixture
def ips_clock(ips_emulator):
    """A ManualClock driving ``ips_emulator``'s runs: time stands still in the
    emulator (a run stays New, its log unfinished) until ``ips_clock.advance(s)``.
    The next test's reset() puts the real clock back."""
    clock = ManualClock(1000.0)
    ips_emulator.state.clock = clock
    return clock


@pytest.fixture
def start_emulator():
    """start_emulator(**kwargs) -> a private emulator (``ipsemulator.server.start``
    on a free port), stopped after the test: for another data file."""
    started = []

    def start(**kwargs):
        emulator = ips_emulator_server_module.start(port=0, **kwargs)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


class Hold:
    """SOAP calls an emulator holds: received and recorded (``state.calls``),
    not executed, as during an injected latency, but for as long as the test
    says instead of a guessed number of seconds.

    ``release()`` lets the held calls go on (and stops holding); ``drop()``
    closes their connections without a reply, as ``drop_connection`` does (for
    a caller that is gone). Calls still held when the test ends are dropped,
    so a held call never acts on a later test."""

    def __init__(self, state, operation=None, job_handle=None):
        self._state = state
        self._operation = operation
        self._job_handle = job_handle
        self._fate = None  # None while holding, then "release" or "drop"
        self._cond = threading.Condition()
        #: Calls waiting now, and every call held so far.
        self.held = 0
        self.received = 0
        self._previous = state.__dict__.get("dispatch")
        self._dispatch_through = state.dispatch
        state.dispatch = self._dispatch

    def _dispatch(self, operation, params, credentials, generation=None):
        matches = (self._operation in (None, operation)) and (
            self._job_handle is None or params.get("jobHandle") == self._job_handle
        )
        if matches:
            with self._cond:
                if self._fate is None:
                    self.held += 1
                    self.received += 1
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._fate is not None)
                    self.held -= 1
                    if self._fate == "drop":
                        raise DropConnection()
        return self._dispatch_through(operation, params, credentials, generation=generation)

    def wait(self, calls=1, timeout=30.0):
        """Wait until ``calls`` calls are held (sent by other threads or processes)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.held >= calls, timeout):
                raise AssertionError(f"timed out after {timeout:g} s: {self.held} of {calls} calls held")

    def release(self):
        self._end("release")

    def drop(self):
        self._end("drop")

    def _end(self, fate):
        with self._cond:
            if self._fate is None:
                self._fate = fate
                self._cond.notify_all()

    def close(self):
        self.drop()
        if self._previous is None:
            self._state.__dict__.pop("dispatch", None)
        else:
            self._state.dispatch = self._previous


@pytest.fixture
def hold_calls():
    """hold_calls(emulator, operation=None, job_handle=None) -> :class:`Hold`:
    the emulator holds matching calls until the test releases them."""
    holds = []

    def hold(emulator, operation=None, job_handle=None):
        made = Hold(emulator.state, operation, job_handle)
        holds.append(made)
        return made

    yield hold
    for made in reversed(holds):
        made.close()


# --- Helpers for tests and bench/ --------------------------------------------


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what="the condition", timeout=30.0, poll=0.02):
    """Poll ``predicate`` until it returns something truthy, and return that.

    Only for waiting on ANOTHER process or thread (a gunicorn starting, a
    subprocess reaching a call): never to let time pass in the emulator (move
    its clock) or in the dashboard. ``timeout`` bounds a failure; it is no
    margin a passing run depends on."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


# --- Skips: stated, and never silent in CI -----------------------------------

_unexpected_skips = []


def _on_sqlite():
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


#: The Redis server of the ``redis`` tests (the RQ task backend); .ci/run starts one there.
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")


def redis_answers(url: str = REDIS_TEST_URL) -> str:
    """Why the Redis server at ``url`` does not answer PING; empty when it does."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return ""


def pytest_collection_modifyitems(config, items):
    if _on_sqlite():
        skip = pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL pass of `make test`")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
    # Redis: skipped with the reason only outside CI; in CI the tests run and fail.
    needs_redis = [item for item in items if item.get_closest_marker("redis")]
    if needs_redis and os.environ.get("CI") != "true":
        why = redis_answers()
        if why:
            skip = pytest.mark.skip(reason=f"needs Redis at {REDIS_TEST_URL} (set REDIS_TEST_URL): {why}")
            for item in needs_redis:
                item.add_marker(skip)


def pytest_runtest_logreport(report):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    # The one skip CI accepts: a PostgreSQL-only test in the SQLite pass.
    if not (_on_sqlite() and "PostgreSQL" in reason):
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") == "true" and _unexpected_skips:
        print("\nCI never skips a test but a PostgreSQL-only one on SQLite. Skipped:")
        for line in _unexpected_skips:
            print(f"  {line}")
        session.exitstatus = 1
