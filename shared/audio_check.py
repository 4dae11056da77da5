"""Is this outbound audio really G.711 μ-law? Cheap statistics on the first second of a call.

``classify_outbound(audio)`` looks at up to the first second (8000 bytes) of what is about to
be played to a caller and returns an ``AudioVerdict``: ``ok``, one of the faults ``pcm16``
(PCM16 little-endian read as μ-law: the "vacuum cleaner"), ``base64_text`` (the payload was
base64-encoded twice), ``wav_header`` (a RIFF/WAVE or AU file header), or the warning
``silence``. ``OutboundInspector`` does the same on a stream of chunks and answers once, as
soon as it is confident. Pure: no I/O, no clock, no logging.

The PCM16 tests rest on two facts (docs/protocols.md §5.2). μ-law bytes are exchangeable across
even and odd positions, while PCM16's high bytes (one position in two) cluster near 0x00 and
0xFF for speech and its low bytes are spread evenly. And a real, zero-mean signal has as many
loud negative samples as loud positive ones in μ-law, while PCM16 read as μ-law has many bytes
0x00-0x10 (full-scale negative: the high byte of small positive samples) and few 0x80-0x90.
Thresholds were tuned with ``python -m services.doctor.tune_detector``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from shared.audio import ulaw_to_linear

__all__ = [
    "FAULT_KINDS",
    "MIN_BYTES",
    "WINDOW_BYTES",
    "AudioVerdict",
    "OutboundInspector",
    "VerdictKind",
    "classify_outbound",
]

VerdictKind = Literal["ok", "pcm16", "base64_text", "wav_header", "silence"]

WINDOW_BYTES: Final = 8000  # one second of μ-law: nothing beyond it is looked at
MIN_BYTES: Final = 1600  # 200 ms: below this, statistics decide nothing (headers and base64 may)
FAULT_KINDS: Final[frozenset[str]] = frozenset({"pcm16", "base64_text", "wav_header"})

_MIN_TEXT_BYTES: Final = 64  # base64 text: 64 bytes in the alphabet by chance is ~impossible
_MIN_ACTIVE_BYTES: Final = 400  # non-silent bytes needed before saying "ok" early
_BASE64_ALPHABET: Final = np.zeros(256, dtype=bool)
_BASE64_ALPHABET[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n")] = (
    True
)
_BYTE: Final = np.arange(256)
_DECODE: Final = ulaw_to_linear(bytes(range(256)))
# μ-law byte classes (decoded values in docs/protocols.md §5.1).
_QUIET: Final = (_BYTE >= 0xF7) | ((_BYTE >= 0x77) & (_BYTE <= 0x7F))  # |x| <= 64, -54 dBFS
_LOUD_NEG: Final = _BYTE <= 0x10  # x <= -15996; also small positive PCM16 high bytes
_LOUD_POS: Final = (_BYTE >= 0x80) & (_BYTE <= 0x90)  # x >= 15996
# As a PCM16 high byte (int8 within ±16): a sample within about ±4400 (speech, mostly).
_HIGH_POS: Final = _BYTE <= 0x10
_HIGH_NEG: Final = _BYTE >= 0xF0

# Tuned thresholds (see the module docstring).
_PARITY_SKEW: Final = 0.30  # near-zero high-byte share, high-byte position minus the other
_PARITY_EACH_SIGN: Final = 0.08  # both signs of small samples at the high-byte position
_SIGN_LOUD_NEG: Final = 0.20  # share of 0x00-0x10 bytes
_SIGN_RATIO: Final = 4.0  # ... at least this many times the share of 0x80-0x90 bytes
_FLAT_NOISY: Final = 0.30  # spectral flatness of the μ-law reading: noise-like from here
_FLAT_RATIO: Final = 0.25  # ... and the PCM16 reading at most this fraction of it: tonal
_SILENT_SHARE: Final = 0.99
_FFT_SIZE: Final = 128

_PCM16_FIX: Final = (
    "the Realtime session sends PCM16: the worker must configure audio/pcmu both ways "
    "(session.update) and refuse a session.updated that does not confirm it; check "
    "OPENAI_REALTIME_URL points at a server honouring session.update"
)
_BASE64_FIX: Final = (
    "decode the Realtime delta exactly once (docs/protocols.md §0 rule 4); check "
    "OPENAI_REALTIME_URL points at the Realtime API itself, not a proxy that re-encodes audio"
)
_HEADER_FIX: Final = (
    "send raw μ-law with no file header; the server or proxy at OPENAI_REALTIME_URL wraps "
    "audio in a file: configure it for raw audio/pcmu"
)
_SILENCE_FIX: Final = (
    "check the model produces audio (OPENAI_REALTIME_MODEL, output_modalities audio) and that "
    "nothing between the worker and the edge zeroes the audio"
)


@dataclass(frozen=True, slots=True)
class AudioVerdict:
    """What the first outbound bytes look like; ``fix`` names the setting to change."""

    kind: VerdictKind
    explanation: str
    fix: str | None
    bytes_examined: int

    @property
    def is_fault(self) -> bool:
        """A wrong format: the caller hears noise. ``silence`` is a warning, not a fault."""
        return self.kind in FAULT_KINDS

    def __str__(self) -> str:
        return f"{self.kind}: {self.explanation}" + (f"; fix: {self.fix}" if self.fix else "")


def _share(mask: npt.NDArray[np.bool_], data: npt.NDArray[np.uint8]) -> float:
    return float(mask[data].mean()) if len(data) else 0.0


def _header(audio: bytes) -> str | None:
    riff = audio.find(b"RIFF")
    if riff != -1 and audio[riff + 8 : riff + 12] == b"WAVE":
        return "RIFF/WAVE"
    if audio.startswith(b".snd"):
        return "AU (.snd)"
    return None


def _flatness(samples: npt.NDArray[np.int16]) -> float:
    """Spectral flatness (geometric over arithmetic mean of an averaged periodogram): about 1
    for noise, near 0 for tones and speech."""
    frames = len(samples) // _FFT_SIZE
    if frames == 0:
        return 1.0
    x = samples[: frames * _FFT_SIZE].astype(np.float64).reshape(frames, _FFT_SIZE)
    x -= x.mean(axis=1, keepdims=True)
    power = (np.abs(np.fft.rfft(x * np.hanning(_FFT_SIZE), axis=1)) ** 2).mean(axis=0)[1:]
    power += 1e-9  # digital silence: flat, not a log of zero
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


def _pcm16_evidence(data: npt.NDArray[np.uint8]) -> str | None:
    """Why ``data`` looks like PCM16 little-endian, or None."""
    # Parity test: whichever position holds the high bytes, it is far more often near zero.
    near = [_share(_HIGH_POS | _HIGH_NEG, data[p::2]) for p in (0, 1)]
    high = int(near[1] > near[0])
    both_signs = min(_share(_HIGH_POS, data[high::2]), _share(_HIGH_NEG, data[high::2]))
    if near[high] - near[1 - high] >= _PARITY_SKEW and both_signs >= _PARITY_EACH_SIGN:
        return (
            f"bytes at {('even', 'odd')[high]} offsets are near 0x00/0xFF {near[high]:.0%} of "
            f"the time against {near[1 - high]:.0%} at the others: PCM16 high bytes"
        )
    # Sign test: loud negative μ-law without loud positive is PCM16 (quiet or silent) read
    # as μ-law; real audio has no such one-sided loudness.
    loud_neg, loud_pos = _share(_LOUD_NEG, data), _share(_LOUD_POS, data)
    if loud_neg >= _SIGN_LOUD_NEG and loud_neg >= _SIGN_RATIO * loud_pos + 0.01:
        return (
            f"{loud_neg:.0%} of bytes read as full-scale negative μ-law against {loud_pos:.0%} "
            "positive: PCM16 samples near zero"
        )
    # Spectrum test, for loud PCM16 whose high bytes spread out: read as μ-law it is noise
    # (the low bytes are nearly random), read as PCM16 it has the shape of a real signal.
    as_ulaw = _flatness(_DECODE[data])
    if as_ulaw >= _FLAT_NOISY:
        as_pcm16 = min(
            _flatness(np.frombuffer(data[p : p + (len(data) - p) // 2 * 2].tobytes(), "<i2"))
            for p in (0, 1)
        )
        if as_pcm16 <= _FLAT_RATIO * as_ulaw:
            return (
                f"read as μ-law it is noise (spectral flatness {as_ulaw:.2f}), read as PCM16 "
                f"it is a signal ({as_pcm16:.2f})"
            )
    return None


def _assess(audio: bytes, final: bool) -> AudioVerdict | None:
    """The verdict on ``audio`` (at most one window), or None while more bytes could change it;
    with ``final`` there is always a verdict."""
    window = audio[:WINDOW_BYTES]
    n = len(window)
    final = final or n >= WINDOW_BYTES
    header = _header(window)
    if header is not None:
        return AudioVerdict(
            "wav_header",
            f"outbound audio holds a {header} file header: Twilio forbids headers and plays "
            "the bytes after it as noise",
            _HEADER_FIX,
            n,
        )
    if n == 0:
        return (
            AudioVerdict("silence", "no outbound audio at all", _SILENCE_FIX, 0) if final else None
        )
    data = np.frombuffer(window, dtype=np.uint8)
    if n >= _MIN_TEXT_BYTES and bool(_BASE64_ALPHABET[data].all()):
        return AudioVerdict(
            "base64_text",
            "outbound audio bytes are base64 text: the audio was base64-encoded twice",
            _BASE64_FIX,
            n,
        )
    if n < MIN_BYTES and not final:
        return None
    evidence = _pcm16_evidence(data)
    if evidence is not None:
        return AudioVerdict(
            "pcm16",
            f"outbound audio is PCM16 little-endian, not μ-law ({evidence}); played as μ-law "
            "it is loud noise",
            _PCM16_FIX,
            n,
        )
    quiet = _share(_QUIET, data)
    active = n - int(round(quiet * n))
    if quiet >= _SILENT_SHARE:
        if not final:
            return None  # speech may start later in the window
        ms = n // 8
        return AudioVerdict(
            "silence", f"the first {ms} ms of outbound audio are silence only", _SILENCE_FIX, n
        )
    if active < _MIN_ACTIVE_BYTES and not final:
        return None
    return AudioVerdict("ok", "outbound audio looks like G.711 μ-law", None, n)


def classify_outbound(audio: bytes) -> AudioVerdict:
    """The verdict on the first outbound bytes of a call (only the first second is read)."""
    verdict = _assess(bytes(audio[:WINDOW_BYTES]), final=True)
    assert verdict is not None  # final assessments always decide
    return verdict


class OutboundInspector:
    """Feed it a call's outbound chunks; ``feed`` returns a verdict once, then always None.

    Chunks past the verdict are ignored, so a call costs at most one second of bytes.
    """

    __slots__ = ("_buffer", "verdict")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.verdict: AudioVerdict | None = None

    @property
    def done(self) -> bool:
        return self.verdict is not None

    def feed(self, chunk: bytes) -> AudioVerdict | None:
        """The verdict, the first time there is one; None before and after."""
        if self.verdict is not None or not chunk:
            return None
        self._buffer += chunk[: WINDOW_BYTES - len(self._buffer)]
        return self._decide(final=False)

    def finish(self) -> AudioVerdict | None:
        """At the end of a call shorter than the window: a verdict on what was seen, unless one
        was already given (None then, or when nothing at all was seen)."""
        if self.verdict is not None or not self._buffer:
            return None
        return self._decide(final=True)

    def _decide(self, final: bool) -> AudioVerdict | None:
        verdict = _assess(bytes(self._buffer), final)
        if verdict is not None:
            self.verdict = verdict
            self._buffer = bytearray()  # nothing more is needed
        return verdict
