"""The call record: created once per call sid, with its dispatch entry."""

from __future__ import annotations

import time

import pytest
from fakeredis.aioredis import FakeRedis

from shared.keys import CALL_KEY_TTL_S, CallField, CallState, Keys
from shared.messages import CallDispatch
from shared.records import (
    CallRecord,
    attach_stream,
    create_call,
    ended_commands,
    load_call,
    now_ms,
)
from tests.support.fake_redis import stream_messages

pytestmark = pytest.mark.anyio

KEYS = Keys("t")
SID = "CAabc"


async def test_create_call_writes_record_and_dispatches(redis: FakeRedis) -> None:
    before = now_ms()
    created = await create_call(
        redis, KEYS, SID, {CallField.FROM: "+15550001", CallField.TO: "+15550002"}
    )
    assert created
    record = await load_call(redis, KEYS, SID)
    assert record is not None
    assert record.call_sid == SID
    assert record.state is CallState.DISPATCHED
    assert not record.ended
    assert record.get(CallField.FROM) == "+15550001"
    assert record.get(CallField.TO) == "+15550002"
    assert record.get(CallField.WORKER_ID) is None
    created_ms = record.get(CallField.CREATED_MS)
    assert created_ms is not None and before <= int(created_ms) <= now_ms()
    assert 0 < await redis.ttl(KEYS.call(SID)) <= CALL_KEY_TTL_S
    (message,) = await stream_messages(redis, KEYS.dispatch)
    assert isinstance(message, CallDispatch)
    assert (message.call_sid, message.reason) == (SID, "new")
    assert abs(message.sent_at - time.time()) < 5


async def test_create_call_is_once_per_sid(redis: FakeRedis) -> None:
    assert await create_call(redis, KEYS, SID, {CallField.FROM: "+1"})
    await redis.hset(KEYS.call(SID), CallField.STATE, CallState.LIVE)
    assert not await create_call(redis, KEYS, SID, {CallField.FROM: "+2"})
    record = await load_call(redis, KEYS, SID)
    assert record is not None
    assert record.get(CallField.FROM) == "+1"
    assert record.state is CallState.LIVE
    assert await redis.xlen(KEYS.dispatch) == 1


async def test_load_unknown_call(redis: FakeRedis) -> None:
    assert await load_call(redis, KEYS, "CAnone") is None


async def test_attaching_a_stream_makes_the_call_live_on_that_edge(redis: FakeRedis) -> None:
    assert await create_call(redis, KEYS, SID, {CallField.FROM: "+15550001"})
    await redis.xadd(KEYS.inbound(SID), {"m": b"in"})
    await redis.expire(KEYS.call(SID), 10)

    before = await attach_stream(redis, KEYS, SID, "edge-1", "MZ1")

    assert before is not None and before.state is CallState.DISPATCHED
    assert before.get(CallField.EDGE_ID) is None, "the record as it was before the attach"
    record = await load_call(redis, KEYS, SID)
    assert record is not None and record.state is CallState.LIVE
    assert (record.get(CallField.EDGE_ID), record.get(CallField.STREAM_SID)) == ("edge-1", "MZ1")
    assert record.get(CallField.FROM) == "+15550001"
    assert await redis.ttl(KEYS.call(SID)) > 10, "the call's keys renewed"
    assert await redis.ttl(KEYS.inbound(SID)) > 0


async def test_a_call_ended_before_its_stream_attached_stays_ended(redis: FakeRedis) -> None:
    # A worker ended the call (its session refused the format) while Twilio was connecting
    # the stream: the edge must see "ended", and must not make the record live again (a live
    # record without a lease is dispatched again, and a worker would take the call up anew).
    assert await create_call(redis, KEYS, SID, {CallField.FROM: "+15550001"})
    (end,) = ended_commands(KEYS, SID, "format_mismatch", 1_700_000_000_000, "audio/pcm")
    await redis.execute_command(*end)  # type: ignore[no-untyped-call]

    before = await attach_stream(redis, KEYS, SID, "edge-1", "MZ1")

    assert before is not None and before.ended
    record = await load_call(redis, KEYS, SID)
    assert record is not None and record.state is CallState.ENDED
    assert record.get(CallField.EDGE_ID) is None and record.get(CallField.STREAM_SID) is None


async def test_attaching_a_stream_of_an_unknown_call_creates_nothing(redis: FakeRedis) -> None:
    assert await attach_stream(redis, KEYS, "CAnone", "edge-1", "MZ1") is None
    assert await redis.exists(KEYS.call("CAnone")) == 0


def test_ended_and_unknown_states() -> None:
    assert CallRecord("CA", {"state": "ended"}).ended
    assert CallRecord("CA", {"state": "ended"}).state is CallState.ENDED
    assert CallRecord("CA", {"state": "bogus"}).state is None
    assert CallRecord("CA", {}).state is None
    assert not CallRecord("CA", {}).ended


@pytest.mark.parametrize(
    ("state", "error", "failed"),
    [
        (CallState.ENDED, "realtime session failed", True),
        (CallState.ENDED, "", False),  # the caller hung up, end_call, a cap
        (CallState.ENDED, "  ", False),
        (CallState.ENDED, None, False),
        (CallState.LIVE, "realtime session failed", False),  # not over yet
    ],
)
def test_ended_in_failure(state: CallState, error: str | None, failed: bool) -> None:
    fields: dict[str, str] = {CallField.STATE: state}
    if error is not None:
        fields[CallField.ERROR] = error
    assert CallRecord("CA1", fields).ended_in_failure is failed


def test_now_ms_is_wall_clock_milliseconds() -> None:
    assert abs(now_ms() - time.time() * 1000) < 1000
