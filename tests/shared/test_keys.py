"""Redis key names (docs/architecture.md, 'Redis data model')."""

from __future__ import annotations

import fnmatch
import zlib
from collections import Counter

import pytest
from redis.crc import key_slot

from shared.keys import (
    CALL_KEY_TTL_S,
    CLUSTER_GROUPS,
    DISPATCH_MAXLEN,
    ENDED_STREAM_TTL_S,
    INBOUND_MAXLEN,
    OUTBOUND_MAXLEN,
    WORKER_GROUP,
    CallField,
    CallState,
    Keys,
    by_hash_tag,
    hash_tag,
)

SID = "CA0123456789abcdef0123456789abcdef"


def test_default_prefix_names_match_the_design() -> None:
    keys = Keys()
    assert keys.prefix == "sb"
    assert keys.dispatch == "sb:calls:dispatch"
    assert keys.call(SID) == f"sb:call:{SID}"
    assert keys.inbound(SID) == f"sb:call:{SID}:in"
    assert keys.outbound(SID) == f"sb:call:{SID}:out"
    assert keys.lease(SID) == f"sb:call:{SID}:lease"
    assert keys.wake("worker-1") == "sb:proc:worker-1:wake"
    assert keys.alive("worker-1") == "sb:proc:worker-1:alive"
    assert WORKER_GROUP == "workers"


def test_custom_prefix_applies_to_every_key() -> None:
    keys = Keys("test42")
    names = [
        keys.dispatch,
        keys.call(SID),
        keys.inbound(SID),
        keys.outbound(SID),
        keys.lease(SID),
        keys.turns(SID),
        keys.wake("p"),
        keys.alive("p"),
    ]
    assert all(name.startswith("test42:") for name in names)
    assert all(fnmatch.fnmatchcase(name, keys.pattern()) for name in names)
    assert not fnmatch.fnmatchcase(Keys("sb").call(SID), keys.pattern())


def test_call_keys_are_record_both_streams_and_turns() -> None:
    keys = Keys("p")
    assert keys.call_keys(SID) == (
        f"p:call:{SID}",
        f"p:call:{SID}:in",
        f"p:call:{SID}:out",
        f"p:call:{SID}:turns",
    )
    assert keys.lease(SID) not in keys.call_keys(SID)


def test_keys_of_different_calls_do_not_collide() -> None:
    keys = Keys()
    a, b = "CAaaa", "CAbbb"
    all_a = {*keys.call_keys(a), keys.lease(a)}
    all_b = {*keys.call_keys(b), keys.lease(b)}
    assert len(all_a) == 5
    assert not all_a & all_b


def test_keys_are_immutable() -> None:
    keys = Keys("x")
    with pytest.raises(AttributeError):
        keys.prefix = "y"  # type: ignore[misc]


def test_enums_are_their_wire_strings() -> None:
    # StrEnum members are the strings themselves (written to Redis as they are).
    wire: list[str] = [
        CallState.DISPATCHED,
        CallState.LIVE,
        CallState.ENDED,
        CallField.IN_CURSOR,
        CallField.WORKER_ID,
    ]
    assert wire == ["dispatched", "live", "ended", "in_cursor", "worker_id"]
    assert len({f.value for f in CallField}) == len(CallField)


def test_bounds_are_sane() -> None:
    assert DISPATCH_MAXLEN > 0
    # At least 20 s of 20 ms frames buffered for a replacement worker or edge.
    assert INBOUND_MAXLEN >= 1000
    assert OUTBOUND_MAXLEN >= 1000
    assert 0 < ENDED_STREAM_TTL_S < CALL_KEY_TTL_S


# --- Redis Cluster: slot groups ------------------------------------------------------------


def test_on_a_cluster_every_key_of_a_call_shares_one_slot_and_says_its_group() -> None:
    keys = Keys("sb", clustered=True)
    group = Keys.group_of(SID)
    names = [*keys.call_keys(SID), keys.lease(SID)]
    assert keys.call(SID) == f"sb:{{{group}}}:call:{SID}"
    assert {key_slot(name.encode()) for name in names} == {key_slot(group.encode())}
    assert {hash_tag(name) for name in names} == {group}


def test_slot_groups_are_stable_and_spread_over_every_group() -> None:
    sids = [f"CA{i:032x}" for i in range(2000)]
    groups = Counter(Keys.group_of(sid) for sid in sids)
    assert len(groups) == CLUSTER_GROUPS
    assert min(groups.values()) > 2000 / CLUSTER_GROUPS / 2  # no group starved
    assert Keys.group_of(SID) == Keys.group_of(SID)  # crc32: the same in every process
    assert Keys.group_of(SID) == f"g{zlib.crc32(SID.encode()) % CLUSTER_GROUPS}"


def test_a_process_wakes_each_group_on_a_stream_in_that_groups_slot() -> None:
    keys = Keys("sb", clustered=True)
    wake = keys.wake_for("edge-1", keys.outbound(SID))
    assert wake == f"sb:{{{Keys.group_of(SID)}}}:proc:edge-1:wake"
    assert key_slot(wake.encode()) == key_slot(keys.outbound(SID).encode())


def test_on_one_redis_nothing_changes() -> None:
    keys = Keys("sb")
    assert keys.call(SID) == f"sb:call:{SID}"
    assert keys.wake_for("edge-1", keys.outbound(SID)) == keys.wake("edge-1")
    assert by_hash_tag([keys.lease(SID), keys.lease("CA2"), keys.lease("CA3")]) == [[0, 1, 2]]


def test_hash_tags_are_read_as_redis_cluster_reads_them() -> None:
    assert hash_tag("a:{g1}:b") == "g1"
    assert hash_tag("a:{}:b{g2}") is None  # an empty first tag: the whole key is hashed
    assert hash_tag("a:{g1") is None
    assert hash_tag("plain") is None
    assert by_hash_tag(["x:{g1}:a", "x:{g2}:a", "x:{g1}:b", "plain"]) == [[0, 2], [1], [3]]


def test_a_workers_alive_key_is_in_the_slot_group_of_the_calls_it_vouches_for() -> None:
    keys = Keys("sb", clustered=True)
    alive = keys.alive_for("worker-1", SID)
    assert alive == f"sb:{{{Keys.group_of(SID)}}}:proc:worker-1:alive"
    assert key_slot(alive.encode()) == key_slot(keys.lease(SID).encode())
    assert len(set(keys.alive_groups())) == CLUSTER_GROUPS
    assert Keys.group_of(SID) in keys.alive_groups()  # the worker renews the call's group
    single = Keys("sb")
    assert single.alive_for("worker-1", SID) == single.alive("worker-1") == "sb:proc:worker-1:alive"
    assert single.alive_groups() == (None,)
