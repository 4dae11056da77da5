"""The doctor's verdict on the Redis of REDIS_URL, from what its INFO says."""

from __future__ import annotations

from services.doctor.checks import redis_check

URL = "redis://:s3cret-pass@redis.internal:6379/0"


def test_a_recent_single_redis_passes() -> None:
    check = redis_check(URL, False, {"redis_version": "7.2.4", "cluster_enabled": 0}, None)
    assert check.status == "pass"
    assert "version 7.2.4" in check.summary


def test_a_cluster_node_passes_with_redis_cluster_set() -> None:
    check = redis_check(URL, True, {"redis_version": "7.2.4", "cluster_enabled": 1}, None)
    assert check.status == "pass"


def test_a_cluster_node_without_redis_cluster_fails_as_the_services_would_refuse_it() -> None:
    check = redis_check(URL, False, {"redis_version": "7.2.4", "cluster_enabled": 1}, None)
    assert check.status == "fail"
    assert "is a Redis Cluster node" in check.summary and "s3cret-pass" not in check.summary
    assert "REDIS_CLUSTER" in check.summary


def test_redis_cluster_set_against_a_single_redis_fails() -> None:
    check = redis_check(URL, True, {"redis_version": "7.2.4", "cluster_enabled": 0}, None)
    assert check.status == "fail"
    assert "is not a Redis Cluster node" in check.summary


def test_an_old_redis_fails_naming_the_version_needed() -> None:
    check = redis_check(URL, False, {"redis_version": "5.0.7"}, None)
    assert check.status == "fail" and "5.0.7" in check.summary


def test_a_redis_that_does_not_answer_fails_with_the_error() -> None:
    check = redis_check(URL, False, None, "Connection refused")
    assert check.status == "fail" and "Connection refused" in check.summary
