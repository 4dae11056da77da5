"""The record rules of outbound calls: Twilio's status callbacks move a record only forward
(and only once), a call never answered ends with its status and tells a pre-warmed worker,
the concurrency slots are shared and released, callbacks about expired calls write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from shared.keys import CallField, CallState, Keys
from shared.messages import ENTRY_FIELD, CallAnswered, CallDispatch, CallStopped, decode
from shared.outbound_records import (
    answered_by_commands,
    create_outbound_call,
    decode_variables,
    encode_variables,
    progress,
    recording_commands,
    release_slot,
    reserve_slot,
    take_slot_over,
)
from shared.records import Command, load_call
from tests.support.clock import ManualClock

pytestmark = pytest.mark.anyio

KEYS = Keys("t")
SID = "CA" + "1" * 32
CLOCK = ManualClock()


@pytest.fixture
async def client() -> AsyncIterator[FakeRedis]:
    redis = FakeRedis(server=fakeredis.FakeServer())
    yield redis
    await redis.aclose()


async def _apply(client: FakeRedis, commands: Sequence[Command]) -> None:
    for command in commands:
        await client.execute_command(*command)  # type: ignore[no-untyped-call]


async def _state(client: FakeRedis) -> str | None:
    record = await load_call(client, KEYS, SID)
    return None if record is None else record.get(CallField.STATE)


async def _inbound(client: FakeRedis) -> list[Any]:
    entries: Any = await client.xrange(KEYS.inbound(SID))
    return [decode(fields[ENTRY_FIELD]) for _, fields in entries]


async def _placed(client: FakeRedis) -> None:
    fields = {CallField.DIRECTION: "outbound-api", CallField.AGENT: "support"}
    assert await create_outbound_call(client, KEYS, SID, fields, CLOCK)


async def test_a_placed_call_is_queued_and_dispatched_at_once(client: FakeRedis) -> None:
    await _placed(client)
    assert await _state(client) == CallState.QUEUED
    record = await load_call(client, KEYS, SID)
    assert record is not None and record.with_ai and record.outbound and not record.ended
    entries: Any = await client.xrange(KEYS.dispatch)
    dispatch = decode(entries[0][1][ENTRY_FIELD])
    assert isinstance(dispatch, CallDispatch) and dispatch.call_sid == SID
    fields2 = {CallField.AGENT: "other"}
    assert not await create_outbound_call(client, KEYS, SID, fields2, CLOCK)  # once per sid


async def test_progress_moves_forward_only(client: FakeRedis) -> None:
    await _placed(client)
    ringing = await progress(client, KEYS, SID, "ringing", {}, CLOCK)
    assert (ringing.found, ringing.moved, ringing.state) == (True, True, CallState.RINGING)
    answered = await progress(client, KEYS, SID, "in-progress", {}, CLOCK)
    assert answered.state is CallState.DISPATCHED
    # The stream attached (the edge's live_commands), then a late "ringing" arrives.
    await client.hset(KEYS.call(SID), CallField.STATE, CallState.LIVE)
    late = await progress(client, KEYS, SID, "ringing", {}, CLOCK)
    assert not late.moved and await _state(client) == CallState.LIVE
    # "completed" of a call that had its stream: the worker's end rules, not the callback.
    done = await progress(client, KEYS, SID, "completed", {CallField.CALL_DURATION: "42"}, CLOCK)
    assert not done.moved and await _state(client) == CallState.LIVE
    record = await load_call(client, KEYS, SID)
    assert record is not None
    assert record.get(CallField.CALL_STATUS) == "completed"
    assert record.get(CallField.CALL_DURATION) == "42"
    assert record.get(CallField.RINGING_MS) and record.get(CallField.COMPLETED_MS)
    assert await _inbound(client) == []  # nobody needs telling


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("no-answer", CallState.NO_ANSWER),
        ("busy", CallState.BUSY),
        ("failed", CallState.FAILED),
        ("canceled", CallState.ENDED),
    ],
)
async def test_a_call_never_answered_ends_with_its_status_and_the_worker_is_told(
    client: FakeRedis, status: str, state: CallState
) -> None:
    await _placed(client)
    await progress(client, KEYS, SID, "ringing", {}, CLOCK)
    fields = {CallField.TWILIO_ERROR: "31005"} if status == "failed" else {}
    result = await progress(client, KEYS, SID, status, fields, CLOCK)
    assert result.moved and result.state is state
    record = await load_call(client, KEYS, SID)
    assert record is not None and record.ended and not record.with_ai
    assert record.get(CallField.END_REASON) == status
    assert record.get(CallField.ENDED_MS)
    assert await _inbound(client) == [CallStopped(status)]
    again = await progress(client, KEYS, SID, status, fields, CLOCK)  # Twilio retried it
    assert not again.moved and await _inbound(client) == [CallStopped(status)]


async def test_a_callback_about_an_unknown_call_writes_nothing(client: FakeRedis) -> None:
    result = await progress(client, KEYS, SID, "completed", {}, CLOCK)
    assert not result.found
    await _apply(client, answered_by_commands(KEYS, SID, "human", 1800))
    await _apply(client, recording_commands(KEYS, SID, {CallField.RECORDING_SID: "RE1"}))
    assert await client.keys("*") == []


async def test_the_verdict_reaches_the_record_and_the_worker(client: FakeRedis) -> None:
    await _placed(client)
    await _apply(client, answered_by_commands(KEYS, SID, "machine_end_beep", 7400))
    record = await load_call(client, KEYS, SID)
    assert record is not None
    assert record.get(CallField.ANSWERED_BY) == "machine_end_beep"
    assert record.get(CallField.AMD_MS) == "7400"
    assert await _inbound(client) == [CallAnswered("machine_end_beep", 7400)]


async def test_slots_are_shared_taken_over_and_released(client: FakeRedis) -> None:
    assert await reserve_slot(client, KEYS, "placing-a", 2, CLOCK)
    assert await reserve_slot(client, KEYS, "placing-b", 2, CLOCK)
    assert not await reserve_slot(client, KEYS, "placing-c", 2, CLOCK)  # a third: refused
    await take_slot_over(client, KEYS, "placing-a", SID)
    assert await client.zscore(KEYS.outbound_active, SID) is not None
    assert not await reserve_slot(client, KEYS, "placing-c", 2, CLOCK)
    await release_slot(client, KEYS, SID)  # the call's final status
    assert await reserve_slot(client, KEYS, "placing-c", 2, CLOCK)


async def test_a_slot_never_released_lapses(client: FakeRedis) -> None:
    clock = ManualClock()
    assert await reserve_slot(client, KEYS, "placing-a", 1, clock)
    assert not await reserve_slot(client, KEYS, "placing-b", 1, clock)
    clock.wall_offset_s += 5 * 3600  # past Twilio's longest call
    assert await reserve_slot(client, KEYS, "placing-b", 1, clock)


def test_variables_round_trip_and_bad_ones_are_none() -> None:
    assert decode_variables(encode_variables({"name": "Ada Ł"})) == {"name": "Ada Ł"}
    assert decode_variables("not json") == {} and decode_variables('["x"]') == {}
    assert decode_variables(None) == {}
