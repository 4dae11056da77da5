"""Whether the Redis of ``REDIS_URL`` is the kind ``REDIS_CLUSTER`` says: one Redis, or a node
of a Redis Cluster.

A mismatch either way would start, take calls and fail them mid-way: a single-Redis process on
a cluster node meets ``MOVED`` and cross-slot errors on its first multi-call read; a cluster
process on a plain Redis cannot read a slot map. Each service checks once at start-up instead
and refuses the mismatch by name. A Redis that does not answer yet is not refused: the
services wait for it, as they always have.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.connection import parse_url

from shared.config import redact_url

__all__ = ["CHECK_TIMEOUT_S", "redis_mismatch", "unsuitable_redis"]

#: How long the start-up check waits for Redis before leaving it to the services' own retries.
CHECK_TIMEOUT_S = 2.0


def redis_mismatch(url: str, cluster: bool, cluster_info: Mapping[str, object]) -> str | None:
    """The error for the Redis at ``url`` given its ``INFO cluster`` section and the
    ``REDIS_CLUSTER`` setting; None when they agree."""
    is_node = str(cluster_info.get("cluster_enabled", 0)) == "1"
    where = redact_url(url)
    if is_node and not cluster:
        return (
            f"REDIS_URL ({where}) is a Redis Cluster node (cluster_enabled:1) but "
            "REDIS_CLUSTER is not set. Set REDIS_CLUSTER=true on every edge and worker "
            "(docs/scaling.md), or point REDIS_URL at a Redis started without cluster-enabled."
        )
    if cluster and not is_node:
        return (
            f"REDIS_CLUSTER=true but REDIS_URL ({where}) is not a Redis Cluster node "
            "(cluster_enabled:0). Point REDIS_URL at a node of the cluster, or unset "
            "REDIS_CLUSTER for a single Redis."
        )
    return None


def _cluster_database(url: str, cluster: bool) -> str | None:
    if cluster and int(parse_url(url).get("db", 0) or 0) != 0:  # type: ignore[no-untyped-call]
        return (
            f"REDIS_URL ({redact_url(url)}) selects a database other than 0, which a Redis "
            "Cluster does not have: end the URL with /0 or nothing"
        )
    return None


def unsuitable_redis(url: str, cluster: bool) -> str | None:
    """Why the Redis at ``url`` cannot serve Switchboard with ``REDIS_CLUSTER`` as
    ``cluster`` says, or None (also when it does not answer within ``CHECK_TIMEOUT_S``: the
    services retry Redis on their own)."""
    if (problem := _cluster_database(url, cluster)) is not None:
        return problem
    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        info = client.info("cluster")
    except redis.exceptions.RedisError:
        return None  # not up yet, or INFO not allowed: nothing to tell from
    finally:
        client.close()
    return redis_mismatch(url, cluster, info)
