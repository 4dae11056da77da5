"""fakeredis clients whose blocking stream reads can be cancelled safely."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
from fakeredis.aioredis import FakeRedis

POLL_S = 0.005


def polling_client(server: fakeredis.FakeServer) -> FakeRedis:
    """A FakeRedis whose ``XREAD``/``XREADGROUP ... BLOCK`` poll instead of blocking.

    fakeredis 2.40 wedges a task cancelled while blocked in ``XREADGROUP BLOCK``, so stopping a
    worker could hang a test. Polling gives the same replies; a read that finds nothing waits a
    few ms in a cancellable sleep.
    """
    # Without a socket timeout redis-py sends without asyncio.wait_for, which on Python 3.11 can
    # swallow a cancellation that arrives as the send completes (fakeredis sends instantly).
    client = FakeRedis(server=server, socket_timeout=None)
    for name in ("xread", "xreadgroup"):
        original = getattr(client, name)

        async def poll(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            block = kwargs.pop("block", None)
            reply = await _original(*args, **kwargs)
            if not reply and block is not None:
                await asyncio.sleep(min(POLL_S, block / 1000) if block else POLL_S)
            return reply

        setattr(client, name, poll)
    return client
