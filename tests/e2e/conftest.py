"""End-to-end fixtures: real Redis, real edge/worker/simulator processes, real sockets
(``tests.support.stack``).

Redis: a private ``redis-server`` per pytest process, or the one ``SWITCHBOARD_TEST_REDIS_URL``
names; each stack writes under its own random key prefix and deletes only those keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import coverage
import pytest

from services.devstack import RedisHandle
from tests.support.stack import StackFactory, e2e_redis, running_stacks


@pytest.fixture(scope="session")
def redis_handle() -> Iterator[RedisHandle]:
    with e2e_redis() as handle:
        yield handle


@pytest.fixture
def make_stack(redis_handle: RedisHandle, tmp_path: Path) -> Iterator[StackFactory]:
    """Start stacks with ``make_stack(workers=2, sim_mode="echo", ...)``; all are stopped, their
    processes must exit 0, and their Redis keys are deleted."""
    with running_stacks(redis_handle.url, tmp_path) as factory:
        yield factory


@pytest.fixture(autouse=True)
def coverage_of_the_processes_started() -> Iterator[None]:
    """Under coverage (make test), an end-to-end test measures the edges and workers it starts
    (they inherit the measurement, ``tests.support.stack``), not its own process: there it
    would trace the call simulator, frame by frame, for every call (a third of the tier's CPU,
    and the tier is CPU-bound on 2 cores), and the simulator has tests of its own."""
    measuring = coverage.Coverage.current()
    if measuring is None:
        yield
        return
    measuring.stop()
    try:
        yield
    finally:
        measuring.start()
