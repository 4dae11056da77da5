"""The record rules of outbound calls (``POST /calls``): the one place that writes them.

An outbound call's record is created once Twilio has accepted the call, in state ``queued``,
and put in line for a worker at once, so the model session is warm before anyone answers.
Twilio's status callbacks then move it on (``progress``):

    queued → ringing → dispatched (answered; the stream is on its way) → live → ended
    queued/ringing/dispatched → no-answer | busy | failed | ended (canceled, or completed
                                                                     without a stream)

A call that never reaches a stream is ended by its final status; a worker pre-warming it is
told through the call's inbound stream (``CallStopped``). Callbacks may arrive late or twice:
each transition happens only from the states listed, atomically (Lua), so a late "ringing"
never moves a live call back.

``OUTBOUND_MAX_CONCURRENT`` is counted across all edges in one sorted set
(``Keys.outbound_active``): a slot per call placed, released by the call's final status, and
lapsing by itself after ``SLOT_TTL_MS`` should that callback never come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from shared.clock import Clock
from shared.keys import INBOUND_MAXLEN, CallField, CallState, Keys
from shared.messages import ENTRY_FIELD, CallAnswered, CallStopped, encode
from shared.records import CallRecord, Command, create_call

__all__ = [
    "FINAL_STATUSES",
    "MACHINE_DETECTION_TIMEOUT_S",
    "SLOT_TTL_MS",
    "ProgressResult",
    "answered_by_commands",
    "create_outbound_call",
    "decode_variables",
    "encode_variables",
    "placed_variables",
    "progress",
    "recording_commands",
    "release_slot",
    "reserve_slot",
    "take_slot_over",
]

#: MachineDetectionTimeout asked of Twilio (seconds): past it, Twilio's verdict is "unknown".
MACHINE_DETECTION_TIMEOUT_S: Final = 30
#: A slot not released lapses after this long: Twilio's longest call (4 h) plus its ringing.
SLOT_TTL_MS: Final = (4 * 3600 + 600) * 1000
#: Twilio's CallStatus values after which nothing more happens to the call.
FINAL_STATUSES: Final = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})
_NOT_CONNECTED: Final = (CallState.QUEUED, CallState.RINGING, CallState.DISPATCHED)
# CallStatus → (state to move to, states it may move from).
_TRANSITIONS: Final[dict[str, tuple[CallState, tuple[CallState, ...]]]] = {
    "ringing": (CallState.RINGING, (CallState.QUEUED,)),
    "in-progress": (CallState.DISPATCHED, (CallState.QUEUED, CallState.RINGING)),
    "no-answer": (CallState.NO_ANSWER, _NOT_CONNECTED),
    "busy": (CallState.BUSY, _NOT_CONNECTED),
    "failed": (CallState.FAILED, _NOT_CONNECTED),
    "canceled": (CallState.ENDED, _NOT_CONNECTED),
    "completed": (CallState.ENDED, _NOT_CONNECTED),
}
# Twilio's CallStatus → the record field holding when it was reported.
_WHEN: Final = {
    "ringing": CallField.RINGING_MS,
    "in-progress": CallField.ANSWERED_MS,
    **dict.fromkeys(FINAL_STATUSES, CallField.COMPLETED_MS),
}

# KEYS: record, inbound stream. ARGV: new state ('' for none), allowed states (comma list),
# ended at (ms; '' when the status is not final), inbound maxlen, CallStopped entry, end
# reason, then field/value pairs. Returns 1 when the state moved, 0 when not, -1 when there is
# no record. A final move says when and why the call ended, and tells a worker pre-warming the
# call that nobody will come.
_PROGRESS = f"""
local state = redis.call('HGET', KEYS[1], '{CallField.STATE}')
if not state then return -1 end
local moved = 0
if ARGV[1] ~= '' and string.find(',' .. ARGV[2] .. ',', ',' .. state .. ',', 1, true) then
  redis.call('HSET', KEYS[1], '{CallField.STATE}', ARGV[1])
  moved = 1
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], '{CallField.ENDED_MS}', ARGV[3], '{CallField.END_REASON}', ARGV[6])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', '{ENTRY_FIELD.decode()}', ARGV[5])
  end
end
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
return moved
"""

# KEYS: the slot set. ARGV: now (ms), limit, member, lapses at (ms). 1: reserved; 0: full.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
return 1
"""


def encode_variables(variables: Mapping[str, str]) -> str:
    return orjson.dumps(dict(variables)).decode()


def decode_variables(raw: str | None) -> dict[str, str]:
    """The variables stored with a call; anything unreadable counts as none."""
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def placed_variables(record: CallRecord) -> dict[str, str]:
    return decode_variables(record.get(CallField.VARIABLES))


async def reserve_slot(
    client: aioredis.Redis, keys: Keys, member: str, limit: int, clock: Clock
) -> bool:
    """Take one of the ``limit`` outbound slots for ``member``; False when all are taken."""
    now = clock.wall_ms()
    reserved: Any = await client.eval(
        _RESERVE, 1, keys.outbound_active, now, limit, member, now + SLOT_TTL_MS
    )
    return bool(reserved)


async def release_slot(client: aioredis.Redis, keys: Keys, member: str) -> None:
    await client.zrem(keys.outbound_active, member)


# KEYS: the slot set. ARGV: the placement's name, the call sid. The slot keeps its lapse time.
_TAKE_OVER = """
local lapses = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lapses then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], lapses, ARGV[2])
return 1
"""


async def take_slot_over(client: aioredis.Redis, keys: Keys, placement: str, call_sid: str) -> None:
    """The slot taken while placing the call now belongs to the call Twilio created (its
    final status callback releases it by call sid)."""
    await client.eval(_TAKE_OVER, 1, keys.outbound_active, placement, call_sid)


async def create_outbound_call(
    client: aioredis.Redis,
    keys: Keys,
    call_sid: str,
    fields: dict[CallField, str],
    clock: Clock,
) -> bool:
    """The record of a call Twilio accepted, ``queued`` and in line for a worker (who
    pre-warms its session while the phone rings). False if it exists already."""
    return await create_call(client, keys, call_sid, fields, clock, state=CallState.QUEUED)


async def progress(
    client: aioredis.Redis,
    keys: Keys,
    call_sid: str,
    status: str,
    fields: Mapping[CallField, str | int],
    clock: Clock,
) -> ProgressResult:
    """Twilio reported ``status`` (CallStatus) for the call: the record moves on if it may,
    and takes ``fields`` (Twilio's error code, the duration) and the time of the report."""
    target, allowed = _TRANSITIONS.get(status, (None, ()))
    now = clock.wall_ms()
    values: dict[CallField, str | int] = {CallField.CALL_STATUS: status, **fields}
    when = _WHEN.get(status)
    if when is not None:
        values[when] = now
    pairs = [v for k, x in values.items() for v in (str(k), x)]
    moved: Any = await client.eval(
        _PROGRESS,
        2,
        keys.call(call_sid),
        keys.inbound(call_sid),
        target or "",
        ",".join(allowed),
        now if status in FINAL_STATUSES else "",
        INBOUND_MAXLEN,
        encode(CallStopped(status)),
        status,
        *pairs,
    )
    return ProgressResult(found=moved != -1, state=target if moved == 1 else None)


@dataclass(frozen=True, slots=True)
class ProgressResult:
    """What a status callback did: the record was ``found``; its state moved to ``state``
    (None: it did not move)."""

    found: bool
    state: CallState | None

    @property
    def moved(self) -> bool:
        return self.state is not None


# KEYS: record, inbound stream. ARGV: inbound maxlen, the entry ('' for none), then
# field/value pairs. A callback about a call whose record is gone (expired) writes nothing:
# an HSET would bring back a record with no TTL.
_UPDATE_IF_PRESENT = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', '{ENTRY_FIELD.decode()}', ARGV[2])
end
return 1
"""


def _update_if_present(
    keys: Keys, call_sid: str, fields: Mapping[CallField, object], entry: bytes | str = ""
) -> Command:
    pairs = [v for k, x in fields.items() for v in (str(k), x)]
    return (
        "EVAL",
        _UPDATE_IF_PRESENT,
        2,
        keys.call(call_sid),
        keys.inbound(call_sid),
        INBOUND_MAXLEN,
        entry,
        *pairs,
    )


def answered_by_commands(
    keys: Keys, call_sid: str, answered_by: str, detection_ms: int
) -> list[Command]:
    """Twilio's machine-detection verdict: on the record, and to the worker holding the
    model back until it knows (through the call's inbound stream)."""
    fields = {CallField.ANSWERED_BY: answered_by, CallField.AMD_MS: detection_ms}
    return [
        _update_if_present(keys, call_sid, fields, encode(CallAnswered(answered_by, detection_ms)))
    ]


def recording_commands(
    keys: Keys, call_sid: str, fields: Mapping[CallField, object]
) -> list[Command]:
    """Twilio's recording of the call: its sid, URL, status and duration."""
    return [_update_if_present(keys, call_sid, fields)]
