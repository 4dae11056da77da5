"""The start-up check of REDIS_URL's Redis against REDIS_CLUSTER: a mismatch either way is
refused by name, anything else (a plain Redis, one not up yet) is left to the services."""

from __future__ import annotations

from shared.redis_kind import redis_mismatch, unsuitable_redis
from tests.support.ports import allocator

URL = "redis://:s3cret-pass@redis.internal:6379/0"


def test_a_plain_redis_is_accepted_without_the_setting() -> None:
    assert redis_mismatch(URL, False, {"cluster_enabled": 0}) is None
    assert redis_mismatch(URL, False, {}) is None  # a server whose INFO has no cluster section


def test_a_cluster_node_is_accepted_with_the_setting() -> None:
    assert redis_mismatch(URL, True, {"cluster_enabled": 1}) is None


def test_a_cluster_node_without_the_setting_is_refused_naming_both_without_the_password() -> None:
    refusal = redis_mismatch(URL, False, {"cluster_enabled": 1})
    assert refusal is not None
    assert refusal.startswith("REDIS_URL (redis://:***@redis.internal:6379/0) is a Redis Cluster")
    assert "REDIS_CLUSTER=true" in refusal
    assert "s3cret-pass" not in refusal


def test_the_setting_against_a_single_redis_is_refused() -> None:
    refusal = redis_mismatch(URL, True, {"cluster_enabled": 0})
    assert refusal is not None and refusal.startswith("REDIS_CLUSTER=true but REDIS_URL")
    assert "s3cret-pass" not in refusal


def test_a_cluster_url_with_a_database_is_refused_before_connecting() -> None:
    closed = allocator()  # nothing listens there: the URL alone is refused
    refusal = unsuitable_redis(f"redis://127.0.0.1:{closed}/3", cluster=True)
    assert refusal is not None and "database other than 0" in refusal


def test_a_redis_that_does_not_answer_is_left_to_the_services_retries() -> None:
    closed = allocator()  # nothing listens there
    assert unsuitable_redis(f"redis://127.0.0.1:{closed}/0", cluster=False) is None
    assert unsuitable_redis(f"redis://127.0.0.1:{closed}/0", cluster=True) is None
