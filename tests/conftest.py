"""Fixtures and collection rules shared by every test layer.

Tiers (README, "Run the tests"): every test under ``tests/e2e/`` is marked ``e2e`` here, so
that no end-to-end module can slip into ``make test-fast``; a test elsewhere that starts real
processes marks itself.

Order: end-to-end tests first, the longest modules first (``LONGEST_FIRST``), then the rest.
pytest-xdist deals the first quarter of the run out to its workers in turn, the rest on
demand: so the long, mostly waiting end-to-end tests spread over every worker from the start,
and the short CPU-bound ones fill the gaps and the end, instead of one 70 s soak starting
last while the other workers sit idle.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import allocator

TESTS = Path(__file__).parent
E2E_DIR = TESTS / "e2e"
#: End-to-end modules whose tests take longest (the soak alone takes over a minute).
LONGEST_FIRST = (
    "test_failover_soak.py",
    "test_worker_crash_gap.py",
    "test_restarts.py",
    "test_model_session.py",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


#: Modules that pick ports for the servers they start (``services.devstack.free_port``); the
#: bench's set-ups call it through ``services.devstack``. Servers run inside a test's own event
#: loop (``services.local_server``) let the kernel pick, from its ephemeral range.
PORT_PICKERS = ("services.devstack",)


@pytest.fixture(scope="session", autouse=True)
def ports_of_our_own() -> Iterator[None]:
    """Servers the tests start take their ports from this process's block
    (``tests.support.ports``), not from the kernel's ephemeral range."""
    with pytest.MonkeyPatch.context() as patch:
        for module in PORT_PICKERS:
            patch.setattr(f"{module}.free_port", allocator)
        yield


def _rank(item: pytest.Item) -> int:
    if not item.get_closest_marker("e2e"):
        return len(LONGEST_FIRST) + 1
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=_rank)  # stable: the order within each rank is kept
