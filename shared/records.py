"""The call record (``{prefix}:call:{sid}`` hash), read and written by edges and workers, and
the conversation turns of a call (``{prefix}:call:{sid}:turns`` list), written by workers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.keys import (
    CALL_KEY_TTL_S,
    DISPATCH_MAXLEN,
    ENDED_STREAM_TTL_S,
    FINAL_STATES,
    RECENT_CALLS_MAX,
    TURNS_MAX,
    CallField,
    CallState,
    Keys,
)
from shared.messages import ENTRY_FIELD, CallDispatch, encode

__all__ = [
    "SUMMARY_COUNTERS",
    "TURN_ROLES",
    "CallRecord",
    "Turn",
    "attach_stream",
    "count_command",
    "create_call",
    "detached_commands",
    "dispatch_command",
    "edge_counts_command",
    "end_of_call_commands",
    "ended_commands",
    "expire_streams_commands",
    "live_commands",
    "refresh_commands",
    "return_from_transfer",
    "transfer_commands",
    "transfer_done_commands",
    "transferred_commands",
    "set_fields_command",
    "worker_fields_commands",
    "decode_turn",
    "encode_turn",
    "load_call",
    "load_turns",
    "now_ms",
    "turn_commands",
    "turns_rewrite_commands",
]

# "system": notes the model is given between turns (a transfer that did not go through).
TURN_ROLES = ("user", "assistant", "system")


def now_ms() -> int:
    """Milliseconds since the epoch, for tests and scripts; the services read their clock."""
    return SYSTEM_CLOCK.wall_ms()


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_sid: str
    fields: dict[str, str]

    @property
    def state(self) -> CallState | None:
        try:
            return CallState(self.fields.get(CallField.STATE, ""))
        except ValueError:
            return None

    @property
    def ended(self) -> bool:
        """Over for good: ended, or an outbound call never answered (no-answer, busy, failed)."""
        return self.state in FINAL_STATES

    @property
    def with_ai(self) -> bool:
        """The call is the AI's to serve: placed and ringing (a pre-warmed outbound call),
        dispatched or live; not transferred, not over."""
        return self.state in _WITH_AI

    @property
    def outbound(self) -> bool:
        return self.fields.get(CallField.DIRECTION, "").startswith("outbound")

    @property
    def ended_in_failure(self) -> bool:
        """Ended because the call could not go on: the worker writes why into ``error``
        before it hangs up; normal ends (caller, ``end_call``, caps) leave it empty."""
        return self.ended and bool(self.fields.get(CallField.ERROR, "").strip())

    def get(self, field: CallField) -> str | None:
        return self.fields.get(field)

    @classmethod
    def from_hash(cls, call_sid: str, raw: dict[bytes, bytes]) -> CallRecord | None:
        """The record from its ``HGETALL`` reply; None when empty (no such call, or expired)."""
        if not raw:
            return None
        return cls(call_sid, {k.decode(): v.decode() for k, v in raw.items()})


_WITH_AI: Final = frozenset(
    {CallState.QUEUED, CallState.RINGING, CallState.DISPATCHED, CallState.LIVE}
)


async def load_call(client: aioredis.Redis, keys: Keys, call_sid: str) -> CallRecord | None:
    """The call's record, or None when no such call exists (never posted, or expired)."""
    raw: dict[Any, Any] = await client.hgetall(keys.call(call_sid))
    return CallRecord.from_hash(call_sid, raw)


async def create_call(
    client: aioredis.Redis,
    keys: Keys,
    call_sid: str,
    fields: dict[CallField, str],
    clock: Clock = SYSTEM_CLOCK,
    state: CallState = CallState.DISPATCHED,
) -> bool:
    """Create the record (in ``state``: ``queued`` for an outbound call, whose rules are in
    ``outbound_records.py``) and put the call on the dispatch stream, once per call sid.

    Returns False (and changes nothing) when the record exists already: Twilio retried the
    webhook, or it is a resume, or the answer of an outbound call.
    """
    key = keys.call(call_sid)
    if not await client.hsetnx(key, CallField.STATE, state):
        return False
    pipe = client.pipeline(transaction=False)
    mapping: dict[Any, Any] = {str(name): value for name, value in fields.items()}
    created = clock.wall_ms()
    mapping[CallField.CREATED_MS.value] = created
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, CALL_KEY_TTL_S)
    # The index the read API lists calls from; bounded, newest kept.
    pipe.zadd(keys.recent_calls, {call_sid: created})
    pipe.zremrangebyrank(keys.recent_calls, 0, -RECENT_CALLS_MAX - 1)
    pipe.execute_command(*dispatch_command(keys, call_sid, "new", clock))
    await pipe.execute()
    return True


def dispatch_command(keys: Keys, call_sid: str, reason: str, clock: Clock) -> Command:
    """Put the call in line for a worker (``reason``: ``CallDispatch``'s, e.g. ``new``,
    ``lease-lost``, ``handoff``)."""
    entry = encode(CallDispatch(call_sid, reason, clock.wall()))
    return ("XADD", keys.dispatch, "MAXLEN", "~", DISPATCH_MAXLEN, "*", ENTRY_FIELD, entry)


# --- the record's transitions ----------------------------------------------------------------
#
#   (queued → ringing →) dispatched → live (⇄ detached) → ended     (outbound: outbound_records)
#                live → transferred → ended            (the person answered, or the caller left)
#                       transferred → dispatched → …   (the person did not answer: back to the AI)
#
# Every write to a call record goes through these, from the edge and from the worker. Each
# returns Redis commands for a ``BatchWriter`` (pipelined, never waiting), except the ones whose
# caller's answer depends on them: ``create_call`` above (the webhook's), ``attach_stream``
# (the media socket's) and ``return_from_transfer`` (the resume route's), which wait.

Command = tuple[object, ...]

#: The counters of the end-of-call summary (HINCRBY, so a call taken over keeps counting).
SUMMARY_COUNTERS: tuple[CallField, ...] = (
    CallField.BARGE_INS,
    CallField.ERRORS,
    CallField.RECONNECTS,
    CallField.TOKENS_INPUT_TEXT,
    CallField.TOKENS_INPUT_AUDIO,
    CallField.TOKENS_OUTPUT_TEXT,
    CallField.TOKENS_OUTPUT_AUDIO,
)


def set_fields_command(keys: Keys, call_sid: str, fields: Mapping[CallField, object]) -> Command:
    """Set some of the record's fields (what a process owns of it: a cursor, a verdict)."""
    return ("HSET", keys.call(call_sid), *(v for k, x in fields.items() for v in (str(k), x)))


_hset = set_fields_command


def count_command(keys: Keys, call_sid: str, field: CallField, amount: int = 1) -> Command:
    """Add to one of the record's counters (HINCRBY: a call taken over keeps counting)."""
    return ("HINCRBY", keys.call(call_sid), field, amount)


def live_commands(keys: Keys, call_sid: str, edge_id: str, stream_sid: str) -> list[Command]:
    """The record of a live call written back by its edge (Redis restarted empty): ``live``,
    on that edge; the call's keys renewed. Attaching goes through ``attach_stream``."""
    fields = _live_fields(edge_id, stream_sid)
    return [_hset(keys, call_sid, fields), *refresh_commands(keys, call_sid)]


def _live_fields(edge_id: str, stream_sid: str) -> dict[CallField, object]:
    """What an edge writes of a call whose stream it holds (the state first)."""
    return {
        CallField.STATE: CallState.LIVE,
        CallField.EDGE_ID: edge_id,
        CallField.STREAM_SID: stream_sid,
    }


# KEYS: the call's keys (record first). ARGV: the key TTL, the three live fields as name, value
# pairs (the state first), then the final states. The record as it was (HGETALL), written only
# when it exists and has not ended: a worker that ended the call a moment earlier is never
# overwritten by "live".
_ATTACH_STREAM = """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return record end
local state = redis.call('HGET', KEYS[1], ARGV[2])
for i = 8, #ARGV do
  if state == ARGV[i] then return record end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1]) end
return record
"""


async def attach_stream(
    client: aioredis.Redis, keys: Keys, call_sid: str, edge_id: str, stream_sid: str
) -> CallRecord | None:
    """An edge attaches the call's stream: the record becomes ``live`` on that edge (the
    call's keys renewed) unless it has ended, in one step. Returns the record as it was before
    (None: no such call), so the edge refuses a stream whose call ended."""
    call_keys = keys.call_keys(call_sid)
    live = _live_fields(edge_id, stream_sid)
    flat: list[bytes] = await client.eval(
        _ATTACH_STREAM,
        len(call_keys),
        *call_keys,
        CALL_KEY_TTL_S,
        *(str(part) for pair in live.items() for part in pair),
        *FINAL_STATES,
    )
    return CallRecord.from_hash(call_sid, dict(zip(flat[::2], flat[1::2], strict=True)))


def refresh_commands(keys: Keys, call_sid: str) -> list[Command]:
    """A live call's keys renewed, well inside their TTL, so nothing outlives a dead process."""
    return [("EXPIRE", key, CALL_KEY_TTL_S) for key in keys.call_keys(call_sid)]


def detached_commands(keys: Keys, call_sid: str, bytes_in: int, bytes_out: int) -> list[Command]:
    """The stream left its edge without a stop: still live (Twilio may reconnect it to another
    edge), on no edge; the edge's byte counts kept."""
    fields: dict[CallField, object] = {
        CallField.EDGE_ID: "",
        CallField.BYTES_IN: bytes_in,
        CallField.BYTES_OUT: bytes_out,
    }
    return [_hset(keys, call_sid, fields)]


def edge_counts_command(keys: Keys, call_sid: str, bytes_in: int, bytes_out: int) -> Command:
    return _hset(keys, call_sid, {CallField.BYTES_IN: bytes_in, CallField.BYTES_OUT: bytes_out})


def ended_commands(
    keys: Keys, call_sid: str, reason: str, ended_ms: int, error: str | None = None
) -> list[Command]:
    """The call ended: why, when, and (``error``, written by the worker only) what went wrong
    — the resume route plays FAILURE_MESSAGE when it is not empty."""
    fields: dict[CallField, object] = {
        CallField.STATE: CallState.ENDED,
        CallField.ENDED_MS: ended_ms,
        CallField.END_REASON: reason,
    }
    if error is not None:
        fields[CallField.ERROR] = error
    return [_hset(keys, call_sid, fields)]


def transfer_commands(
    keys: Keys, call_sid: str, target: str, address: str, summary: str, warm: bool
) -> list[Command]:
    """The model asked to transfer the call (the worker hangs up once the handoff is heard):
    where to, and what the person is told."""
    fields: dict[CallField, object] = {
        CallField.TRANSFER_TARGET: target,
        CallField.TRANSFERRED_TO: address,
        CallField.TRANSFER_SUMMARY: summary,
        CallField.TRANSFER_WARM: int(warm),
    }
    return [_hset(keys, call_sid, fields)]


def transferred_commands(keys: Keys, call_sid: str, ended_ms: int) -> list[Command]:
    """The AI's part of a transferred call is over: the resume route now answers ``<Dial>``."""
    fields: dict[CallField, object] = {
        CallField.STATE: CallState.TRANSFERRED,
        CallField.ENDED_MS: ended_ms,
        CallField.END_REASON: "transfer",
    }
    return [_hset(keys, call_sid, fields)]


def transfer_done_commands(keys: Keys, call_sid: str, dial_status: str) -> list[Command]:
    """The dial reached the person (or the caller left): the call is over for Switchboard."""
    fields = {CallField.STATE: CallState.ENDED, CallField.TRANSFER_STATUS: dial_status}
    return [_hset(keys, call_sid, fields)]


# Back from a failed transfer, atomically and once (Twilio may retry the action request):
# live again, the model told why; its audio streams (set to linger briefly when the stream
# closed for the transfer) kept like a live call's, and read from their ends: what is in them
# belongs to the stream before the transfer (the worker's Hangup, the caller's last marks), and
# must not end or confuse the new one. KEYS: the call's own (one slot on a cluster); the call
# is put in line for a worker afterwards, since the dispatch stream is in another slot.
_RETURN_FROM_TRANSFER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[4], ARGV[5])
redis.call('HDEL', KEYS[1], ARGV[6], ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('RPUSH', KEYS[2], ARGV[9])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[10]), -1)
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[8])
redis.call('EXPIRE', KEYS[4], ARGV[8])
for i, cursor in ipairs({ARGV[11], ARGV[12]}) do
  local last = redis.call('XREVRANGE', KEYS[2 + i], '+', '-', 'COUNT', 1)
  if #last > 0 then redis.call('HSET', KEYS[1], cursor, last[1][1]) end
end
return 1
"""


async def return_from_transfer(
    client: aioredis.Redis,
    keys: Keys,
    call_sid: str,
    dial_status: str,
    notice: Turn,
    clock: Clock = SYSTEM_CLOCK,
) -> bool:
    """A transfer that did not reach the person: the call goes back to the AI (dispatched,
    the ``notice`` appended to its turns for the next session to hear). False when the call
    was not waiting on a transfer (a retried request: nothing changes)."""
    done: int = await client.eval(
        _RETURN_FROM_TRANSFER,
        4,
        keys.call(call_sid),
        keys.turns(call_sid),
        keys.inbound(call_sid),
        keys.outbound(call_sid),
        CallField.STATE.value,
        CallState.TRANSFERRED.value,
        CallState.DISPATCHED.value,
        CallField.TRANSFER_STATUS.value,
        dial_status,
        CallField.ENDED_MS.value,
        CallField.END_REASON.value,
        CALL_KEY_TTL_S,
        encode_turn(notice),
        TURNS_MAX,
        CallField.IN_CURSOR.value,
        CallField.OUT_CURSOR.value,
    )
    if not done:
        return False
    # Only the request that moved the record gets here, so the call is put in line once.
    dispatch = dispatch_command(keys, call_sid, CallDispatch.TRANSFER_FAILED, clock)
    await client.execute_command(*dispatch)  # type: ignore[no-untyped-call]
    return True


def expire_streams_commands(keys: Keys, call_sid: str) -> list[Command]:
    """The call's audio streams linger briefly after its end, for late readers."""
    return [
        ("EXPIRE", key, ENDED_STREAM_TTL_S)
        for key in (keys.inbound(call_sid), keys.outbound(call_sid))
    ]


def worker_fields_commands(
    keys: Keys,
    call_sid: str,
    worker_id: str,
    in_cursor: str | None = None,
    formats: tuple[str, str] | None = None,
) -> list[Command]:
    """What the worker holding the call owns of its record: its id, where it has read the
    caller's audio to (for a worker taking over), the formats the model confirmed."""
    fields: dict[CallField, object] = {CallField.WORKER_ID: worker_id}
    if in_cursor is not None:
        fields[CallField.IN_CURSOR] = in_cursor
    if formats is not None:
        fields[CallField.INPUT_FORMAT], fields[CallField.OUTPUT_FORMAT] = formats
    return [_hset(keys, call_sid, fields), ("EXPIRE", keys.call(call_sid), CALL_KEY_TTL_S)]


def end_of_call_commands(
    keys: Keys, call_sid: str, summary: Mapping[CallField, object], retention_s: int
) -> list[Command]:
    """The end-of-call summary (its counters appear as 0 when nothing counted), and record and
    turns kept ``retention_s``."""
    commands = [count_command(keys, call_sid, field, 0) for field in SUMMARY_COUNTERS]
    if summary:
        commands.append(_hset(keys, call_sid, summary))
    commands += [
        ("EXPIRE", keys.call(call_sid), retention_s),
        ("EXPIRE", keys.turns(call_sid), retention_s),
    ]
    return commands


# --- conversation turns --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of the conversation: what the caller (``user``) or the model said."""

    role: str  # "user" or "assistant"
    text: str
    at_ms: int


def encode_turn(turn: Turn) -> bytes:
    return orjson.dumps({"role": turn.role, "text": turn.text, "at_ms": turn.at_ms})


def decode_turn(raw: bytes | str) -> Turn | None:
    """The turn in ``raw``, or None when it is not a well-formed turn (skipped by readers)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    role, text, at_ms = value.get("role"), value.get("text"), value.get("at_ms")
    if role not in TURN_ROLES or type(text) is not str or type(at_ms) is not int:
        return None
    return Turn(role, text, at_ms)


def turn_commands(keys: Keys, call_sid: str, turn: Turn) -> list[Command]:
    """Redis commands (for a ``BatchWriter``) appending ``turn``, keeping the last TURNS_MAX."""
    key = keys.turns(call_sid)
    return [
        ("RPUSH", key, encode_turn(turn)),
        ("LTRIM", key, -TURNS_MAX, -1),
        ("EXPIRE", key, CALL_KEY_TTL_S),
    ]


def turns_rewrite_commands(keys: Keys, call_sid: str, turns: list[Turn]) -> list[Command]:
    """Commands replacing the stored turns with ``turns`` (after Redis lost them)."""
    key = keys.turns(call_sid)
    commands: list[tuple[object, ...]] = [("DEL", key)]
    if turns:
        kept = turns[-TURNS_MAX:]
        commands += [
            ("RPUSH", key, *(encode_turn(t) for t in kept)),
            ("EXPIRE", key, CALL_KEY_TTL_S),
        ]
    return commands


async def load_turns(client: aioredis.Redis, keys: Keys, call_sid: str) -> list[Turn]:
    """The stored turns of a call, oldest first; malformed entries are left out."""
    raw: list[bytes | str] = await client.lrange(keys.turns(call_sid), -TURNS_MAX, -1)
    return [turn for turn in map(decode_turn, raw) if turn is not None]
