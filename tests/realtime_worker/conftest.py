"""Fixtures shared by the worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.worker import Harness, running_harness
from tests.support.worker_process import Sockets


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running_harness() as h:
        yield h


@pytest.fixture
def sockets() -> Sockets:
    """The fake Realtime sockets a worker under test opens."""
    return Sockets()
