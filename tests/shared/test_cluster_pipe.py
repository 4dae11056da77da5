"""The frame path's cluster connection: which key routes each command, and, against a real
Redis Cluster, a batch split over primaries and a slot migrated under it (ASK, then MOVED)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from services.devcluster import RedisClusterHandle, redis_cluster
from shared.cluster_pipe import ClusterPipe, command_key, node_url
from shared.messages import ENTRY_FIELD

pytestmark = pytest.mark.anyio


def test_each_command_is_routed_by_the_key_that_decides_its_slot() -> None:
    assert command_key(("XADD", "s", "MAXLEN", "~", 10, "*", "m", b"x")) == "s"
    assert command_key(("EVALSHA", "sha", 2, "lease", "stream", "owner")) == "lease"
    assert command_key(("EVAL", "return 1", 0)) is None
    assert command_key(("XREAD", "COUNT", 5, "BLOCK", 0, "STREAMS", "a", "b", "0", "0")) == "a"
    assert command_key(("SCRIPT", "LOAD", "return 1")) is None
    assert command_key(("HINCRBY", b"record", "bytes_in", 160)) == b"record"


def test_a_node_url_keeps_the_scheme_credentials_and_options() -> None:
    url = "rediss://user:pw@seed.internal:7000/0?ssl_cert_reqs=none"
    assert node_url(url, "10.0.0.5", 7003) == "rediss://user:pw@10.0.0.5:7003/0?ssl_cert_reqs=none"
    assert node_url("redis://seed:7000", "::1", 7001) == "redis://[::1]:7001"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterHandle]:
    with redis_cluster(primaries=3, replicas_per_primary=0) as handle:
        yield handle


@pytest.fixture
async def control(cluster: RedisClusterHandle) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


def _on(port: int, *args: object) -> Any:
    """``args`` run on the node at ``port`` alone (no redirection followed)."""
    client = redis.Redis(port=port)
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _entries(cluster: RedisClusterHandle, key: str) -> list[bytes]:
    flat: list[Any] = _on(cluster.node_for_key(key).port, "XRANGE", key, "-", "+")
    return [fields[ENTRY_FIELD] for _, fields in flat]


def _xadd(key: str, value: bytes) -> tuple[object, ...]:
    return ("XADD", key, "*", ENTRY_FIELD, value)


async def test_a_batch_over_every_primary_is_answered_in_order(
    cluster: RedisClusterHandle, control: RedisCluster
) -> None:
    pipe = ClusterPipe(cluster.url, control)
    keys = [f"pipe-order-{n}" for n in range(12)]
    assert len({cluster.node_for_key(k).port for k in keys}) == 3
    try:
        replies = await pipe.execute(
            [("SCRIPT", "LOAD", "return 7")]
            + [_xadd(k, str(n).encode()) for n, k in enumerate(keys)]
            + [("XLEN", k) for k in keys]
        )
    finally:
        await pipe.aclose()
    assert isinstance(replies[0], bytes) and len(replies[0]) == 40  # the script's sha
    assert replies[13:] == [1] * len(keys)
    for n, key in enumerate(keys):
        assert _entries(cluster, key) == [str(n).encode()]
    cluster.delete_matching("pipe-order-*")


async def test_writes_follow_a_slot_through_its_migration(
    cluster: RedisClusterHandle, control: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="shared.cluster_pipe")
    key = "pipe-migrating"
    slot = key_slot(key.encode())
    source = cluster.node_for_key(key)
    target = next(node for node in cluster.primaries() if node.port != source.port)
    pipe = ClusterPipe(cluster.url, control)
    try:
        assert await pipe.execute([_xadd(key, b"before")]) != []
        source_id = _on(source.port, "CLUSTER", "MYID")
        target_id = _on(target.port, "CLUSTER", "MYID")
        _on(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _on(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        _on(source.port, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
        # Mid-migration the key is on the target: the source answers ASK, once per command.
        (during,) = await pipe.execute([_xadd(key, b"during")])
        assert isinstance(during, bytes), during
        assert f"ASK to ('127.0.0.1', {target.port})" in caplog.text
        for node in cluster.primaries():
            _on(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        # Migrated: the old owner answers MOVED; the map is read again and the write lands.
        (after,) = await pipe.execute([_xadd(key, b"after")])
        assert isinstance(after, bytes), after
        assert f"MOVED to ('127.0.0.1', {target.port})" in caplog.text
    finally:
        await pipe.aclose()
    assert cluster.node_for_key(key).port == target.port
    assert _entries(cluster, key) == [b"before", b"during", b"after"]
    cluster.delete_matching(key)
