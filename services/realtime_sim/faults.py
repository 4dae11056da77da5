"""Ways the simulator can misbehave on purpose, so format-mismatch detection can be shown.

``pcm16``: whatever the client asks, the session is confirmed as ``audio/pcm`` 24 kHz and
replies are PCM16 little-endian at 24 kHz (the "vacuum cleaner" when played as μ-law).
``double-base64``: audio deltas carry base64 of the base64 text. ``ignore-session-update``:
``session.updated`` echoes the untouched default session (``audio/pcm`` 24 kHz), and replies
come in that format. Pure functions; ``SimSession`` calls them.
"""

from __future__ import annotations

import base64
import copy
from enum import StrEnum
from typing import Any, Final

import numpy as np

from shared.audio import SAMPLE_RATE, linear_to_ulaw, ulaw_to_linear

__all__ = [
    "PCM_24K",
    "Fault",
    "encode_delta",
    "forced_pcm16",
    "pcm16_24k_to_ulaw",
    "session_after_update",
    "ulaw_to_pcm16_24k",
]

PCM_24K: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": 24000}
_UPSAMPLE: Final = 24000 // SAMPLE_RATE


class Fault(StrEnum):
    NONE = "none"
    PCM16 = "pcm16"
    DOUBLE_BASE64 = "double-base64"
    IGNORE_SESSION_UPDATE = "ignore-session-update"

    @property
    def speaks_pcm16(self) -> bool:
        """The session is (and stays) audio/pcm 24 kHz, and its audio is PCM16."""
        return self in (Fault.PCM16, Fault.IGNORE_SESSION_UPDATE)


def ulaw_to_pcm16_24k(audio: bytes) -> bytes:
    """μ-law 8 kHz to PCM16 LE 24 kHz by linear interpolation (a fault needs no fine resampler)."""
    if not audio:
        return b""
    samples = ulaw_to_linear(audio).astype(np.float64)
    positions = np.arange(len(samples) * _UPSAMPLE) / _UPSAMPLE
    return np.interp(positions, np.arange(len(samples)), samples).astype("<i2").tobytes()


def pcm16_24k_to_ulaw(audio: bytes) -> bytes:
    """PCM16 LE 24 kHz to μ-law 8 kHz by keeping every third sample: good enough for the
    simulator's voice detection, never sent back to a caller."""
    samples = np.frombuffer(audio, dtype="<i2", count=len(audio) // 2)
    return linear_to_ulaw(samples[::_UPSAMPLE])


def encode_delta(fault: Fault, audio: bytes, *, pcm16: bool = False) -> str:
    """The ``delta`` of an output audio event carrying μ-law ``audio``, as ``fault`` sends it
    (``pcm16``: the session is PCM16 24 kHz, so the audio is converted to it)."""
    if fault.speaks_pcm16 or pcm16:
        audio = ulaw_to_pcm16_24k(audio)
    text = base64.b64encode(audio)
    if fault is Fault.DOUBLE_BASE64:
        text = base64.b64encode(text)
    return text.decode("ascii")


def session_after_update(
    fault: Fault, before: dict[str, Any], merged: dict[str, Any]
) -> dict[str, Any]:
    """The session a faulty server keeps after ``session.update``: ``merged`` is what a correct
    server would have."""
    if fault is Fault.IGNORE_SESSION_UPDATE:
        return copy.deepcopy(before)
    if fault is Fault.PCM16:
        return forced_pcm16(merged)
    return merged


def forced_pcm16(session: dict[str, Any]) -> dict[str, Any]:
    """``session`` with audio/pcm 24 kHz both ways, whatever it asked for: what a faulty
    server keeps, and what a backend without μ-law can only offer."""
    forced = copy.deepcopy(session)
    for direction in ("input", "output"):
        forced.setdefault("audio", {}).setdefault(direction, {})["format"] = dict(PCM_24K)
    return forced
