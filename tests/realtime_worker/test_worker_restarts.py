"""Worker: drain on stop (handoff, finish), takeover on claim, Redis restarting empty."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.exceptions as redis_exceptions
from fakeredis.aioredis import FakeRedis

from shared.keys import CallField, CallState
from shared.messages import (
    CallDispatch,
    Hangup,
    InboundAudio,
    StreamStarted,
)
from shared.records import Turn, create_call, load_turns, turn_commands
from tests.support.fake_redis import add_message, execute, polling_client, stream_messages
from tests.support.waiting import eventually
from tests.support.worker_process import KEYS, WORKER, Sockets, start_worker, stop_worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def redis(server: fakeredis.FakeServer) -> AsyncIterator[FakeRedis]:
    client = polling_client(server)
    yield client
    await client.aclose()


async def _live_call(redis: FakeRedis, sid: str) -> None:
    """A call whose stream is attached on edge-1 (what the edge writes on attach)."""
    await create_call(redis, KEYS, sid, {CallField.FROM: "+1"})
    await redis.hset(KEYS.call(sid), mapping={CallField.STATE: "live", CallField.EDGE_ID: "edge-1"})
    await add_message(redis, KEYS.inbound(sid), StreamStarted("MZ", "edge-1", 0.0))


async def _dispatches(redis: FakeRedis) -> list[CallDispatch]:
    found = await stream_messages(redis, KEYS.dispatch)
    return [m for m in found if isinstance(m, CallDispatch)]


async def test_handoff_drain_releases_leases_and_dispatches_again(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await _live_call(redis, "CA1")
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions and len(sockets) == 1)
    session = worker.sessions["CA1"]
    assert session.takeover and session.stream_seen  # live on an edge: a takeover
    audio_id = await add_message(
        redis, KEYS.inbound("CA1"), InboundAudio(b"\x01" * 160, 0, time.time())
    )
    await eventually(lambda: session.in_cursor == audio_id.decode())

    await stop_worker(running)  # SIGTERM, DRAIN_MODE=handoff (the default)
    assert worker.sessions == {}
    assert not await redis.exists(KEYS.lease("CA1"))
    assert [(d.call_sid, d.reason) for d in await _dispatches(redis)][-1] == ("CA1", "handoff")
    record = await redis.hgetall(KEYS.call("CA1"))
    assert record[CallField.STATE.encode()] == CallState.LIVE.encode()  # not ended
    assert record[CallField.IN_CURSOR.encode()] == audio_id
    outbound = await stream_messages(redis, KEYS.outbound("CA1"))
    assert not any(isinstance(message, Hangup) for message in outbound)
    assert worker.registry.get_sample_value("switchboard_worker_handoffs_total") == 1

    # Another worker takes it over at once, from the saved cursor.
    second = await start_worker(redis, sockets)
    await eventually(lambda: "CA1" in second.worker.sessions)
    taken = second.worker.sessions["CA1"]
    assert taken.takeover
    assert taken.in_cursor == audio_id.decode()
    await eventually(lambda: len(sockets) == 2 and len(sockets[1].sent) == 1)
    assert sockets[1].appended_audio() == b""  # nothing after the cursor yet
    await stop_worker(second)


async def test_finish_drain_waits_for_calls_then_hands_off_the_rest(
    redis: FakeRedis, sockets: Sockets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.worker")
    await _live_call(redis, "CA1")
    await _live_call(redis, "CA2")
    running = await start_worker(redis, sockets, drain_mode="finish", drain_timeout_s=0.5)
    worker = running.worker
    await eventually(lambda: len(worker.sessions) == 2)
    started = time.monotonic()
    running.stop.set()
    await eventually(lambda: "letting 2 calls finish" in caplog.text, what="the drain begun")
    assert set(worker.sessions) == {"CA1", "CA2"}  # still serving while draining
    worker.sessions["CA1"].stop("caller_hangup")  # one call ends by itself
    assert running.task is not None
    await asyncio.wait_for(running.task, 5.0)
    assert time.monotonic() - started >= 0.5
    assert [(d.call_sid, d.reason) for d in await _dispatches(redis) if d.reason == "handoff"] == [
        ("CA2", "handoff")
    ]
    assert not await redis.exists(KEYS.lease("CA2"))


async def test_claim_loop_recreates_the_group_after_redis_restarts_empty(
    redis: FakeRedis, sockets: Sockets, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: bool(worker.ctx.reader.healthy))

    async def group_exists() -> bool:
        try:
            return bool(await redis.xinfo_groups(KEYS.dispatch))
        except redis_exceptions.ResponseError:  # no such key yet
            return False

    await eventually(group_exists, what="the claim loop's consumer group")
    await redis.flushall()  # the group and the dispatch stream are gone: NOGROUP
    await eventually(lambda: "claiming calls failed" in caplog.text, what="the claim failing")
    await create_call(redis, KEYS, "CA1", {})
    await eventually(lambda: "CA1" in worker.sessions, within_s=5.0)
    assert running.task is not None and not running.task.done()
    # Real Redis says NOGROUP; fakeredis words it differently. Either way: logged, retried.
    assert "claiming calls failed" in caplog.text
    await stop_worker(running)


async def test_redis_restart_keeps_the_call_and_restores_its_state(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await _live_call(redis, "CA1")
    await execute(redis, turn_commands(KEYS, "CA1", Turn("user", "Hello.", 1)))
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions and len(sockets) == 1)
    await eventually(lambda: len(sockets[0].sent) == 2)  # session.update, the seeded turn
    session = worker.sessions["CA1"]
    await eventually(lambda: session.in_cursor != "0-0")

    await redis.flushall()  # Redis restarted empty: lease, record and turns are gone

    async def lease_held() -> bool:
        return bool(await redis.get(KEYS.lease("CA1")) == WORKER.encode())

    await eventually(lease_held, what="the lease taken back")  # taken back, not "lost"
    await worker.ctx.writer.flush()
    record = await redis.hgetall(KEYS.call("CA1"))
    assert record[CallField.WORKER_ID.encode()] == WORKER.encode()
    assert record[CallField.IN_CURSOR.encode()] == session.in_cursor.encode()
    assert record[CallField.INPUT_FORMAT.encode()] == b"audio/pcmu"
    assert CallField.STATE.encode() not in record  # the edge's field: not invented here
    assert await redis.ttl(KEYS.call("CA1")) > 0
    assert [t.text for t in await load_turns(redis, KEYS, "CA1")] == ["Hello."]
    assert "CA1" in worker.sessions and session.end_reason is None

    # A lease now held by another worker is still reported lost.
    await redis.set(KEYS.lease("CA1"), "worker-2", px=60_000)
    await eventually(lambda: "CA1" not in worker.sessions)
    assert session.end_reason == "lease_lost"
    await stop_worker(running)
