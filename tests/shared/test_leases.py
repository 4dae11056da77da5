"""Alive keys and revoked leases (shared/leases.py) against fakeredis, Lua included: how a call
is taken from a worker that stopped renewing its alive key, and why the old worker can then
say nothing more to the caller."""

from __future__ import annotations

import asyncio

import pytest
from fakeredis.aioredis import FakeRedis

from shared.keys import Keys
from shared.leases import (
    REVOKED_PREFIX,
    LeaseStatus,
    acquire_lease,
    lease_holder,
    release_lease,
    renew_lease_status,
    revoke_leases,
    set_alive,
    workers_alive,
)
from shared.messages import MarkPlayed
from shared.streams import BatchWriter
from tests.support.fake_redis import stream_messages

pytestmark = pytest.mark.anyio

KEYS = Keys("t")


async def test_a_revoked_lease_is_free_for_the_next_worker_only(redis: FakeRedis) -> None:
    assert await acquire_lease(redis, "lease", "w1", 60_000)
    assert await revoke_leases(redis, [("lease", "w1")], 5_000) == [True]
    assert await redis.get("lease") == (REVOKED_PREFIX + "w1").encode()
    assert 0 < await redis.pttl("lease") <= 5_000  # the old owner stays fenced that long
    assert lease_holder(await redis.get("lease")) is None  # it reads as nobody's
    assert await acquire_lease(redis, "lease", "w2", 60_000)  # long before the old TTL
    assert not await acquire_lease(redis, "lease", "w3", 60_000)
    assert lease_holder(await redis.get("lease")) == "w2"


async def test_only_the_named_owner_loses_the_lease(redis: FakeRedis) -> None:
    await acquire_lease(redis, "a", "w2", 60_000)  # w2 took the call meanwhile
    # a: held by another worker; missing: lapsed (or Redis restarted empty).
    assert await revoke_leases(redis, [("a", "w1"), ("missing", "w1")], 5_000) == [False, False]
    assert await redis.get("a") == b"w2"
    assert not await redis.exists("missing")
    assert await revoke_leases(redis, [], 5_000) == []


async def test_the_old_owner_is_fenced_off_and_told_it_lost_the_call(redis: FakeRedis) -> None:
    await acquire_lease(redis, "lease", "w1", 60_000)
    await revoke_leases(redis, [("lease", "w1")], 5_000)
    writer = BatchWriter(redis)
    # What a frozen worker had queued, sent when it wakes, before and after the next worker
    # took the call: Redis refuses it both times.
    writer.fenced_xadd_nowait("lease", "w1", "out", [MarkPlayed("stale 1")], 100)
    task = asyncio.create_task(writer.run())
    try:
        await writer.flush()
        await acquire_lease(redis, "lease", "w2", 60_000)
        writer.fenced_xadd_nowait("lease", "w1", "out", [MarkPlayed("stale 2")], 100)
        writer.fenced_xadd_nowait("lease", "w2", "out", [MarkPlayed("w2 speaking")], 100)
        await writer.flush()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await stream_messages(redis, "out") == [MarkPlayed("w2 speaking")]
    assert await renew_lease_status(redis, ["lease"], "w1", 60_000) == [LeaseStatus.LOST]
    await release_lease(redis, "lease", "w1")  # a release by the old owner changes nothing
    assert await redis.get("lease") == b"w2"


async def test_renewal_of_a_revoked_lease_reports_it_lost_not_taken_back(
    redis: FakeRedis,
) -> None:
    await acquire_lease(redis, "lease", "w1", 60_000)
    await revoke_leases(redis, [("lease", "w1")], 5_000)
    assert await renew_lease_status(redis, ["lease"], "w1", 60_000) == [LeaseStatus.LOST]
    assert lease_holder(await redis.get("lease")) is None  # still free for the next worker


async def test_heartbeat_sets_the_alive_key_with_the_leases(redis: FakeRedis) -> None:
    alive = KEYS.alive("w1")
    await acquire_lease(redis, "a", "w1", 1_000)
    statuses = await renew_lease_status(
        redis, ["a", "missing"], "w1", 60_000, alive_key=alive, alive_ttl_ms=1_000
    )
    assert statuses == [LeaseStatus.RENEWED, LeaseStatus.REACQUIRED]
    assert 0 < await redis.pttl(alive) <= 1_000
    assert await redis.pttl("a") > 1_000
    await redis.delete(alive)
    assert (
        await renew_lease_status(redis, [], "w1", 60_000, alive_key=alive, alive_ttl_ms=900) == []
    )
    assert 0 < await redis.pttl(alive) <= 900  # a worker without calls still shows it runs


async def test_alive_keys_are_checked_one_per_worker(redis: FakeRedis) -> None:
    await set_alive(redis, KEYS.alive("w1"), 60_000)
    await set_alive(redis, KEYS.alive("w3"), 20)
    assert 0 < await redis.pttl(KEYS.alive("w1")) <= 60_000
    names = [KEYS.alive(w) for w in ("w1", "w2", "w3")]
    assert await workers_alive(redis, names) in ([True, False, True], [True, False, False])
    await asyncio.sleep(0.05)
    assert await workers_alive(redis, names) == [True, False, False]  # w3's key lapsed
    assert await workers_alive(redis, []) == []


def test_lease_holder_reads_a_lease_value() -> None:
    assert lease_holder(b"worker-1") == "worker-1"
    assert lease_holder("worker-1") == "worker-1"
    assert lease_holder(None) is None
    assert lease_holder((REVOKED_PREFIX + "worker-1").encode()) is None
