"""A call that swallows cancellations: the stand-in for a redis-py call whose internal timeout
completes just as the cancellation lands, which Python 3.11 can swallow. A stopping process
must ask such a call again; the tests of every loop that stops on cancellation use this."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["StubbornCall"]


class StubbornCall:
    """Awaited, it never answers. The first ``swallow`` cancellations it sees end the call
    as if the reply had come (``returns``), and are kept with the call's arguments in
    ``swallowed``; any later one goes through. ``asked`` counts every cancellation."""

    def __init__(self, swallow: int = 1, returns: Any = None) -> None:
        self.swallow = swallow
        self.returns = returns
        self.asked = 0
        self.swallowed: list[tuple[Any, ...]] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            await asyncio.sleep(3600)  # a reply that does not come
        except asyncio.CancelledError:
            self.asked += 1
            if len(self.swallowed) >= self.swallow:
                raise
            self.swallowed.append(args)
        return self.returns
