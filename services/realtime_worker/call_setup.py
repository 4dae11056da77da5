"""The per-call set-up hook (CALL_SETUP_URL): ask the user's service how to serve one call.

The worker POSTs ``{"call_sid", "from", "to", "direction", "agent"}`` as a call arrives, while
the Realtime session opens, and waits at most CALL_SETUP_TIMEOUT. The answer (JSON object, all
optional)::

    {"instructions": "...", "greeting": "Hello Ada!", "variables": {"name": "Ada"}}

overrides the agent's instructions and greeting for this call and fills ``{name}`` in them; an
empty answer (204, or ``{}``) keeps the agent's. A slow, failing or malformed hook costs the
call its overrides, never the call: the agent's defaults are used and the outcome is counted.
The answer is kept on the call record, so a worker taking the call over does not ask again.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from services.realtime_worker.call_profile import CallParty, SetupOverrides

__all__ = [
    "MAX_ANSWER_BYTES",
    "SetupAnswerError",
    "SetupResult",
    "decode_overrides",
    "encode_overrides",
    "parse_setup_answer",
    "run_setup_hook",
]

MAX_ANSWER_BYTES: Final = 64 * 1024
MAX_VARIABLES: Final = 50
MAX_VARIABLE_CHARS: Final = 1000
MAX_GREETING_CHARS: Final = 1000
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FIELDS: Final = frozenset({"instructions", "greeting", "variables"})


class SetupAnswerError(ValueError):
    """The hook's answer is unusable; the message names the field."""


@dataclass(frozen=True, slots=True)
class SetupResult:
    outcome: str  # ok, timeout, error, bad_answer: the counter's label
    overrides: SetupOverrides | None
    problem: str | None = None


def parse_setup_answer(body: bytes) -> SetupOverrides:
    """The overrides in the hook's answer; raises SetupAnswerError naming what is wrong."""
    if not body.strip():
        return SetupOverrides()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SetupAnswerError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SetupAnswerError("expected a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise SetupAnswerError(f"unknown field {unknown[0]!r} (allowed: {', '.join(_FIELDS)})")
    instructions = _text(data, "instructions", None)
    greeting = _text(data, "greeting", MAX_GREETING_CHARS)
    return SetupOverrides(instructions, greeting, _variables(data.get("variables", {})))


def _text(data: dict[str, Any], key: str, limit: int | None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SetupAnswerError(f"field {key!r} must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise SetupAnswerError(f"field {key!r} is longer than {limit} characters")
    return value


def _variables(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SetupAnswerError("field 'variables' must be an object of names and values")
    if len(value) > MAX_VARIABLES:
        raise SetupAnswerError(f"field 'variables' has more than {MAX_VARIABLES} entries")
    variables: dict[str, str] = {}
    for name, raw in value.items():
        if not _VARIABLE.fullmatch(name):
            raise SetupAnswerError(
                f"field 'variables': {name[:64]!r} is not a name (letters, digits, '_')"
            )
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise SetupAnswerError(f"field 'variables': {name} must be a string or a number")
        text = str(raw)
        if len(text) > MAX_VARIABLE_CHARS:
            raise SetupAnswerError(
                f"field 'variables': {name} is longer than {MAX_VARIABLE_CHARS} characters"
            )
        variables[name] = text
    return variables


def encode_overrides(overrides: SetupOverrides) -> str:
    """The overrides as stored on the call record (for a worker taking the call over)."""
    data = {
        "instructions": overrides.instructions,
        "greeting": overrides.greeting,
        "variables": dict(overrides.variables),
    }
    return orjson.dumps({k: v for k, v in data.items() if v}).decode()


def decode_overrides(stored: str | None) -> SetupOverrides | None:
    """The overrides stored on the record; None when there are none (or they are unreadable,
    which costs a taken-over call its overrides, never the call)."""
    if not stored:
        return None
    try:
        return parse_setup_answer(stored.encode())
    except SetupAnswerError:
        return None


async def run_setup_hook(
    http: httpx.AsyncClient, url: str, timeout_s: float, party: CallParty, agent: str
) -> SetupResult:
    """Ask the hook about one call. Never raises (but cancellation)."""
    request = {
        "call_sid": party.call_sid,
        "from": party.caller,
        "to": party.called,
        "direction": party.direction,
        "agent": agent,
    }
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await _post(http, url, orjson.dumps(request))
    except TimeoutError:
        return SetupResult("timeout", None, f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return SetupResult("error", None, f"request failed: {type(exc).__name__}: {exc}")
    if body is None:
        return SetupResult("bad_answer", None, f"answer larger than {MAX_ANSWER_BYTES} bytes")
    if not 200 <= status < 300:
        return SetupResult("error", None, f"answered HTTP {status}")
    try:
        return SetupResult("ok", parse_setup_answer(body))
    except SetupAnswerError as exc:
        return SetupResult("bad_answer", None, str(exc))


async def _post(http: httpx.AsyncClient, url: str, content: bytes) -> tuple[int, bytes | None]:
    """The status and body of the hook's answer; no body when it is too large (read no
    further than the limit)."""
    headers = {"content-type": "application/json"}
    async with http.stream("POST", url, content=content, headers=headers) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return response.status_code, None
        return response.status_code, body
