"""Re-framing model audio for Twilio, sans I/O.

The model sends audio in chunks of any size; uneven media messages make the phone jitter, so
the edge sends whole 20 ms frames (160 bytes) and keeps the remainder for the next chunk. The
model speaks faster than real time, so a chunk usually completes several frames: they go out
together, up to ``MAX_RUN_BYTES`` (100 ms) per media message, which is a fifth of the messages
(and of their JSON, base64 and WebSocket framing) one message per frame would cost. At the
end of an item's audio the last partial frame is padded with μ-law silence. A mark must not be
sent before the audio published ahead of it, so a mark that arrives while a remainder is held
waits until that remainder goes out, and then follows the frame that completes it (never a
longer run: that would place the mark later in the audio than the model put it).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.audio import FRAME_BYTES, SILENCE_BYTE

__all__ = ["MAX_RUN_BYTES", "Frame", "FrameMark", "Framer", "Output"]

#: The most audio one media message carries: five whole frames.
MAX_RUN_BYTES = 5 * FRAME_BYTES


@dataclass(frozen=True, slots=True)
class Frame:
    audio: bytes  # whole frames: a multiple of FRAME_BYTES, at most MAX_RUN_BYTES


@dataclass(frozen=True, slots=True)
class FrameMark:
    name: str


Output = Frame | FrameMark


class Framer:
    """Turns audio chunks and marks into an ordered list of runs of whole frames and marks."""

    def __init__(self) -> None:
        self._held = b""
        self._marks_waiting: list[str] = []

    @property
    def held_bytes(self) -> int:
        return len(self._held)

    def audio(self, chunk: bytes) -> list[Output]:
        """Runs of the frames completed by ``chunk``, with any marks they released."""
        data = self._held + chunk if self._held else chunk
        whole = len(data) - len(data) % FRAME_BYTES
        self._held = data[whole:]
        if not whole:
            return []
        out: list[Output] = []
        start = 0
        if self._marks_waiting:
            # The first frame carries the last of what was held when these marks arrived.
            out.append(Frame(data[:FRAME_BYTES]))
            out.extend(FrameMark(name) for name in self._marks_waiting)
            self._marks_waiting.clear()
            start = FRAME_BYTES
        out.extend(
            Frame(data[i : min(i + MAX_RUN_BYTES, whole)])
            for i in range(start, whole, MAX_RUN_BYTES)
        )
        return out

    def mark(self, name: str) -> list[Output]:
        """The mark now, or nothing if it must wait for the held remainder."""
        if self._held:
            self._marks_waiting.append(name)
            return []
        return [FrameMark(name)]

    def finish(self) -> list[Output]:
        """End of an item's audio: pad and send the remainder, then release waiting marks."""
        out: list[Output] = []
        if self._held:
            out.append(Frame(self._held + bytes([SILENCE_BYTE]) * (FRAME_BYTES - len(self._held))))
            self._held = b""
        out.extend(FrameMark(name) for name in self._marks_waiting)
        self._marks_waiting.clear()
        return out

    def clear(self) -> list[str]:
        """Barge-in: drop the remainder; return the waiting marks (now void, like Twilio's)."""
        self._held = b""
        names, self._marks_waiting = self._marks_waiting, []
        return names
