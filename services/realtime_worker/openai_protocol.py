"""The OpenAI Realtime API (GA shape), sans I/O: what the worker sends, and its error policy.

Builders return the exact JSON of each client event the worker sends; the test suite checks
every one strictly against the ``openai`` package's GA types. Audio is base64 of raw G.711
μ-law, encoded exactly once here. The server's events are parsed in ``openai_events`` (decoded
once there); this module re-exports them, so ``openai_protocol`` is the one name to import.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from services.realtime_worker.openai_events import (
    PCM,
    PCM_RATE,
    PCMU,
    ErrorEvent,
    FunctionCall,
    InputCommitted,
    InputTranscript,
    InputTranscriptFailed,
    OtherEvent,
    OutputAudioDelta,
    OutputAudioDone,
    OutputItemAdded,
    RateLimit,
    RateLimits,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionConfirmed,
    SpeechStarted,
    TokenUsage,
    TranscriptDelta,
    TranscriptDone,
    parse_server_event,
)

__all__ = [
    "END_CALL",
    "END_CALL_TOOL",
    "FATAL_ERROR_CODES",
    "PCM",
    "PCMU",
    "PCM_RATE",
    "ErrorEvent",
    "FunctionCall",
    "InputCommitted",
    "InputTranscript",
    "InputTranscriptFailed",
    "OtherEvent",
    "OutputAudioDelta",
    "OutputAudioDone",
    "OutputItemAdded",
    "RateLimit",
    "RateLimits",
    "ResponseCreated",
    "ResponseDone",
    "ServerEvent",
    "SessionConfirmed",
    "SessionOptions",
    "SpeechStarted",
    "TokenUsage",
    "assistant_text_item",
    "TranscriptDelta",
    "TranscriptDone",
    "audio_append",
    "conversation_item_create",
    "function_call_item",
    "function_call_output_item",
    "is_fatal",
    "metric_code",
    "parse_server_event",
    "response_cancel",
    "response_create",
    "response_instructions",
    "session_update",
    "truncate",
    "system_text_item",
    "user_text_item",
]

END_CALL: Final = "end_call"

#: The built-in tool the model calls to hang up (after which it is asked to say goodbye).
END_CALL_TOOL: Final[dict[str, Any]] = {
    "type": "function",
    "name": END_CALL,
    "description": (
        "End the phone call. Call this when the caller says goodbye, asks to hang up, or the "
        "conversation is clearly over. The call ends after you have said goodbye."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the call is ending, in a few words."}
        },
        "required": [],
        "additionalProperties": False,
    },
}


# --- client events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionOptions:
    model: str
    instructions: str
    voice: str
    transcription_model: str | None
    turn_detection: str  # "server_vad" or "semantic_vad"
    interrupt_response: bool = True  # the server cancels its reply when the caller speaks
    tools: tuple[dict[str, Any], ...] = ()
    audio_format: str = PCMU  # PCM only for backends without μ-law (the worker transcodes)


def _dumps(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode()


def session_update(event_id: str, options: SessionOptions) -> str:
    """``session.update`` for a phone call: G.711 μ-law in and out (or PCM16 24 kHz when the
    worker transcodes), audio replies, VAD."""
    if options.turn_detection == "semantic_vad":
        turn: dict[str, Any] = {"type": "semantic_vad", "eagerness": "auto"}
    else:
        turn = {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
    turn |= {"create_response": True, "interrupt_response": options.interrupt_response}
    fmt: dict[str, Any] = {"type": options.audio_format}
    if options.audio_format == PCM:
        fmt["rate"] = PCM_RATE
    audio_in: dict[str, Any] = {"format": fmt, "turn_detection": turn}
    if options.transcription_model:
        audio_in["transcription"] = {"model": options.transcription_model}
    voice: str | dict[str, str] = (
        {"id": options.voice} if options.voice.startswith("voice_") else options.voice
    )
    session: dict[str, Any] = {
        "type": "realtime",
        "model": options.model,
        "output_modalities": ["audio"],
        "instructions": options.instructions,
        "audio": {"input": audio_in, "output": {"format": dict(fmt), "voice": voice}},
    }
    if options.tools:
        session |= {"tools": list(options.tools), "tool_choice": "auto"}
    return _dumps({"type": "session.update", "event_id": event_id, "session": session})


def audio_append(audio: bytes) -> str:
    """``input_audio_buffer.append`` of raw μ-law (base64-encoded here, once).

    No event_id: the server never acknowledges appends, and 50 ids a second per call would
    be bytes for nothing.
    """
    payload = binascii.b2a_base64(audio, newline=False).decode("ascii")
    return '{"type":"input_audio_buffer.append","audio":"' + payload + '"}'


def truncate(event_id: str, item_id: str, audio_end_ms: int) -> str:
    """``conversation.item.truncate``: the caller heard ``audio_end_ms`` of the item."""
    return _dumps(
        {
            "type": "conversation.item.truncate",
            "event_id": event_id,
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": int(audio_end_ms),
        }
    )


def response_cancel(event_id: str, response_id: str | None = None) -> str:
    event: dict[str, Any] = {"type": "response.cancel", "event_id": event_id}
    if response_id:
        event["response_id"] = response_id
    return _dumps(event)


def response_create(event_id: str, instructions: str | None = None) -> str:
    """``response.create``; ``instructions`` *replace* the session's for this response only
    (build them with ``response_instructions`` to keep the persona)."""
    event: dict[str, Any] = {"type": "response.create", "event_id": event_id}
    if instructions:
        event["response"] = {"instructions": instructions}
    return _dumps(event)


def response_instructions(session_instructions: str, cue: str) -> str:
    """Instructions for one response (a greeting, a goodbye): the session's own, then the cue.

    ``response.instructions`` overrides the session's instructions instead of adding to them
    (docs/protocols.md §3.4): a cue sent alone would be spoken without the persona.
    """
    return f"{session_instructions}\n\n{cue}" if session_instructions.strip() else cue


def user_text_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def system_text_item(text: str) -> dict[str, Any]:
    """A note for the model from the worker (a transfer that did not go through)."""
    return {
        "type": "message",
        "role": "system",
        "content": [{"type": "input_text", "text": text}],
    }


def assistant_text_item(text: str) -> dict[str, Any]:
    """What the model said earlier, as text: a client cannot create assistant audio (§3.4)."""
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def function_call_item(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A function call the model made in an earlier session, recreated in this one so that its
    output has a call to answer (a session knows only its own ``call_id``s)."""
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def function_call_output_item(call_id: str, output: str) -> dict[str, Any]:
    """The answer to a function call the model made (``output``: JSON text for the model)."""
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def conversation_item_create(event_id: str, item: dict[str, Any]) -> str:
    return _dumps({"type": "conversation.item.create", "event_id": event_id, "item": item})


# --- errors ---------------------------------------------------------------------------------

#: Error codes no new session would cure: the key, the account, the model, the protocol shape or
#: the audio format is wrong. The call ends (with FAILURE_MESSAGE) instead of reconnecting.
FATAL_ERROR_CODES = frozenset(
    {
        "beta_api_shape_disabled",
        "insufficient_quota",
        "invalid_api_key",
        "model_not_found",
        "unsupported_audio_format",
    }
)
_METRIC_CODE = re.compile(r"[a-z0-9_]{1,48}")


def is_fatal(code: str) -> bool:
    """Whether an error ``code`` condemns every session of the call, not just one client event
    or this one session (docs/protocols.md §3.6). ``server_error`` is not fatal: the server says
    to retry, and the session usually goes on; when it closes, the call gets a new one."""
    return code in FATAL_ERROR_CODES


def metric_code(code: str) -> str:
    """``code`` as a metric label: server-provided text, so bounded to a safe shape."""
    return code if _METRIC_CODE.fullmatch(code) else "other"
