"""Small asyncio helpers for supervised groups of tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_until_first_returns"]


async def run_until_first_returns(*coros: Coroutine[Any, Any, object]) -> None:
    """Run ``coros`` as tasks; when any of them returns or fails, cancel and await the others.

    Failures (other than cancellation) are raised together as an ExceptionGroup. Built on
    ``asyncio.wait`` rather than a TaskGroup stopped by a sentinel exception: on Python 3.11
    that trick leaves the calling task marked as cancelling, which breaks later timeouts in it.
    """
    tasks = [asyncio.create_task(coro) for coro in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [
        outcome
        for outcome in outcomes
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError)
    ]
    if failures:
        raise BaseExceptionGroup("a supervised task failed", failures)
