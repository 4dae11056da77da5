"""The call record's transfer transitions (shared/records.py), applied to fakeredis:

live → transferred → ended              (the person answered, or the caller left)
       transferred → dispatched → ...   (the person did not answer: back to the AI)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from shared.keys import CALL_KEY_TTL_S, CallField, CallState, Keys
from shared.messages import ENTRY_FIELD, CallDispatch, decode
from shared.records import (
    CallRecord,
    Command,
    Turn,
    create_call,
    ended_commands,
    expire_streams_commands,
    live_commands,
    load_call,
    load_turns,
    return_from_transfer,
    transfer_commands,
    transfer_done_commands,
    transferred_commands,
    turn_commands,
)
from shared.transfer import failure_notice

pytestmark = pytest.mark.anyio

KEYS = Keys("t")
SID = "CA0123456789abcdef0123456789abcdef"
WALL = 1_700_000_000.25


class FixedClock:
    def monotonic(self) -> float:
        return 5.0

    def wall(self) -> float:
        return WALL

    def wall_ms(self) -> int:
        return int(WALL * 1000)


CLOCK = FixedClock()
NOTICE = Turn("system", failure_notice("billing", "no-answer"), 1_700_000_001_000)


@pytest.fixture
async def client() -> AsyncIterator[FakeRedis]:
    redis = FakeRedis(server=fakeredis.FakeServer())
    yield redis
    await redis.aclose()


async def _apply(client: FakeRedis, commands: Sequence[Command]) -> None:
    for command in commands:
        await client.execute_command(*command)  # type: ignore[no-untyped-call]


async def _record(client: FakeRedis) -> CallRecord:
    record = await load_call(client, KEYS, SID)
    assert record is not None
    return record


async def _dispatches(client: FakeRedis) -> list[CallDispatch]:
    messages = []
    entries: Any = await client.xrange(KEYS.dispatch)
    for _, fields in entries:
        message = decode(fields[ENTRY_FIELD])
        assert isinstance(message, CallDispatch)
        messages.append(message)
    return messages


async def _live_call(client: FakeRedis) -> None:
    """A call answered by the AI: created (dispatched), its stream on an edge, two turns."""
    fields = {CallField.FROM: "+15005550001", CallField.TO: "+15005550006"}
    assert await create_call(client, KEYS, SID, fields, CLOCK)
    await _apply(client, live_commands(KEYS, SID, "edge-1", "MZ1"))
    await client.xadd(KEYS.inbound(SID), {"m": b"in"})
    await client.xadd(KEYS.outbound(SID), {"m": b"out"})
    await _apply(client, turn_commands(KEYS, SID, Turn("user", "A person, please.", 1)))
    await _apply(client, turn_commands(KEYS, SID, Turn("assistant", "Connecting you.", 2)))


async def _transferred_call(client: FakeRedis, warm: bool = True) -> None:
    """The model transferred the call; its stream closed (the audio set to linger briefly)."""
    await _live_call(client)
    await _apply(
        client,
        transfer_commands(KEYS, SID, "billing", "+15005550007", "Ada wants a refund.", warm),
    )
    await _apply(client, transferred_commands(KEYS, SID, 1_700_000_000_500))
    await _apply(client, expire_streams_commands(KEYS, SID))


Snapshot = tuple[tuple[object, ...], list[int]]


async def _snapshot(client: FakeRedis) -> Snapshot:
    """What the call's keys hold, and their TTLs (seconds)."""
    keys = (KEYS.call(SID), KEYS.turns(SID), KEYS.inbound(SID), KEYS.outbound(SID))
    contents = (
        await client.hgetall(KEYS.call(SID)),
        await client.lrange(KEYS.turns(SID), 0, -1),
        await client.xrange(KEYS.dispatch),
        sorted(await client.keys("*")),
    )
    return contents, [await client.ttl(key) for key in keys]


def _assert_unchanged(before: Snapshot, after: Snapshot) -> None:
    assert after[0] == before[0]
    # A TTL only runs down (a second may tick between the snapshots); none was renewed.
    assert all(0 <= was - now <= 1 for was, now in zip(before[1], after[1], strict=True)), (
        before[1],
        after[1],
    )


# --- the commands -----------------------------------------------------------------------------


async def test_transfer_commands_record_where_to_and_leave_the_state(client: FakeRedis) -> None:
    await _live_call(client)
    await _apply(
        client,
        transfer_commands(KEYS, SID, "sales", "sip:sales@pbx.example.com", "Needs a quote.", True),
    )
    record = await _record(client)
    assert record.get(CallField.TRANSFER_TARGET) == "sales"
    assert record.get(CallField.TRANSFERRED_TO) == "sip:sales@pbx.example.com"
    assert record.get(CallField.TRANSFER_SUMMARY) == "Needs a quote."
    assert record.get(CallField.TRANSFER_WARM) == "1"
    # The model asked; the AI still has the call until its handoff sentence is heard.
    assert (record.state, record.with_ai, record.ended) == (CallState.LIVE, True, False)


async def test_a_cold_transfer_is_warm_0(client: FakeRedis) -> None:
    await _live_call(client)
    await _apply(client, transfer_commands(KEYS, SID, "billing", "+15005550007", "", False))
    record = await _record(client)
    assert record.get(CallField.TRANSFER_WARM) == "0"
    assert record.get(CallField.TRANSFER_SUMMARY) == ""


async def test_transferred_commands_take_the_call_from_the_ai(client: FakeRedis) -> None:
    await _transferred_call(client)
    record = await _record(client)
    assert record.state is CallState.TRANSFERRED
    assert (record.with_ai, record.ended) == (False, False)
    assert record.get(CallField.ENDED_MS) == "1700000000500"
    assert record.get(CallField.END_REASON) == "transfer"
    # Where to is still there for the resume route's <Dial>.
    assert record.get(CallField.TRANSFERRED_TO) == "+15005550007"
    assert record.get(CallField.TRANSFER_STATUS) is None


@pytest.mark.parametrize("status", ["completed", "answered", "busy"])
async def test_transfer_done_commands_end_the_call(client: FakeRedis, status: str) -> None:
    await _transferred_call(client)
    await _apply(client, transfer_done_commands(KEYS, SID, status))
    record = await _record(client)
    assert (record.state, record.ended, record.with_ai) == (CallState.ENDED, True, False)
    assert record.get(CallField.TRANSFER_STATUS) == status
    assert record.ended_in_failure is False  # a transfer is a normal end


def test_with_ai_for_every_state() -> None:
    def with_ai(state: str) -> bool:
        return CallRecord(SID, {"state": state}).with_ai

    assert with_ai("dispatched") and with_ai("live")
    assert not with_ai("transferred") and not with_ai("ended")
    assert not with_ai("") and not with_ai("bogus")
    assert CallRecord(SID, {}).with_ai is False


# --- back from a transfer that did not go through ---------------------------------------------


async def test_return_from_transfer_puts_the_call_back_in_line(client: FakeRedis) -> None:
    await _transferred_call(client)
    assert await return_from_transfer(client, KEYS, SID, "no-answer", NOTICE, CLOCK) is True

    record = await _record(client)
    assert record.state is CallState.DISPATCHED
    assert (record.with_ai, record.ended) == (True, False)
    assert record.get(CallField.TRANSFER_STATUS) == "no-answer"
    assert record.get(CallField.ENDED_MS) is None
    assert record.get(CallField.END_REASON) is None
    # The rest of the record is kept (who called, where the transfer went).
    assert record.get(CallField.FROM) == "+15005550001"
    assert record.get(CallField.TRANSFERRED_TO) == "+15005550007"

    assert await load_turns(client, KEYS, SID) == [
        Turn("user", "A person, please.", 1),
        Turn("assistant", "Connecting you.", 2),
        Turn(
            "system",
            "The transfer to billing did not go through: nobody answered. The caller is back on "
            "the line with you.",
            1_700_000_001_000,
        ),
    ]

    new, back = await _dispatches(client)
    assert (new.call_sid, new.reason) == (SID, "new")
    assert back == CallDispatch(SID, CallDispatch.TRANSFER_FAILED, WALL)
    assert CallDispatch.TRANSFER_FAILED == "transfer_failed"


async def test_return_from_transfer_keeps_the_calls_keys_like_a_live_calls(
    client: FakeRedis,
) -> None:
    await _transferred_call(client)
    await client.expire(KEYS.call(SID), 30)
    await client.expire(KEYS.turns(SID), 30)
    assert 0 < await client.ttl(KEYS.inbound(SID)) <= 60  # lingering since the stream closed
    assert await return_from_transfer(client, KEYS, SID, "busy", NOTICE, CLOCK)
    for key in (KEYS.call(SID), KEYS.turns(SID), KEYS.inbound(SID), KEYS.outbound(SID)):
        assert CALL_KEY_TTL_S - 2 <= await client.ttl(key) <= CALL_KEY_TTL_S, key


async def test_return_from_transfer_without_audio_streams_or_turns(client: FakeRedis) -> None:
    await client.hset(KEYS.call(SID), mapping={"state": "transferred", "ended_ms": "5"})
    assert await return_from_transfer(client, KEYS, SID, "failed", NOTICE, CLOCK)
    # The streams that do not exist are not created; the turns are, with the notice.
    assert await client.exists(KEYS.inbound(SID), KEYS.outbound(SID)) == 0
    assert await load_turns(client, KEYS, SID) == [NOTICE]
    for key in (KEYS.turns(SID), KEYS.call(SID)):
        assert CALL_KEY_TTL_S - 2 <= await client.ttl(key) <= CALL_KEY_TTL_S, key
    assert [m.reason for m in await _dispatches(client)] == ["transfer_failed"]


async def test_return_from_transfer_happens_once(client: FakeRedis) -> None:
    await _transferred_call(client)
    assert await return_from_transfer(client, KEYS, SID, "no-answer", NOTICE, CLOCK)
    before = await _snapshot(client)
    # Twilio retries the action request: nothing more happens.
    later = Turn("system", "again", 9)
    assert await return_from_transfer(client, KEYS, SID, "busy", later, CLOCK) is False
    _assert_unchanged(before, await _snapshot(client))
    assert len(await _dispatches(client)) == 2  # "new", then one "transfer_failed"
    assert (await _record(client)).get(CallField.TRANSFER_STATUS) == "no-answer"


@pytest.mark.parametrize("state", ["live", "dispatched", "ended"])
async def test_return_from_transfer_only_from_transferred(client: FakeRedis, state: str) -> None:
    await _transferred_call(client)
    if state == "ended":
        await _apply(client, transfer_done_commands(KEYS, SID, "completed"))
    else:
        await client.hset(KEYS.call(SID), "state", state)
    before = await _snapshot(client)
    assert await return_from_transfer(client, KEYS, SID, "no-answer", NOTICE, CLOCK) is False
    _assert_unchanged(before, await _snapshot(client))


async def test_return_from_transfer_of_an_ended_call_changes_nothing(client: FakeRedis) -> None:
    await _live_call(client)
    await _apply(client, ended_commands(KEYS, SID, "caller", 123))
    before = await _snapshot(client)
    assert await return_from_transfer(client, KEYS, SID, "no-answer", NOTICE, CLOCK) is False
    _assert_unchanged(before, await _snapshot(client))
    assert (await _record(client)).ended


async def test_return_from_transfer_of_an_unknown_call_creates_nothing(client: FakeRedis) -> None:
    assert await return_from_transfer(client, KEYS, "CAnone", "no-answer", NOTICE, CLOCK) is False
    assert await client.keys("*") == []


async def test_return_from_transfer_reads_both_audio_streams_from_their_ends(
    client: FakeRedis,
) -> None:
    """What the streams hold belongs to the stream before the transfer (the worker's Hangup,
    the caller's last marks): the new stream and the new worker start after it."""
    await _transferred_call(client)
    last_in: Any = await client.xadd(KEYS.inbound(SID), {"m": b"last mark"})
    last_out: Any = await client.xadd(KEYS.outbound(SID), {"m": b"hangup"})
    await _apply(client, [("HSET", KEYS.call(SID), "in_cursor", "0-0", "out_cursor", "0-0")])
    assert await return_from_transfer(client, KEYS, SID, "no-answer", NOTICE, CLOCK)
    record = await _record(client)
    assert record.get(CallField.IN_CURSOR) == last_in.decode()
    assert record.get(CallField.OUT_CURSOR) == last_out.decode()
