"""Twilio's playout buffer for one stream, sans I/O, on a clock the caller passes in (ms).

Twilio queues the audio it receives and plays it at 8 bytes per ms; a ``mark`` is echoed when
playback reaches it, or at once if nothing is queued ahead of it; ``clear`` drops the queued
audio and echoes every pending mark at once (docs/protocols.md §2.5). What the caller *heard* is
the bytes actually played, concatenated exactly: gaps in the sender's output are not filled with
silence, so tests can compare heard audio bit-exact with what the model sent.

Two users run the same model: the call simulator (``services/call_sim/stream.py``) as Twilio's
side of a stream, on its arrival times; the edge (``services/edge/heard.py``) as its mirror of
Twilio's buffer, on its send times, to record what the caller heard.

``log`` says when each byte played, on the same clock: one ``Played(start_ms, audio)`` segment
per stretch of uninterrupted playback. A segment starts when audio arrives at an idle buffer and
ends when the buffer runs dry or a ``clear`` cuts it; bytes queued but never played (cleared, or
still queued when the call ends) are in no segment. The segments' audio joined is ``heard``, and
byte ``i`` of a segment played at ``start_ms + i / 8``. ``take_played`` hands over (and forgets)
what played before a given time, so a long-running user keeps only the recent part in memory.

Every method takes ``now_ms`` (non-decreasing) and returns the mark names to echo now, in order.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from shared.audio import BYTES_PER_MS

__all__ = ["Playback", "Played"]


class Played(NamedTuple):
    """One stretch of uninterrupted playback: its first byte played at ``start_ms``."""

    start_ms: float
    audio: bytes


class Playback:
    """Queued audio and marks; ``heard`` grows as the clock advances."""

    def __init__(self, now_ms: float = 0.0) -> None:
        self._queue: deque[bytes | str] = deque()  # bytes: audio; str: a mark's name
        self._queued_bytes = 0
        self._clock = now_ms
        self._credit = 0.0  # bytes' worth of play time not yet spent (sub-byte remainder)
        self._segments: list[tuple[float, bytearray]] = []  # the last one is playing, if any

    @property
    def clock_ms(self) -> float:
        return self._clock

    @property
    def heard(self) -> bytes:
        """Every byte played so far (less what ``take_played`` handed over)."""
        return b"".join(audio for _, audio in self._segments)

    @property
    def log(self) -> list[Played]:
        """What played and when: the segments, in order (``heard`` is their audio joined)."""
        return [Played(start, bytes(audio)) for start, audio in self._segments if audio]

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def pending_marks(self) -> list[str]:
        return [item for item in self._queue if isinstance(item, str)]

    def advance(self, now_ms: float) -> list[str]:
        """Play until ``now_ms``; the marks reached on the way."""
        if now_ms < self._clock:
            raise ValueError(f"the clock went back from {self._clock} to {now_ms} ms")
        self._credit += (now_ms - self._clock) * BYTES_PER_MS
        self._clock = now_ms
        echoed: list[str] = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                echoed.append(head)
                self._queue.popleft()
                continue
            take = min(len(head), int(self._credit))
            if take == 0:
                break
            self._segments[-1][1].extend(head[:take])
            self._credit -= take
            self._queued_bytes -= take
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
        if not self._queue:
            # Idle time is not banked: audio arriving later starts playing when it arrives.
            self._credit = 0.0
        return echoed

    def add_audio(self, audio: bytes, now_ms: float) -> list[str]:
        """Queue ``audio`` behind whatever is playing."""
        echoed = self.advance(now_ms)
        if audio:
            if self._queued_bytes == 0:
                # An idle buffer: playback starts now, a new segment of the log.
                self._segments.append((now_ms, bytearray()))
            self._queue.append(audio)
            self._queued_bytes += len(audio)
        return echoed

    def add_mark(self, name: str, now_ms: float) -> list[str]:
        """Queue a mark; it is echoed at once when nothing is queued ahead of it."""
        echoed = self.advance(now_ms)
        self._queue.append(name)
        return echoed + self.advance(now_ms)

    def clear(self, now_ms: float) -> list[str]:
        """Drop the queued audio; every pending mark is echoed now."""
        echoed = self.advance(now_ms)
        echoed += self.pending_marks
        if self._segments and not self._segments[-1][1]:
            self._segments.pop()  # cut before its first byte played: nothing to log
        self._queue.clear()
        self._queued_bytes = 0
        self._credit = 0.0
        return echoed

    def next_mark_due(self) -> float | None:
        """The clock time at which the next queued mark will be reached, or None."""
        ahead = 0
        for item in self._queue:
            if isinstance(item, str):
                return self._clock + max(0.0, ahead - self._credit) / BYTES_PER_MS
            ahead += len(item)
        return None

    def drained_at(self) -> float:
        """The clock time at which everything queued will have played."""
        return self._clock + max(0.0, self._queued_bytes - self._credit) / BYTES_PER_MS

    def take_played(self, until_ms: float) -> list[Played]:
        """Hand over the bytes that finished playing by ``until_ms`` (at most the clock) and
        forget them: they leave ``log`` and ``heard``. The segment still playing keeps its
        later bytes, its start moved past the ones handed over."""
        until_ms = min(until_ms, self._clock)
        taken: list[Played] = []
        kept: list[tuple[float, bytearray]] = []
        last = len(self._segments) - 1
        for index, (start, audio) in enumerate(self._segments):
            done = min(len(audio), max(0, int((until_ms - start) * BYTES_PER_MS)))
            if done:
                taken.append(Played(start, bytes(audio[:done])))
                del audio[:done]
                start += done / BYTES_PER_MS
            if audio or index == last:
                kept.append((start, audio))
        self._segments = kept
        return taken
