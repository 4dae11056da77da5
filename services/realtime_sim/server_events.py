"""JSON bodies of the GA server events and resources the simulator sends.

Plain functions returning dicts; the test suite checks every event built from them strictly
against the ``openai`` package's server-event union.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "assistant_item",
    "function_call_item",
    "error_body",
    "response_resource",
    "transcription_usage",
    "usage",
    "user_audio_item",
]

Json = dict[str, Any]


def assistant_item(item_id: str, status: str, transcript: str | None) -> Json:
    """An assistant audio message; ``transcript=None`` while no content part exists yet."""
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    """A function call the model makes."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def user_audio_item(item_id: str, transcript: str | None) -> Json:
    """The caller's committed audio turn (the audio itself is never echoed back)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def usage(
    input_audio_ms: int, input_text_chars: int, output_audio_ms: int, output_chars: int
) -> Json:
    """A plausible ``usage`` block: 10 audio tokens/s in, 20 out, ~4 characters per token."""
    audio_in = math.ceil(input_audio_ms / 100)
    text_in = math.ceil(input_text_chars / 4)
    audio_out = math.ceil(output_audio_ms / 50)
    text_out = math.ceil(output_chars / 4)
    return {
        "total_tokens": audio_in + text_in + audio_out + text_out,
        "input_tokens": audio_in + text_in,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": audio_in,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def transcription_usage(audio_ms: int, transcript: str) -> Json:
    audio_tokens = math.ceil(audio_ms / 100)
    text_tokens = math.ceil(len(transcript) / 4)
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": text_tokens,
        "total_tokens": audio_tokens + text_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
    }


def response_resource(
    response_id: str,
    conversation_id: str,
    status: str,
    output_audio: Json,
    *,
    output: list[Json] | None = None,
    reason: str | None = None,
    usage_block: Json | None = None,
    details: Json | None = None,
    metadata: dict[str, str] | None = None,
) -> Json:
    """The ``response`` object of ``response.created`` / ``response.done``; ``details``
    overrides the ``status_details`` derived from ``status`` and ``reason``."""
    if details is None and status != "in_progress":
        details = {"type": status, "reason": reason} if reason else {"type": status}
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": details,
        "output": output or [],
        "conversation_id": conversation_id,
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": output_audio},
        "usage": usage_block,
        "metadata": metadata,
    }


def error_body(
    code: str | None,
    message: str,
    caused_by: str | None,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> Json:
    """The ``error`` object of an ``error`` event (``kind``: its ``type``, e.g. server_error,
    whose ``code`` the real server leaves null)."""
    return {
        "type": kind,
        "code": code,
        "message": message,
        "param": param,
        "event_id": caused_by,
    }
