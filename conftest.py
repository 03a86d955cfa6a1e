"""Project-wide pytest fixtures.

``ips_emulator`` gives a test a running IPS emulator (ipsemulator/) with fresh
demo data: use ``ips_emulator.service_url``, ``ips_emulator.wsdl_url()`` and
``ips_emulator.state`` (inject faults, read calls, ...). See
ipsemulator/README.md.
"""

import pytest

from ipsemulator import server as ips_emulator_server_module

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


# --- Skips: stated, and never silent in CI -----------------------------------

_unexpected_skips = []


def _on_sqlite():
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


def pytest_collection_modifyitems(config, items):
    if not _on_sqlite():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL pass of `make test`")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    # The one skip CI accepts: a PostgreSQL-only test in the SQLite pass.
    if not (_on_sqlite() and "PostgreSQL" in reason):
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    import os

    if os.environ.get("CI") == "true" and _unexpected_skips:
        print("\nCI never skips a test but a PostgreSQL-only one on SQLite. Skipped:")
        for line in _unexpected_skips:
            print(f"  {line}")
        session.exitstatus = 1
