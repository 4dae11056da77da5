"""G.711 μ-law constants and helpers.

The whole call path carries μ-law, 8 kHz, mono: one byte is one sample, 8 bytes are one
millisecond. Nothing on the per-frame path decodes audio, except the worker's transcoder when
REALTIME_AUDIO_FORMAT=pcm16; these helpers serve it, the simulators, diagnostics and tests.
The codec is the classic Sun/CCITT one (docs/protocols.md §5.1), fixed as the project's reference
so tests can compare bytes.
"""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "BYTES_PER_MS",
    "FRAME_BYTES",
    "FRAME_MS",
    "SAMPLE_RATE",
    "SILENCE_BYTE",
    "bytes_to_ms",
    "linear_to_ulaw",
    "ms_to_bytes",
    "read_wav_as_ulaw",
    "silence",
    "ulaw_to_linear",
    "write_ulaw_wav",
]

SAMPLE_RATE = 8000
BYTES_PER_MS = 8
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160: one Twilio media frame
SILENCE_BYTE = 0xFF  # μ-law digital silence (positive zero)

_BIAS = 0x84
_CLIP = 32635


def bytes_to_ms(n_bytes: int) -> int:
    """Milliseconds of audio in ``n_bytes`` of μ-law, rounded down."""
    return n_bytes // BYTES_PER_MS


def ms_to_bytes(ms: int) -> int:
    """μ-law bytes that hold ``ms`` milliseconds of audio."""
    return ms * BYTES_PER_MS


def silence(n_bytes: int) -> bytes:
    """``n_bytes`` of μ-law digital silence."""
    return bytes([SILENCE_BYTE]) * n_bytes


@cache
def _decode_table() -> npt.NDArray[np.int16]:
    b = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = b & 0x80
    exponent = (b >> 4) & 0x07
    mantissa = b & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


@cache
def _encode_table() -> npt.NDArray[np.uint8]:
    s = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(s < 0, 0x80, 0)
    m = np.minimum(np.abs(s), _CLIP) + _BIAS
    exponent = np.floor(np.log2(m)).astype(np.int32) - 7
    mantissa = (m >> (exponent + 3)) & 0x0F
    table: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


def ulaw_to_linear(data: bytes) -> npt.NDArray[np.int16]:
    """Decode μ-law bytes to signed 16-bit samples."""
    return _decode_table()[np.frombuffer(data, dtype=np.uint8)]


def linear_to_ulaw(samples: npt.ArrayLike) -> bytes:
    """Encode signed 16-bit samples (values outside int16 are clipped) to μ-law bytes."""
    if isinstance(samples, np.ndarray) and samples.dtype == np.int16:
        # Already in range (the transcoder's case): offset by flipping the sign bit, no copies.
        encoded: bytes = _encode_table()[samples.view(np.uint16) ^ 0x8000].tobytes()
        return encoded
    pcm = np.clip(np.asarray(samples, dtype=np.int64), -32768, 32767) + 32768
    return bytes(_encode_table()[pcm])


def write_ulaw_wav(path: Path, ulaw: bytes) -> None:
    """Write μ-law audio as a 16-bit PCM WAV file (8 kHz mono) any player can open."""
    pcm = ulaw_to_linear(ulaw).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)


def read_wav_as_ulaw(path: Path) -> bytes:
    """Read a 16-bit mono 8 kHz PCM WAV file and return it as μ-law bytes."""
    with wave.open(str(path), "rb") as src:
        if (src.getnchannels(), src.getsampwidth(), src.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: expected 16-bit mono {SAMPLE_RATE} Hz PCM WAV")
        frames = src.readframes(src.getnframes())
    return linear_to_ulaw(np.frombuffer(frames, dtype="<i2"))
