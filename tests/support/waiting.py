"""Waiting in async tests for something another task does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

STEP_S = 0.005


async def eventually(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    """Yield to the event loop until ``condition()`` holds; fail after about ``within_s``."""
    for _ in range(int(within_s / STEP_S)):
        if condition():
            return
        await asyncio.sleep(STEP_S)
    assert condition(), f"condition not met within {within_s}s"
