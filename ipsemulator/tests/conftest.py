"""Fixtures of the emulator tests (``ips_emulator`` is in the root conftest)."""

import pytest


@pytest.fixture
def clock(ips_clock):
    """The root conftest's ``ips_clock``, under the short name these tests use."""
    return ips_clock
