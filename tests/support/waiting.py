"""Waiting for something another task, thread or process does: one helper for async tests
(``eventually``) and one for sync tests (``eventually_sync``).

Both poll ``condition`` until it returns something truthy, and return that value; after
``within_s`` (on the monotonic clock) they fail with an AssertionError naming ``what`` and the
last value seen. They poll every 5 ms (in-process fakes), or every 50 ms when given more than
5 s (end-to-end tests, which read files and scrape metrics). An exception from ``condition``
propagates: a condition that means "not yet" by an error catches it itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["eventually", "eventually_sync"]

T = TypeVar("T")

DEFAULT_WITHIN_S = 5.0


def _step(within_s: float) -> float:
    return 0.005 if within_s <= 5.0 else 0.05


def _timed_out(what: str, within_s: float, value: object) -> AssertionError:
    return AssertionError(f"{what} not met within {within_s}s (last value {value!r})")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]],
    within_s: float = DEFAULT_WITHIN_S,
    what: str = "condition",
) -> T: ...
@overload
async def eventually(
    condition: Callable[[], T], within_s: float = DEFAULT_WITHIN_S, what: str = "condition"
) -> T: ...
async def eventually(
    condition: Callable[[], Any], within_s: float = DEFAULT_WITHIN_S, what: str = "condition"
) -> Any:
    """Yield to the event loop until ``condition()`` — or what it awaits to, if it returns an
    awaitable — is truthy; that value."""
    deadline = time.monotonic() + within_s
    step = _step(within_s)
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, within_s, value)
        await asyncio.sleep(step)


def eventually_sync(
    condition: Callable[[], T], within_s: float = DEFAULT_WITHIN_S, what: str = "condition"
) -> T:
    """Block, sleeping between polls, until ``condition()`` is truthy; that value."""
    deadline = time.monotonic() + within_s
    step = _step(within_s)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, within_s, value)
        time.sleep(step)
