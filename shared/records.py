"""The call record (``{prefix}:call:{sid}`` hash), read and written by edges and workers, and
the conversation turns of a call (``{prefix}:call:{sid}:turns`` list), written by workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared.keys import (
    CALL_KEY_TTL_S,
    DISPATCH_MAXLEN,
    RECENT_CALLS_MAX,
    TURNS_MAX,
    CallField,
    CallState,
    Keys,
)
from shared.messages import ENTRY_FIELD, CallDispatch, encode

__all__ = [
    "TURN_ROLES",
    "CallRecord",
    "Turn",
    "create_call",
    "end_of_call_commands",
    "decode_turn",
    "encode_turn",
    "load_call",
    "load_turns",
    "now_ms",
    "turn_commands",
    "turns_rewrite_commands",
]

TURN_ROLES = ("user", "assistant")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        return self.state is CallState.ENDED

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


async def load_call(client: aioredis.Redis, keys: Keys, call_sid: str) -> CallRecord | None:
    """The call's record, or None when no such call exists (never posted, or expired)."""
    raw: dict[Any, Any] = await client.hgetall(keys.call(call_sid))
    return CallRecord.from_hash(call_sid, raw)


async def create_call(
    client: aioredis.Redis, keys: Keys, call_sid: str, fields: dict[CallField, str]
) -> bool:
    """Create the record and put the call on the dispatch stream, once per call sid.

    Returns False (and changes nothing) when the record exists already: Twilio retried the
    webhook, or it is a resume.
    """
    key = keys.call(call_sid)
    if not await client.hsetnx(key, CallField.STATE, CallState.DISPATCHED):
        return False
    pipe = client.pipeline(transaction=False)
    mapping: dict[Any, Any] = {str(name): value for name, value in fields.items()}
    created = now_ms()
    mapping[CallField.CREATED_MS.value] = created
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, CALL_KEY_TTL_S)
    # The index the read API lists calls from; bounded, newest kept.
    pipe.zadd(keys.recent_calls, {call_sid: created})
    pipe.zremrangebyrank(keys.recent_calls, 0, -RECENT_CALLS_MAX - 1)
    pipe.xadd(
        keys.dispatch,
        {ENTRY_FIELD: encode(CallDispatch(call_sid, "new", time.time()))},
        maxlen=DISPATCH_MAXLEN,
        approximate=True,
    )
    await pipe.execute()
    return True


def end_of_call_commands(
    keys: Keys, call_sid: str, summary: dict[CallField, object], retention_s: int
) -> list[tuple[object, ...]]:
    """Commands writing the end-of-call summary and keeping record and turns ``retention_s``."""
    fields = [value for name, v in summary.items() for value in (str(name), v)]
    commands: list[tuple[object, ...]] = [("HSET", keys.call(call_sid), *fields)] if fields else []
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


def turn_commands(keys: Keys, call_sid: str, turn: Turn) -> list[tuple[object, ...]]:
    """Redis commands (for a ``BatchWriter``) appending ``turn``, keeping the last TURNS_MAX."""
    key = keys.turns(call_sid)
    return [
        ("RPUSH", key, encode_turn(turn)),
        ("LTRIM", key, -TURNS_MAX, -1),
        ("EXPIRE", key, CALL_KEY_TTL_S),
    ]


def turns_rewrite_commands(
    keys: Keys, call_sid: str, turns: list[Turn]
) -> list[tuple[object, ...]]:
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
