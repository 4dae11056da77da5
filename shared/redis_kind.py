"""Which Redis deployments Switchboard runs on: one Redis (a primary, with replicas if you
like), not yet a Redis Cluster.

A cluster node answers every command for the slots it serves, so a process pointed at one
would start, take calls and then fail on the first command that spans slots (the frame path's
one XREAD over many call streams, the transfer script) or lands on another node (``MOVED``):
calls would break mid-way with errors that do not say why. Each service checks the Redis of
``REDIS_URL`` once at start-up instead and refuses a cluster node by name. A Redis that does not
answer yet is not refused: the services wait for it, as they always have.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from shared.config import redact_url

__all__ = ["CHECK_TIMEOUT_S", "cluster_refusal", "unsupported_redis"]

#: How long the start-up check waits for Redis before leaving it to the services' own retries.
CHECK_TIMEOUT_S = 2.0


def cluster_refusal(url: str, cluster_info: Mapping[str, object]) -> str | None:
    """The error for the Redis at ``url`` given its ``INFO cluster`` section; None if it is
    not a cluster node."""
    if str(cluster_info.get("cluster_enabled", 0)) != "1":
        return None
    return (
        f"REDIS_URL ({redact_url(url)}) is a Redis Cluster node (cluster_enabled:1). Switchboard "
        "runs on one Redis (a primary, with replicas if you like); Redis Cluster is not "
        "supported yet (docs/scaling.md). Point REDIS_URL at a Redis started without "
        "cluster-enabled."
    )


def unsupported_redis(url: str) -> str | None:
    """Why the Redis at ``url`` cannot serve Switchboard, or None (also when it does not
    answer within ``CHECK_TIMEOUT_S``: the services retry Redis on their own)."""
    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        info = client.info("cluster")
    except redis.exceptions.RedisError:
        return None  # not up yet, or INFO not allowed: nothing to tell from
    finally:
        client.close()
    return cluster_refusal(url, info)
