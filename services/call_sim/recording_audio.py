"""A call recording's audio, assembled from what the simulator knows happened on the line. Pure:
no I/O, no clock.

Everything is placed on the call's clock (ms since the call began, as in ``CallReport``) and cut
to the recording's window; sample ``i`` of a channel is ``window_start_ms + i / 8``. The left
channel is what Twilio received from the phone (the caller, or the party an outbound call
reached), the right one what Twilio played to it. ``trim_silence`` drops leading and trailing
samples that are digital silence on both channels, as ``trim="trim-silence"`` asks.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from shared.audio import BYTES_PER_MS, SAMPLE_RATE, SILENCE_BYTE, ulaw_to_linear

__all__ = ["Placed", "Window", "linear", "mix", "place", "to_wav", "trim_silence"]

_ZERO_BYTES = (0xFF, 0x7F)  # μ-law +0 and -0


class Placed(NamedTuple):
    """Audio on the call's clock: its first byte was spoken or played at ``at_ms``."""

    at_ms: float
    audio: bytes


class Window(NamedTuple):
    start_ms: float
    end_ms: float

    @property
    def samples(self) -> int:
        return max(0, round((self.end_ms - self.start_ms) * BYTES_PER_MS))


def place(window: Window, pieces: Iterable[Placed]) -> bytes:
    """One channel: ``pieces`` laid on silence over ``window`` (later pieces overwrite earlier
    ones where they overlap; the simulator's never do)."""
    channel = bytearray([SILENCE_BYTE]) * window.samples
    for at_ms, audio in pieces:
        offset = round((at_ms - window.start_ms) * BYTES_PER_MS)
        first, last = max(0, offset), min(len(channel), offset + len(audio))
        if first < last:
            channel[first:last] = audio[first - offset : last - offset]
    return bytes(channel)


def _silent(left: bytes, right: bytes) -> npt.NDArray[np.bool_]:
    zero = np.zeros(256, dtype=bool)
    zero[list(_ZERO_BYTES)] = True
    return zero[np.frombuffer(left, dtype=np.uint8)] & zero[np.frombuffer(right, dtype=np.uint8)]


def trim_silence(left: bytes, right: bytes) -> tuple[int, bytes, bytes]:
    """Samples cut from the start, and both channels less their common leading and trailing
    digital silence (empty when there is nothing else)."""
    if len(left) != len(right):
        raise ValueError("the channels differ in length")
    sound = np.flatnonzero(~_silent(left, right))
    if sound.size == 0:
        return len(left), b"", b""
    first, last = int(sound[0]), int(sound[-1]) + 1
    return first, left[first:last], right[first:last]


def linear(channel: bytes) -> npt.NDArray[np.int16]:
    return ulaw_to_linear(channel)


def mix(left: bytes, right: bytes) -> npt.NDArray[np.int16]:
    """Both channels summed into one (16-bit, clipped): what a mono recording holds."""
    total = ulaw_to_linear(left).astype(np.int32) + ulaw_to_linear(right).astype(np.int32)
    return np.clip(total, -32768, 32767).astype(np.int16)


def to_wav(channels: list[npt.NDArray[np.int16]]) -> bytes:
    """A WAV file as Twilio serves recordings: 16-bit PCM, 8 kHz, one or two channels."""
    if not channels or len({len(channel) for channel in channels}) != 1:
        raise ValueError("one or more channels of equal length are needed")
    samples = np.stack(channels, axis=1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(len(channels))
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()
