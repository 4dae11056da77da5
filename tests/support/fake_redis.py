"""fakeredis clients whose blocking stream reads can be cancelled safely, and typed readers of
what the services write to Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import fakeredis
from fakeredis.aioredis import FakeRedis
from redis.asyncio import Redis

from shared.messages import ENTRY_FIELD, Message, decode, encode

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


# redis-py types replies loosely (``bytes | str``, optional lists): the tests read them here,
# as the clients they use (no decode_responses) return them.

StreamEntry = tuple[bytes, dict[bytes, bytes]]


async def stream_entries(redis: Redis, stream: str) -> list[StreamEntry]:
    """Every entry of ``stream``, oldest first."""
    reply: Any = await redis.xrange(stream)
    return [(entry_id, fields) for entry_id, fields in reply]


async def stream_messages(redis: Redis, stream: str) -> list[Message]:
    """The messages of ``stream`` (``shared.messages``), oldest first."""
    return [decode(fields[ENTRY_FIELD]) for _, fields in await stream_entries(redis, stream)]


async def add_message(redis: Redis, stream: str, message: Message) -> bytes:
    """Append ``message`` to ``stream`` as the services do; its entry id."""
    entry_id: Any = await redis.xadd(stream, {ENTRY_FIELD: encode(message)})
    return bytes(entry_id)


async def text_hash(redis: Redis, key: str) -> dict[str, str]:
    """A hash (a call record, say) with its fields and values decoded."""
    raw: Any = await redis.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def execute(redis: Redis, commands: Iterable[Sequence[Any]]) -> None:
    """Run ``commands`` (argument lists, as ``shared.records`` builds them) in one pipeline, as
    the services' batch writer does."""
    pipe = redis.pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args)
    await pipe.execute()
