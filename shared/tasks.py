"""Small asyncio helpers for supervised task groups."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_until_first_returns"]


class _Returned(Exception):
    """Raised by a wrapped coroutine that finished, to make its TaskGroup cancel the rest."""


async def _raise_on_return(coro: Coroutine[Any, Any, object]) -> None:
    await coro
    raise _Returned


async def run_until_first_returns(*coros: Coroutine[Any, Any, object]) -> None:
    """Run ``coros`` in one TaskGroup; when any of them returns, cancel the others.

    Exceptions other than that normal return propagate as the TaskGroup's ExceptionGroup.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(_raise_on_return(coro))
    except* _Returned:
        pass
