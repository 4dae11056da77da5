from __future__ import annotations

import asyncio

import pytest

from shared.tasks import cancel_and_wait, run_until_first_returns
from tests.support.stubborn import StubbornCall

pytestmark = pytest.mark.anyio


async def test_first_return_cancels_the_rest_and_leaves_the_caller_clean() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick() -> None:
        await asyncio.sleep(0)

    await run_until_first_returns(forever(), quick())
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    with pytest.raises(TimeoutError):  # a timeout later in the same task still works
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)


async def test_a_failure_is_raised_and_the_others_are_cancelled() -> None:
    async def failing() -> None:
        raise ValueError("boom")

    async def forever() -> None:
        await asyncio.sleep(3600)

    with pytest.raises(ExceptionGroup) as caught:
        await run_until_first_returns(forever(), failing())
    assert [type(e) for e in caught.value.exceptions] == [ValueError]


async def test_cancel_and_wait_sees_its_tasks_to_the_end_even_when_cancelled_itself() -> None:
    stuck = StubbornCall(swallow=2)

    async def stubborn() -> None:
        while True:  # a loop that calls again whatever became of the last call
            await stuck()

    child = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait([child]))
    await asyncio.sleep(0.01)
    caller.cancel()  # as a task group's exit, or a second SIGTERM, would
    try:
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert child.done() and stuck.asked == 3
    finally:
        while not child.done():  # a failed run leaves nothing running behind it
            child.cancel()
            await asyncio.sleep(0)
