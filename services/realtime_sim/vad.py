"""An energy voice-activity detector on μ-law audio, fed chunks of any size.

Audio is judged in 20 ms frames by RMS level. Speech starts after ``onset_ms`` of loud frames
in a row (so a click does not count) and stops after ``silence_ms`` of quiet ones, like the
server VAD's ``silence_duration_ms``. Times are milliseconds since the first byte fed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.audio import FRAME_BYTES, FRAME_MS, ulaw_to_linear

__all__ = ["EnergyVad", "SpeechStarted", "SpeechStopped", "VadEvent", "VadSettings"]


@dataclass(frozen=True, slots=True)
class VadSettings:
    threshold_dbfs: float = -45.0
    onset_ms: int = 40
    silence_ms: int = 500
    prefix_padding_ms: int = 300


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int  # includes the prefix padding, as the real server reports it


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int  # includes the trailing silence, as the real server reports it


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Turns a stream of μ-law bytes into speech start/stop events."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self.speaking = False
        self._pending = b""
        self._frames = 0  # whole frames judged so far
        self._loud_run = 0
        self._quiet_ms = 0
        self._threshold = 32768.0 * 10.0 ** (settings.threshold_dbfs / 20.0)

    @property
    def position_ms(self) -> int:
        return self._frames * FRAME_MS

    def configure(self, silence_ms: int, prefix_padding_ms: int) -> None:
        """Adopt the session's turn-detection timings; the stream position is kept."""
        self.settings = VadSettings(
            self.settings.threshold_dbfs, self.settings.onset_ms, silence_ms, prefix_padding_ms
        )

    def feed(self, audio: bytes) -> list[VadEvent]:
        """Events caused by ``audio``; a partial trailing frame waits for the next call."""
        data = self._pending + audio
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        if not whole:
            return []
        samples = ulaw_to_linear(data[:whole]).astype(np.float64).reshape(-1, FRAME_BYTES)
        levels = np.sqrt(np.mean(samples * samples, axis=1))
        events: list[VadEvent] = []
        for level in levels:
            event = self._frame(bool(level > self._threshold))
            if event is not None:
                events.append(event)
        return events

    def _frame(self, loud: bool) -> VadEvent | None:
        self._frames += 1
        s = self.settings
        if not self.speaking:
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run * FRAME_MS < s.onset_ms:
                return None
            self.speaking, self._quiet_ms = True, 0
            onset = self.position_ms - self._loud_run * FRAME_MS
            return SpeechStarted(max(0, onset - s.prefix_padding_ms))
        self._quiet_ms = 0 if loud else self._quiet_ms + FRAME_MS
        if self._quiet_ms < s.silence_ms:
            return None
        self.speaking, self._loud_run = False, 0
        return SpeechStopped(self.position_ms)
