"""What the caller says, frame by frame, in real time. Pure: no I/O.

A caller keeps talking whatever happens to the Media Streams socket: frame ``i`` is spoken
``i × 20 ms`` after the first stream started. When a stream ends and Twilio reconnects the call
(a ``<Redirect>`` to a new ``<Connect><Stream>``), the new stream starts with the frame being
spoken *now*; what the caller said in between reached no stream and is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SILENCE_BYTE

__all__ = ["Outgoing", "caller_frames"]


def caller_frames(audio: bytes, hold_s: float) -> list[bytes]:
    """The caller's 160-byte frames: ``audio`` (its last frame padded with μ-law silence, as a
    phone line never sends part of a frame), then ``hold_s`` seconds of silence frames."""
    padded = audio + bytes([SILENCE_BYTE]) * (-len(audio) % FRAME_BYTES)
    frames = [padded[i : i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES)]
    hold_frames = round(hold_s * SAMPLE_RATE / FRAME_BYTES)
    return frames + [bytes([SILENCE_BYTE]) * FRAME_BYTES] * hold_frames


@dataclass
class Outgoing:
    """The caller's frames for the whole call, shared by its streams in turn.

    ``origin`` is the (loop) time frame 0 was due: the moment the first stream could send
    media. ``lost`` lists the [start, end) frame ranges no stream carried because the caller
    spoke them while Twilio was reconnecting.
    """

    frames: list[bytes]
    next_index: int = 0
    origin: float | None = None
    lost: list[tuple[int, int]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.next_index >= len(self.frames)

    def due_at(self, index: int) -> float:
        """When frame ``index`` is spoken (loop time). Only after ``resume``."""
        if self.origin is None:
            raise RuntimeError("no stream has started yet")
        return self.origin + index * FRAME_MS / 1000

    def resume(self, now: float) -> None:
        """A stream is ready to carry media at ``now``: the first one sets the clock; a later
        one skips (and records as lost) every unsent frame whose time has passed."""
        if self.origin is None:
            self.origin = now
            return
        due = min(int((now - self.origin) * 1000 // FRAME_MS), len(self.frames))
        if due > self.next_index:
            self.lost.append((self.next_index, due))
            self.next_index = due

    @property
    def lost_byte_ranges(self) -> list[tuple[int, int]]:
        """``lost`` as byte ranges of the caller's whole audio (the frames joined)."""
        return [(start * FRAME_BYTES, end * FRAME_BYTES) for start, end in self.lost]
