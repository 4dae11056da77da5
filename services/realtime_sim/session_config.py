"""The simulated session's configuration: the server's defaults and ``session.update`` merging.

The session is kept as the JSON object the server reports, so ``session.updated`` can echo it
as is. Defaults follow the real server, including its ``audio/pcm`` 24 kHz formats: a client
that never asks for ``audio/pcmu`` gets exactly what the real API would give it.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Final

__all__ = [
    "PCMU",
    "default_session",
    "merge_session",
    "session_formats",
    "turn_detection",
]

PCMU: Final = "audio/pcmu"
SESSION_LIFETIME_S: Final = 3600

# Objects merged key by key. Everything else (formats, turn_detection, tools…) is replaced
# whole: merging {"type": "audio/pcmu"} into a pcm format would leave an invalid "rate" behind.
_MERGED: Final = frozenset({(), ("audio",), ("audio", "input"), ("audio", "output")})


def default_session(
    session_id: str, model: str, lifetime_s: float = SESSION_LIFETIME_S, now: float | None = None
) -> dict[str, Any]:
    """A freshly created GA session, as ``session.created`` reports it; it expires
    ``lifetime_s`` after it was created."""
    created = time.time() if now is None else now
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(created + lifetime_s),
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


def _merge(base: dict[str, Any], update: dict[str, Any], path: tuple[str, ...]) -> None:
    for key, value in update.items():
        here = (*path, key)
        if here in _MERGED and isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, here)
        else:
            base[key] = copy.deepcopy(value)


def merge_session(session: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The session after applying a (validated) ``session.update`` payload; inputs untouched."""
    merged = copy.deepcopy(session)
    _merge(merged, update, ())
    return merged


def _side(session: dict[str, Any], direction: str) -> dict[str, Any]:
    audio = session.get("audio") or {}
    side = audio.get(direction) or {}
    return side if isinstance(side, dict) else {}


def session_formats(session: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (input, output) audio format types, e.g. ``("audio/pcmu", "audio/pcmu")``."""

    def kind(direction: str) -> str | None:
        fmt = _side(session, direction).get("format")
        value = fmt.get("type") if isinstance(fmt, dict) else None
        return value if isinstance(value, str) else None

    return kind("input"), kind("output")


def turn_detection(session: dict[str, Any]) -> dict[str, Any] | None:
    """The input turn-detection settings, or None when turns are committed by the client."""
    value = _side(session, "input").get("turn_detection")
    return value if isinstance(value, dict) else None
