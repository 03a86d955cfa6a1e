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
