"""Worker: its alive key, and calls taken from it (or by it) through revoked leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from shared.keys import CallField, CallState
from shared.leases import REVOKED_PREFIX, revoke_leases
from shared.messages import ENTRY_FIELD, CallDispatch, Hangup, StreamStarted, encode
from shared.records import create_call
from tests.support.fake_redis import polling_client, stream_messages
from tests.support.waiting import eventually
from tests.support.worker_process import KEYS, WORKER, Sockets, start_worker, stop_worker

pytestmark = pytest.mark.anyio

ALIVE = KEYS.alive(WORKER)


@pytest.fixture
async def redis() -> AsyncIterator[FakeRedis]:
    client = polling_client(fakeredis.FakeServer())
    yield client
    await client.aclose()


async def test_alive_key_is_renewed_while_the_worker_runs_and_deleted_on_stop(
    redis: FakeRedis, sockets: Sockets
) -> None:
    running = await start_worker(redis, sockets, alive_ttl_ms=300, alive_interval_ms=50)

    async def alive() -> bool:
        return bool(await redis.exists(ALIVE))

    await eventually(alive, what="the alive key")
    await asyncio.sleep(0.6)  # twice its TTL: renewed, not lapsed
    assert 0 < await redis.pttl(ALIVE) <= 300
    await stop_worker(running)
    assert not await redis.exists(ALIVE)  # edges take what it still held at once


async def test_a_revoked_lease_ends_the_session_without_a_word_to_the_caller(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await create_call(redis, KEYS, "CA1", {})
    await redis.xadd(KEYS.inbound("CA1"), {ENTRY_FIELD: encode(StreamStarted("MZ", "e", 0.0))})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    session = worker.sessions["CA1"]
    # An edge found this worker's alive key gone (it was frozen, say) and took the call.
    assert await revoke_leases(redis, [(KEYS.lease("CA1"), WORKER)], 60_000) == [True]
    await eventually(lambda: "CA1" not in worker.sessions)
    assert session.end_reason == "lease_lost"
    # Not taken back by the heartbeat, not released, and no hang-up for the next worker's call.
    assert await redis.get(KEYS.lease("CA1")) == (REVOKED_PREFIX + WORKER).encode()
    assert not any(
        isinstance(m, Hangup) for m in await stream_messages(redis, KEYS.outbound("CA1"))
    )
    assert (await redis.hgetall(KEYS.call("CA1")))[CallField.STATE.encode()] != b"ended"
    await stop_worker(running)


async def test_takes_over_a_call_whose_lease_an_edge_revoked(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await create_call(redis, KEYS, "CA1", {})
    await redis.hset(
        KEYS.call("CA1"), mapping={CallField.STATE: CallState.LIVE, CallField.EDGE_ID: "edge-1"}
    )
    # The dead worker's lease has most of its TTL left, but an edge revoked it.
    await redis.set(KEYS.lease("CA1"), REVOKED_PREFIX + "worker-dead", px=60_000)
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: encode(CallDispatch("CA1", "lease-lost", 0.0))})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    assert worker.sessions["CA1"].takeover
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()
    await stop_worker(running)


async def test_takes_over_a_dispatch_a_frozen_worker_received_but_never_claimed(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await create_call(redis, KEYS, "CA1", {})  # dispatched, as the webhook does
    await redis.xgroup_create(KEYS.dispatch, "workers", id="0")
    # A worker froze with its read in flight: Redis handed it the entry, nobody acknowledged it.
    assert await redis.xreadgroup("workers", "worker-frozen", {KEYS.dispatch: ">"}, count=1)
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions, 5)
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()

    async def acknowledged() -> bool:
        await worker.ctx.writer.flush()
        return bool((await redis.xpending(KEYS.dispatch, "workers"))["pending"] == 0)

    await eventually(acknowledged, what="the entry acknowledged")
    await stop_worker(running)
