"""Fixtures of the emulator tests (``ips_emulator`` is in the root conftest)."""

import pytest

from ipsemulator.clock import ManualClock


@pytest.fixture
def clock(ips_emulator):
    """A ManualClock driving the emulator's lifecycle; the next reset()
    (the ``ips_emulator`` fixture's) puts the real clock back."""
    manual = ManualClock(1000.0)
    ips_emulator.state.clock = manual
    return manual
