"""Strict checks of what an edge sends to Twilio, sans I/O (docs/protocols.md §2.5, §5.2).

Twilio accepts exactly ``media``, ``mark`` and ``clear`` with exactly their documented fields
and the active ``streamSid``. It drops anything else with a warning it reports once per stream
(31950/31951), which makes a broken sender look half-working; so this module is stricter than
Twilio's logs and says what is wrong with every message.

``check_outbound`` returns the message Twilio would act on (None if it would drop it) and the
violations found. Payload faults that Twilio cannot see (double base64, PCM16 or a file header
where μ-law belongs, odd frame sizes) still yield the message: Twilio would play the garbage.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from shared.audio import FRAME_BYTES, ulaw_to_linear

__all__ = [
    "CheckResult",
    "OutClear",
    "OutMark",
    "OutMedia",
    "OutboundMessage",
    "Violation",
    "audio_fault",
    "check_outbound",
]

_BASE64_ALPHABET: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)
# event → (its keys, the key of its nested object, that object's keys): exactly these.
_FIELDS: Final[dict[str, tuple[set[str], str | None, set[str]]]] = {
    "media": ({"event", "streamSid", "media"}, "media", {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, "mark", {"name"}),
    "clear": ({"event", "streamSid"}, None, set()),
}
_MIN_SNIFF_BYTES: Final = 64  # below this the statistics below say nothing reliable


@dataclass(frozen=True, slots=True)
class OutMedia:
    audio: bytes  # raw bytes after one base64 decode


@dataclass(frozen=True, slots=True)
class OutMark:
    name: str


@dataclass(frozen=True, slots=True)
class OutClear:
    pass


OutboundMessage = OutMedia | OutMark | OutClear


@dataclass(frozen=True, slots=True)
class Violation:
    """One fault; ``kind`` is stable for tests and counters, ``detail`` is for people."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    message: OutboundMessage | None  # None: Twilio would drop it
    violations: tuple[Violation, ...] = ()


def _drop(kind: str, detail: str) -> CheckResult:
    return CheckResult(None, (Violation(kind, detail),))


def _snippet(text: str | bytes) -> str:
    shown = text[:120]
    return repr(shown) + ("…" if len(text) > 120 else "")


def audio_fault(data: bytes) -> Violation | None:
    """Why ``data`` (one decoded payload) is not raw μ-law, or None if it may well be.

    Heuristics from docs/protocols.md §5.2, tuned so that speech and even random bytes pass: a file
    header; base64 text (encoded twice); PCM16 digital silence (mostly 0x00, which is full-scale
    negative in μ-law); PCM16 little-endian speech (loud when read as μ-law, and its high bytes,
    the odd positions, cluster near zero while the low bytes do not).
    """
    if data[:4] in (b"RIFF", b".snd"):
        return Violation("header", f"payload starts with a {data[:4]!r} file header")
    if len(data) >= 8 and len(data) % 4 == 0 and all(byte in _BASE64_ALPHABET for byte in data):
        return Violation("double_base64", "the decoded payload is itself base64 text")
    if len(data) < _MIN_SNIFF_BYTES:
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    if np.mean(raw == 0) >= 0.5:
        return Violation("not_mulaw", "mostly 0x00 bytes: PCM16 silence, full-scale in μ-law")
    loud = float(np.mean(np.abs(ulaw_to_linear(data).astype(np.int32)) > 16000))
    small = np.abs(raw.view(np.int8).astype(np.int32)) <= 16
    skew = float(np.mean(small[1::2]) - np.mean(small[0::2]))
    if loud >= 0.25 and skew >= 0.25:
        return Violation(
            "not_mulaw",
            f"looks like PCM16 little-endian: {loud:.0%} of samples near full scale as μ-law, "
            "high bytes clustered near zero",
        )
    return None


def _media(body: dict[str, Any], frame_bytes: int | None) -> CheckResult:
    payload = body["payload"]
    if type(payload) is not str:
        return _drop("bad_field", f"media.payload must be a string, got {type(payload).__name__}")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        hint = " (str(bytes) sent instead of the text?)" if payload.startswith("b'") else ""
        return _drop("bad_base64", f"media.payload is not standard base64: {exc}{hint}")
    if not audio:
        return _drop("empty_payload", "media.payload is empty")
    violations: list[Violation] = []
    fault = audio_fault(audio)
    if fault is not None:
        violations.append(fault)
    if frame_bytes is not None and len(audio) % frame_bytes:
        violations.append(
            Violation(
                "frame_size",
                f"{len(audio)} bytes of audio, not a whole number of {frame_bytes}-byte frames",
            )
        )
    return CheckResult(OutMedia(audio), tuple(violations))


def _mark(body: dict[str, Any]) -> CheckResult:
    name = body["name"]
    if type(name) is not str or not name:
        return _drop("bad_field", f"mark.name must be a non-empty string, got {name!r}")
    return CheckResult(OutMark(name))


def check_outbound(
    frame: str | bytes, stream_sid: str, *, frame_bytes: int | None = FRAME_BYTES
) -> CheckResult:
    """Check one WebSocket message from the edge; ``bytes`` means a binary frame.

    ``frame_bytes``: the frame size every media payload must be a whole number of (the edge
    sends whole 20 ms frames, one or several per message); None accepts any size, as Twilio
    does.
    """
    if isinstance(frame, bytes):
        return _drop("binary_frame", f"binary frame of {len(frame)} bytes (Twilio 31950)")
    try:
        msg = json.loads(frame)
    except ValueError:
        return _drop("not_json", f"not JSON (Twilio 31951): {_snippet(frame)}")
    if type(msg) is not dict:
        return _drop("not_object", f"not a JSON object (Twilio 31951): {_snippet(frame)}")
    event = msg.get("event")
    spec = _FIELDS.get(event) if type(event) is str else None
    if spec is None:
        return _drop("unknown_event", f"event {event!r} is not media, mark or clear (31951)")
    top, inner_key, inner_fields = spec
    missing, extra = top - msg.keys(), msg.keys() - top
    if missing:
        return _drop("missing_field", f"{event} lacks {sorted(missing)}: {_snippet(frame)}")
    if extra:
        return _drop("extra_field", f"{event} has extra {sorted(extra)}: {_snippet(frame)}")
    if msg["streamSid"] != stream_sid:
        return _drop(
            "wrong_stream", f"{event} for streamSid {msg['streamSid']!r}, not {stream_sid}"
        )
    if inner_key is None:
        return CheckResult(OutClear())
    body = msg[inner_key]
    if type(body) is not dict:
        return _drop("bad_field", f"{event}.{inner_key} must be an object: {_snippet(frame)}")
    missing, extra = inner_fields - body.keys(), body.keys() - inner_fields
    if missing:
        return _drop("missing_field", f"{event}.{inner_key} lacks {sorted(missing)}")
    if extra:
        return _drop("extra_field", f"{event}.{inner_key} has extra {sorted(extra)} (31951)")
    return _media(body, frame_bytes) if event == "media" else _mark(body)
