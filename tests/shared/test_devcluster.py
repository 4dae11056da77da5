"""``services.devcluster``: a private Redis Cluster of real ``redis-server`` processes, one for
the whole module (starting one takes about 2 s)."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from services import devcluster
from services.devcluster import RedisClusterHandle, redis_cluster

pytestmark = pytest.mark.e2e  # real processes and sockets: the end-to-end tier


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterHandle]:
    with redis_cluster() as handle:
        yield handle
    # What close() promises: every node stopped, nothing left on disk.
    assert all(not node.alive() for node in handle.nodes)
    assert not handle.directory.exists()


@pytest.fixture
def client(cluster: RedisClusterHandle) -> Iterator[RedisCluster]:
    """A cluster client from the seed URL, as the services would make one."""
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    yield client
    client.close()


def test_a_started_cluster_has_three_primaries_each_with_a_replica_of_its_own(
    cluster: RedisClusterHandle,
) -> None:
    primaries = cluster.primaries()
    replicas = [cluster.replica_of(primary) for primary in primaries]

    assert len(primaries) == 3
    assert len(cluster.nodes) == 6
    assert set(primaries) | set(replicas) == set(cluster.nodes)
    assert not set(primaries) & set(replicas)
    assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}/0"


def test_keys_written_through_a_cluster_client_spread_over_every_primary(
    cluster: RedisClusterHandle, client: RedisCluster
) -> None:
    keys = [f"spread:t{n}" for n in range(30)]
    assert len({key_slot(key.encode()) for key in keys}) == 30
    for key in keys:
        client.set(key, "x")

    counts = cluster.keys_by_primary("spread:*")

    assert set(counts) == {primary.port for primary in cluster.primaries()}
    assert all(count > 0 for count in counts.values()), counts
    assert sum(counts.values()) == 30
    assert counts == Counter(cluster.node_for_key(key).port for key in keys)
    cluster.delete_matching("spread:*")


def test_after_a_failover_the_replica_serves_the_slots_and_the_old_primary_replicates_it(
    cluster: RedisClusterHandle, client: RedisCluster
) -> None:
    key = "failover:key"
    client.set(key, "before")
    primary = cluster.node_for_key(key)
    replica = cluster.replica_of(primary)

    promoted = cluster.failover(primary)

    assert promoted is replica
    assert promoted in cluster.primaries()
    assert primary not in cluster.primaries()
    assert cluster.replica_of(promoted) is primary
    assert cluster.node_for_key(key) is promoted
    assert client.get(key) == "before", "nothing written before the failover is lost"
    client.set(key, "after")  # the client made before the failover follows the slot
    assert client.get(key) == "after"
    assert promoted.client().get(key) == "after"
    cluster.delete_matching("failover:*")


def test_a_migrated_slot_moves_with_all_its_keys_and_a_client_follows_it(
    cluster: RedisClusterHandle, client: RedisCluster
) -> None:
    keys = [f"{{moving}}:key{n}" for n in range(250)]  # one slot; more than one MIGRATE batch
    for key in keys:
        client.set(key, key)
    slot = key_slot(b"moving")
    source = cluster.node_for_key(keys[0])
    target = next(node for node in cluster.primaries() if node is not source)

    assert cluster.migrate_slot(slot, target) is source

    assert cluster.node_for_key(keys[0]) is target
    assert cluster.keys_by_primary("{moving}:*") == {
        node.port: 250 if node is target else 0 for node in cluster.primaries()
    }
    assert [client.get(key) for key in keys] == keys  # the client follows MOVED
    with pytest.raises(ValueError, match="already"):
        cluster.migrate_slot(slot, target)
    cluster.delete_matching("{moving}:*")


def test_delete_matching_deletes_only_the_keys_matching(
    cluster: RedisClusterHandle, client: RedisCluster
) -> None:
    for n in range(20):
        client.set(f"drop:{n}", "x")
        client.set(f"keep:{n}", "x")

    cluster.delete_matching("drop:*")

    assert sum(cluster.keys_by_primary("drop:*").values()) == 0
    assert sum(cluster.keys_by_primary("keep:*").values()) == 20
    cluster.delete_matching("keep:*")


def test_a_missing_redis_cli_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "redis-cli" else which(name))

    with pytest.raises(FileNotFoundError, match=r"redis-cli .*apt-get install redis-tools"):
        devcluster.start_redis_cluster()


def test_fewer_than_three_primaries_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="at least 3 primaries"):
        devcluster.start_redis_cluster(primaries=2)


def test_a_failed_create_says_what_redis_cli_said_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    failing_cli = tmp_path / "redis-cli"
    failing_cli.write_text("#!/bin/sh\necho '[ERR] Node 127.0.0.1:1 is not empty.'\nexit 1\n")
    failing_cli.chmod(0o755)
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: str(failing_cli) if name == "redis-cli" else which(name)
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    with pytest.raises(RuntimeError, match=r"(?s)create failed \(exit 1\).*is not empty"):
        devcluster.start_redis_cluster()

    assert not list(tmp_path.glob("switchboard-cluster-*")), "the nodes' directory is removed"
