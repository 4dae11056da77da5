"""The call record (``{prefix}:call:{sid}`` hash), read and written by edges and workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared.keys import CALL_KEY_TTL_S, DISPATCH_MAXLEN, CallField, CallState, Keys
from shared.messages import ENTRY_FIELD, CallDispatch, encode

__all__ = ["CallRecord", "create_call", "load_call", "now_ms"]


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

    def get(self, field: CallField) -> str | None:
        return self.fields.get(field)


async def load_call(client: aioredis.Redis, keys: Keys, call_sid: str) -> CallRecord | None:
    """The call's record, or None when no such call exists (never posted, or expired)."""
    raw: dict[Any, Any] = await client.hgetall(keys.call(call_sid))
    if not raw:
        return None
    return CallRecord(call_sid, {k.decode(): v.decode() for k, v in raw.items()})


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
    mapping[CallField.CREATED_MS.value] = now_ms()
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, CALL_KEY_TTL_S)
    pipe.xadd(
        keys.dispatch,
        {ENTRY_FIELD: encode(CallDispatch(call_sid, "new", time.time()))},
        maxlen=DISPATCH_MAXLEN,
        approximate=True,
    )
    await pipe.execute()
    return True
