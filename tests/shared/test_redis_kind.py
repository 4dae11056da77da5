"""The start-up check of REDIS_URL's Redis: a cluster node is refused by name, anything else
(a plain Redis, one not up yet) is left to the services."""

from __future__ import annotations

from shared.redis_kind import cluster_refusal, unsupported_redis
from tests.support.ports import allocator

URL = "redis://:s3cret-pass@redis.internal:6379/0"


def test_a_plain_redis_is_accepted() -> None:
    assert cluster_refusal(URL, {"cluster_enabled": 0}) is None
    assert cluster_refusal(URL, {}) is None  # a server whose INFO has no cluster section


def test_a_cluster_node_is_refused_naming_the_variable_without_the_password() -> None:
    refusal = cluster_refusal(URL, {"cluster_enabled": 1})
    assert refusal is not None
    assert refusal.startswith("REDIS_URL (redis://:***@redis.internal:6379/0) is a Redis Cluster")
    assert "s3cret-pass" not in refusal


def test_a_redis_that_does_not_answer_is_left_to_the_services_retries() -> None:
    closed = allocator()  # nothing listens there
    assert unsupported_redis(f"redis://127.0.0.1:{closed}/0") is None
