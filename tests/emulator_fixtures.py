"""Pytest fixtures for the grok.com emulator: `emulator` (one per session) and `emu` (reset)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grokproxy.emulator.testing import EmulatorHandle, running_emulator


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    """One emulator process for the whole test session (dialect `modes`, 8-token replies)."""
    with running_emulator(tokens=8) as handle:
        yield handle


@pytest.fixture
def emu(emulator: EmulatorHandle) -> EmulatorHandle:
    """The session emulator, reset to a clean state for this test."""
    emulator.reset()
    return emulator
