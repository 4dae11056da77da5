"""Each call's audio codec between the caller (μ-law 8 kHz) and the model: ``call_codec``.

``PassThrough`` by default (``REALTIME_AUDIO_FORMAT=pcmu``): with the OpenAI Realtime API the
call carries G.711 μ-law end to end and nothing is decoded. For Realtime backends that speak
only PCM16 (``REALTIME_AUDIO_FORMAT=pcm16``), each call has one ``CallTranscoder``: caller audio
is decoded and
upsampled to 24 kHz, the model's audio is downsampled to 8 kHz and encoded, both with libsoxr
resamplers that keep their filter state from one chunk to the next, so chunk borders leave no
click. A resampler holds back part of its input (the filter's look-ahead, emitted in blocks);
the model's reply is flushed at its end so its last syllable is not held.

Pure computation (numpy and libsoxr, no I/O): the call session calls it in line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import soxr

from services.realtime_worker.openai_protocol import PCM, PCM_RATE, PCMU
from shared.audio import SAMPLE_RATE, linear_to_ulaw, ulaw_to_linear

if TYPE_CHECKING:
    from services.realtime_worker.settings import WorkerSettings

__all__ = [
    "MODEL_RATE",
    "PCM16_BYTES_PER_ULAW_BYTE",
    "QUALITIES",
    "CallTranscoder",
    "PassThrough",
    "Resampler",
    "call_codec",
]

MODEL_RATE: Final = PCM_RATE
#: PCM16 24 kHz bytes that carry the same time as one μ-law 8 kHz byte.
PCM16_BYTES_PER_ULAW_BYTE: Final = 2 * MODEL_RATE // SAMPLE_RATE
#: libsoxr's quality recipes, quickest first (``TRANSCODE_QUALITY``).
QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")


class Resampler(Protocol):
    """A streaming resampler of int16 samples (``soxr.ResampleStream``'s interface)."""

    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray: ...


class PassThrough:
    """The model speaks μ-law 8 kHz, as the caller does: audio passes unchanged both ways."""

    wire_format = PCMU
    bytes_per_ulaw_byte = 1  # of the model's audio, per μ-law byte of the same duration

    def to_model(self, ulaw: bytes) -> bytes:
        return ulaw

    def to_caller(self, audio: bytes) -> bytes:
        return audio

    def finish_reply(self) -> bytes:
        return b""

    def drop_reply(self) -> None:
        pass


class CallTranscoder:
    """Both directions of one call: ``to_model`` for the caller's audio (one continuous
    stream for the whole call), ``to_caller`` for the model's replies (one stream per reply,
    ended by ``finish_reply`` or dropped by ``drop_reply``)."""

    wire_format = PCM
    bytes_per_ulaw_byte = PCM16_BYTES_PER_ULAW_BYTE

    def __init__(self, quality: str = "HQ") -> None:
        self.quality = quality
        self._up = self.resampler(SAMPLE_RATE, MODEL_RATE)
        self._down: Resampler | None = None
        self._odd = b""  # a PCM16 sample split across two deltas

    def to_model(self, ulaw: bytes) -> bytes:
        """μ-law 8 kHz → PCM16 little-endian 24 kHz; may return less than 3× the samples
        (held back by the filter) and catches up on later calls."""
        if not ulaw:
            return b""
        pcm: np.ndarray = self._up.resample_chunk(ulaw_to_linear(ulaw))
        return pcm.astype("<i2", copy=False).tobytes()

    def to_caller(self, pcm: bytes) -> bytes:
        """PCM16 little-endian 24 kHz (one reply's delta) → μ-law 8 kHz."""
        data = self._odd + pcm
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        if not usable:
            return b""
        samples = np.frombuffer(data, dtype="<i2", count=usable // 2)
        return self._encode(self._reply_stream().resample_chunk(samples))

    def finish_reply(self) -> bytes:
        """The rest of the current reply, held back by the filter; the next reply starts
        afresh."""
        stream, self._down, self._odd = self._down, None, b""
        if stream is None:
            return b""
        return self._encode(stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))

    def drop_reply(self) -> None:
        """Forget the current reply (the caller interrupted it)."""
        self._down, self._odd = None, b""

    def resampler(self, in_rate: int, out_rate: int) -> Resampler:
        """A fresh stream of the kind this transcoder uses (libsoxr at its quality)."""
        stream: Resampler = soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="int16", quality=self.quality
        )
        return stream

    def _reply_stream(self) -> Resampler:
        if self._down is None:
            self._down = self.resampler(MODEL_RATE, SAMPLE_RATE)
        return self._down

    @staticmethod
    def _encode(samples: np.ndarray) -> bytes:
        return linear_to_ulaw(samples) if len(samples) else b""


def call_codec(settings: WorkerSettings) -> PassThrough | CallTranscoder:
    """A new call's codec, as ``REALTIME_AUDIO_FORMAT`` and ``TRANSCODE_QUALITY`` say."""
    if settings.realtime_audio_format == "pcm16":
        return CallTranscoder(settings.transcode_quality)
    return PassThrough()
