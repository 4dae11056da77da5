"""Worker: claiming calls from the dispatch stream, leases, heartbeat, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.realtime_worker import worker as worker_module
from shared import records
from shared.keys import CallField, CallState, Keys
from shared.messages import ENTRY_FIELD, CallDispatch, InboundAudio, StreamStarted, encode
from shared.records import create_call
from tests.support.fake_redis import polling_client, stream_entries
from tests.support.stubborn import StubbornCall
from tests.support.waiting import eventually
from tests.support.worker_process import KEYS, WORKER, Sockets, start_worker, stop_worker

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis() -> AsyncIterator[FakeRedis]:
    client = polling_client(fakeredis.FakeServer())
    yield client
    await client.aclose()


async def pending(redis: FakeRedis, worker: worker_module.Worker, count: int) -> bool:
    """Whether ``count`` dispatch entries are claimed but not acknowledged, once the worker's
    writes are in."""
    await worker.ctx.writer.flush()
    return bool((await redis.xpending(KEYS.dispatch, "workers"))["pending"] == count)


async def test_claims_a_call_and_releases_it_on_stop(redis: FakeRedis, sockets: Sockets) -> None:
    await create_call(redis, KEYS, "CA1", {CallField.FROM: "+1"})
    await redis.xadd(KEYS.inbound("CA1"), {ENTRY_FIELD: encode(StreamStarted("MZ", "e", 0.0))})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions and len(sockets) == 1)
    await eventually(lambda: len(sockets[0].sent) == 1)  # session.update
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()
    await eventually(lambda: pending(redis, worker, 0))  # acknowledged once claimed
    assert await redis.hget(KEYS.call("CA1"), CallField.WORKER_ID) == WORKER.encode()
    assert worker.registry.get_sample_value("switchboard_worker_active_calls") == 1

    # The heartbeat keeps the lease alive well past its TTL.
    await asyncio.sleep(1.3)
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()

    await stop_worker(running)
    assert worker.sessions == {}
    assert not await redis.exists(KEYS.lease("CA1"))
    assert sockets[0].closed
    record = await redis.hgetall(KEYS.call("CA1"))
    assert record[CallField.STATE.encode()] == CallState.DISPATCHED.encode()  # not ended
    assert worker.registry.get_sample_value("switchboard_worker_active_calls") == 0


async def test_redis_up_follows_the_workers_redis_reads_and_writes(
    redis: FakeRedis, sockets: Sockets
) -> None:
    server = redis.connection_pool.connection_kwargs["server"]
    running = await start_worker(redis, sockets)
    registry = running.worker.registry
    await eventually(lambda: registry.get_sample_value("switchboard_worker_redis_up") == 1)
    server.connected = False
    await eventually(lambda: registry.get_sample_value("switchboard_worker_redis_up") == 0)
    server.connected = True
    await eventually(lambda: registry.get_sample_value("switchboard_worker_redis_up") == 1)
    errors = "switchboard_redis_errors_total"
    assert (registry.get_sample_value(errors, {"process": "worker", "op": "read"}) or 0) >= 1
    await stop_worker(running)


async def test_skips_unknown_ended_held_and_malformed_dispatches(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await create_call(redis, KEYS, "CAended", {})
    await redis.hset(KEYS.call("CAended"), CallField.STATE, CallState.ENDED)
    await create_call(redis, KEYS, "CAheld", {})
    await redis.set(KEYS.lease("CAheld"), "worker-2", px=60_000)
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: encode(CallDispatch("CAnone", "new", 0.0))})
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: b"garbage"})
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: encode(InboundAudio(b"", 0, 0.0))})
    await redis.xadd(KEYS.dispatch, {b"x": b"no m field"})
    await create_call(redis, KEYS, "CAok", {})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CAok" in worker.sessions)
    await eventually(
        lambda: (
            worker.registry.get_sample_value(
                "switchboard_worker_malformed_input_total", {"kind": "bad_redis_message"}
            )
            == 3
        )
    )
    assert set(worker.sessions) == {"CAok"}
    assert await redis.get(KEYS.lease("CAheld")) == b"worker-2"
    # Acknowledged through the writer once the whole batch is claimed.
    await eventually(lambda: pending(redis, worker, 0))
    await stop_worker(running)


async def test_takes_no_more_calls_than_max_calls(redis: FakeRedis, sockets: Sockets) -> None:
    for sid in ("CA1", "CA2", "CA3"):
        await create_call(redis, KEYS, sid, {})
    running = await start_worker(redis, sockets, max_calls=2)
    worker = running.worker
    await eventually(lambda: len(worker.sessions) == 2)
    # The claim loop, full, waits for room: it reads no more dispatches until a call ends.
    await eventually(lambda: not worker._room.is_set())
    assert set(worker.sessions) == {"CA1", "CA2"}
    assert not await redis.exists(KEYS.lease("CA3"))
    # A call ends: the third one is claimed.
    worker.sessions["CA1"].stop("done")
    await eventually(lambda: "CA3" in worker.sessions)
    await stop_worker(running)


async def test_stops_although_an_alive_renewal_swallows_its_first_cancellation(
    redis: FakeRedis, sockets: Sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On Python 3.11 a cancellation that meets a redis-py timeout's deadline can be swallowed.
    # The worker must ask again: a CI run once saw a worker hang on the way out until killed.
    stuck_set_alive = StubbornCall()
    monkeypatch.setattr(worker_module, "set_alive", stuck_set_alive)
    running = await start_worker(redis, sockets)
    await asyncio.sleep(0.05)  # the renewal is under way, stuck
    running.stop.set()
    assert running.task is not None
    stopped, _ = await asyncio.wait({running.task}, timeout=5)  # the 3.11 group: never
    assert stopped, "the worker is still stopping"
    assert [key for _, key, _ in stuck_set_alive.swallowed] == [KEYS.alive(WORKER)]


async def test_a_redis_that_does_not_answer_cannot_hold_a_stopping_worker(
    redis: FakeRedis, sockets: Sockets, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    class SilentPipeline:
        async def __aenter__(self) -> SilentPipeline:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        def delete(self, key: str) -> None:
            pass

        async def execute(self) -> None:
            await asyncio.sleep(3600)  # a primary in the middle of a failover, say

    running = await start_worker(redis, sockets)
    monkeypatch.setattr(running.worker.redis, "pipeline", lambda **_: SilentPipeline())
    await stop_worker(running)  # within stop_worker's 5 s
    assert "could not delete this worker's alive keys within 2 s" in caplog.text


async def test_lost_lease_stops_the_session(redis: FakeRedis, sockets: Sockets) -> None:
    await create_call(redis, KEYS, "CA1", {})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    session = worker.sessions["CA1"]
    await redis.set(KEYS.lease("CA1"), "worker-2", px=60_000)
    await eventually(lambda: "CA1" not in worker.sessions)
    assert session.end_reason == "lease_lost"
    assert await redis.get(KEYS.lease("CA1")) == b"worker-2"
    await stop_worker(running)


async def test_a_call_taken_back_by_an_edge_is_claimed_anew_not_dropped(
    redis: FakeRedis, sockets: Sockets
) -> None:
    # The edge found this worker's alive key lapsed (a primary failing over, a long pause),
    # revoked the lease and put the call in line; the worker, alive after all, reads that
    # dispatch before its heartbeat sees the lease gone (here: no heartbeat comes at all).
    await create_call(redis, KEYS, "CA1", {})
    running = await start_worker(redis, sockets, heartbeat_interval_ms=60_000)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    stale = worker.sessions["CA1"]
    await redis.set(KEYS.lease("CA1"), f"revoked {WORKER}", px=60_000)
    dispatch = CallDispatch("CA1", "lease-lost", 0.0)
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: encode(dispatch)})

    await eventually(lambda: worker.sessions.get("CA1") not in (None, stale))
    assert stale.end_reason == "lease_lost"
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()
    # The new session opens its own Realtime socket once it runs, a moment after it is held.
    await eventually(lambda: len(sockets) == 2, what="a new Realtime session for the call")
    await stop_worker(running)


async def test_a_lease_redis_lost_is_taken_back_and_the_record_written_again(
    redis: FakeRedis, sockets: Sockets
) -> None:
    # A Redis restarted empty, or a replica promoted before it had the latest writes: the
    # call's lease and record are gone while the worker serves the call.
    await create_call(redis, KEYS, "CA1", {})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    session = worker.sessions["CA1"]
    await eventually(lambda: redis.hget(KEYS.call("CA1"), CallField.WORKER_ID))
    await redis.delete(KEYS.lease("CA1"), KEYS.call("CA1"))

    async def restored() -> bool:
        await worker.ctx.writer.flush()
        return bool(await redis.hget(KEYS.call("CA1"), CallField.WORKER_ID) == WORKER.encode())

    await eventually(restored, what="the worker's part of the record written again")
    assert await redis.get(KEYS.lease("CA1")) == WORKER.encode()
    assert worker.sessions.get("CA1") is session and session.end_reason is None  # the call goes on
    restored_total = "switchboard_worker_leases_restored_total"
    assert worker.registry.get_sample_value(restored_total) == 1
    await stop_worker(running)


async def test_heartbeat_saves_the_inbound_cursor(redis: FakeRedis, sockets: Sockets) -> None:
    await create_call(redis, KEYS, "CA1", {})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: "CA1" in worker.sessions)
    entry_id = await redis.xadd(
        KEYS.inbound("CA1"), {ENTRY_FIELD: encode(StreamStarted("MZ", "e", 0.0))}
    )

    async def saved() -> bool:
        return bool(await redis.hget(KEYS.call("CA1"), CallField.IN_CURSOR) == entry_id)

    await eventually(saved, what="the cursor saved by the heartbeat")
    await stop_worker(running)


async def test_one_failed_claim_does_not_hold_up_the_rest_of_its_batch(
    redis: FakeRedis, sockets: Sockets, monkeypatch: pytest.MonkeyPatch
) -> None:

    async def load_call(client: Any, keys: Keys, sid: str) -> Any:
        if sid == "CAbad":
            raise RedisConnectionError("lost the connection mid-claim")
        return await records.load_call(client, keys, sid)

    monkeypatch.setattr(worker_module, "load_call", load_call)
    await create_call(redis, KEYS, "CAfirst", {})
    await create_call(redis, KEYS, "CAbad", {})
    await create_call(redis, KEYS, "CAlast", {})
    running = await start_worker(redis, sockets)
    worker = running.worker
    await eventually(lambda: set(worker.sessions) == {"CAfirst", "CAlast"})
    await eventually(lambda: pending(redis, worker, 1))
    unacknowledged: Any = await redis.xpending_range(KEYS.dispatch, "workers", "-", "+", 10)
    assert len(unacknowledged) == 1  # only the failed claim stays unacknowledged
    fields = dict(await stream_entries(redis, KEYS.dispatch))[unacknowledged[0]["message_id"]]
    assert b"CAbad" in fields[ENTRY_FIELD]
    await stop_worker(running)
