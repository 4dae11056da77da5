"""Audio fixtures for the outbound-audio detector: correct μ-law signals, and each wrong format.

numpy only, so the test suite can build the same fixtures as the tuning script without
espeak-ng or sox. Linear audio is float64 in [-1, 1]; μ-law is bytes.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.audio import SAMPLE_RATE, linear_to_ulaw, ulaw_to_linear

__all__ = [
    "ASSETS",
    "WRONG_FORMATS",
    "Signal",
    "as_base64_text",
    "as_pcm16_8k",
    "as_pcm16_24k",
    "as_wav",
    "asset_speech",
    "correct_corpus",
    "correct_signals",
    "from_ulaw",
    "resample",
    "to_ulaw",
]

Signal = npt.NDArray[np.float64]
_ROOT: Final = Path(__file__).resolve().parents[1]
ASSETS: Final = {
    "caller.ulaw": _ROOT / "call_sim" / "assets" / "caller.ulaw",
    "reply.ulaw": _ROOT / "realtime_sim" / "assets" / "reply.ulaw",
}
_DTMF_ROWS: Final = (697, 770, 852, 941)
_DTMF_COLS: Final = (1209, 1336, 1477, 1633)


def from_ulaw(audio: bytes) -> Signal:
    return ulaw_to_linear(audio).astype(np.float64) / 32768


def to_ulaw(signal: Signal) -> bytes:
    return linear_to_ulaw(np.round(signal * 32767))


def _pcm16(signal: Signal) -> bytes:
    return np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tobytes()


def resample(signal: Signal, rate_in: int, rate_out: int) -> Signal:
    """Band-limited resampling by FFT (fine for fixtures; the worker never resamples)."""
    n_out = int(round(len(signal) * rate_out / rate_in))
    spectrum = np.fft.rfft(signal)
    size = n_out // 2 + 1
    if size > len(spectrum):
        spectrum = np.concatenate([spectrum, np.zeros(size - len(spectrum), complex)])
    out: Signal = np.fft.irfft(spectrum[:size], n_out) * (n_out / len(signal))
    return out


def as_pcm16_8k(signal: Signal) -> bytes:
    """The fault: PCM16 little-endian at 8 kHz where μ-law was expected."""
    return _pcm16(signal)


def as_pcm16_24k(signal: Signal) -> bytes:
    """The Realtime default, audio/pcm at 24 kHz, where μ-law was expected."""
    return _pcm16(resample(signal, SAMPLE_RATE, 24000))


def as_base64_text(signal: Signal) -> bytes:
    """Correct μ-law, base64-encoded once too often."""
    return base64.b64encode(to_ulaw(signal))


def as_wav(signal: Signal) -> bytes:
    """A whole WAV file (16-bit PCM, 24 kHz, header included) where raw μ-law was expected."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(as_pcm16_24k(signal))
    return out.getvalue()


#: name → converter from linear audio to the bytes the edge would see, and the expected kind.
WRONG_FORMATS: Final[dict[str, tuple[Callable[[Signal], bytes], str]]] = {
    "pcm16 8k": (as_pcm16_8k, "pcm16"),
    "pcm16 24k": (as_pcm16_24k, "pcm16"),
    "base64 text": (as_base64_text, "base64_text"),
    "wav header": (as_wav, "wav_header"),
}


def _t(seconds: float) -> Signal:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _db(dbfs: float) -> float:
    return float(10 ** (dbfs / 20))


def correct_signals(seed: int = 0) -> dict[str, Signal]:
    """Correct-μ-law material other than speech: tones, DTMF, sweeps, noise, silence (2 s each)."""
    rng = np.random.default_rng(seed)
    t = _t(2.0)
    out: dict[str, Signal] = {}
    for level in (-30, -12, -3):
        for hz in (440, 1000, 2000, 3000):
            out[f"tone {hz} Hz {level} dBFS"] = _db(level) * np.sin(2 * np.pi * hz * t)
        out[f"tone 2000 Hz {level} dBFS phase 0.3"] = _db(level) * np.sin(
            2 * np.pi * 2000 * t + 0.3
        )
        out[f"sweep 200-3800 Hz {level} dBFS"] = _db(level) * np.sin(
            2 * np.pi * (200 * t + (3600 / 4) * t**2)
        )
        out[f"white noise {level} dBFS"] = np.clip(_db(level) * rng.standard_normal(len(t)), -1, 1)
        brown = np.cumsum(rng.standard_normal(len(t)))
        brown -= np.convolve(brown, np.ones(400) / 400, mode="same")  # no DC drift
        out[f"brown noise {level} dBFS"] = _db(level) * brown / (np.std(brown) or 1)
    for row in _DTMF_ROWS:
        for col in _DTMF_COLS:
            # 100 ms on, 100 ms off, as a keypad sends them.
            gate = (np.floor(t * 10) % 2 == 0).astype(np.float64)
            pair = np.sin(2 * np.pi * row * t) + np.sin(2 * np.pi * col * t)
            out[f"DTMF {row}+{col} Hz"] = 0.25 * pair * gate
    out["square 500 Hz -6 dBFS"] = _db(-6) * np.sign(np.sin(2 * np.pi * 500 * t))
    out["digital silence"] = np.zeros(len(t))
    out["dithered silence"] = rng.integers(-2, 3, len(t)) / 32768
    out["quiet hiss -60 dBFS"] = _db(-60) * rng.standard_normal(len(t))
    return out


def asset_speech() -> dict[str, Signal]:
    """The shipped speech clips (real speech, μ-law 8 kHz) as linear audio."""
    return {name: from_ulaw(path.read_bytes()) for name, path in ASSETS.items()}


def correct_corpus() -> dict[str, Signal]:
    """The correct-μ-law material of the tests: the shipped speech, and the signals above."""
    return asset_speech() | correct_signals()
