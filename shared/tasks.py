"""Small asyncio helpers for supervised groups of tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["cancel_and_wait", "run_until_first_returns"]


#: How long a cancelled task gets before it is cancelled again.
RECANCEL_AFTER_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until all are done, cancelling again any still running.

    On Python 3.11 a cancellation that lands as an ``asyncio.wait_for`` inside a library (redis-py
    uses one for socket timeouts) completes can be swallowed; a loop that retries errors
    would then run on and keep its process from exiting. Asking again settles it. The caller
    being cancelled meanwhile does not cut this short (a task group's exit, for one, asks its
    tasks only once): the tasks are seen to their end, then the caller's cancellation goes on.
    """
    pending = {task for task in tasks if not task.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
        except asyncio.CancelledError as exc:
            interrupted = exc
            pending = {task for task in pending if not task.done()}
    if interrupted is not None:
        raise interrupted


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
        await cancel_and_wait(tasks)
    failures = [
        error for task in tasks if not task.cancelled() and (error := task.exception()) is not None
    ]
    if failures:
        raise BaseExceptionGroup("a supervised task failed", failures)
