"""The files of Switchboard's own call recordings: one segment file per stream, and the stereo
WAV assembled from a call's segments (docs/recordings.md).

A segment file (``{RECORDINGS_DIR}/{call_sid}/{attached wall ms}-{stream_sid}.heard``) is a
sequence of records, appended as the call goes; each is a 13-byte header (kind, a signed 64-bit
position in samples, a 32-bit payload length; little-endian) and its payload:

- ``A``: the wall-clock time of the stream's ``media.timestamp`` 0, in samples since the Unix
  epoch (ms × 8); no payload. Every batch starts with one; the last one read wins.
- ``L``: caller audio (μ-law) at ``position`` on the stream's timeline.
- ``R``: model audio as the caller heard it, likewise.

Every record places itself, so a batch lost (never written) leaves a hole and nothing moves. A
record cut short by a crash ends the file's reading. Where pieces overlap, the later one written
wins.

Assembly lays each segment on the call's timeline (its anchor minus the earliest one) and
renders 16-bit PCM, 8 kHz, left the caller, right what they heard, silence elsewhere.
"""

from __future__ import annotations

import logging
import struct
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from services.edge.heard import Taken
from shared.audio import BYTES_PER_MS, SAMPLE_RATE, SILENCE_BYTE, ulaw_to_linear

__all__ = [
    "SEGMENT_SUFFIX",
    "Layout",
    "encode_batch",
    "layout",
    "segment_name",
    "wav_chunks",
]

logger = logging.getLogger("switchboard.edge.recordings")

SEGMENT_SUFFIX = ".heard"
_HEADER = struct.Struct("<cqI")
ANCHOR, LEFT, RIGHT = b"A", b"L", b"R"
_CHANNELS = {LEFT: 0, RIGHT: 1}
#: Longer than any call Twilio allows (4 h): what is past it is not rendered.
MAX_SAMPLES = 4 * 3600 * SAMPLE_RATE + 60 * SAMPLE_RATE
MAX_PAYLOAD = 16 * 1024 * 1024  # a larger length is a damaged header
BLOCK_SAMPLES = 10 * SAMPLE_RATE  # rendered 10 s at a time
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


def segment_name(attached_wall_ms: int, stream_sid: str) -> str:
    """Sorted by the time the stream attached, then unique by its stream."""
    return f"{attached_wall_ms:013d}-{stream_sid}{SEGMENT_SUFFIX}"


def encode_batch(taken: Taken, anchor_wall_ms: float) -> bytes:
    """One batch: the anchor, then the caller's pieces, then the heard ones."""
    parts = [_HEADER.pack(ANCHOR, round(anchor_wall_ms * BYTES_PER_MS), 0)]
    for kind, pieces in ((LEFT, taken.left), (RIGHT, taken.right)):
        for piece in pieces:
            parts.append(_HEADER.pack(kind, piece.at, len(piece.audio)))
            parts.append(piece.audio)
    return b"".join(parts)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    """A piece in a file: ``length`` bytes at ``offset`` of ``path``; ``at`` on its stream."""

    channel: int
    at: int
    path: Path
    offset: int
    length: int


def _read_segment(path: Path) -> tuple[int | None, list[_Stored]]:
    """A segment's last anchor and its pieces; reading stops at a damaged or cut record."""
    anchor: int | None = None
    pieces: list[_Stored] = []
    size = path.stat().st_size
    with path.open("rb") as file:
        offset = 0
        while offset + _HEADER.size <= size:
            kind, position, length = _HEADER.unpack(file.read(_HEADER.size))
            offset += _HEADER.size
            if kind not in (ANCHOR, LEFT, RIGHT) or length > MAX_PAYLOAD or offset + length > size:
                logger.warning("%s: damaged or cut record at byte %d; read up to it", path, offset)
                break
            if kind == ANCHOR:
                anchor = position
            elif length and position >= 0:
                pieces.append(_Stored(_CHANNELS[kind], position, path, offset, length))
            file.seek(length, 1)
            offset += length
    return anchor, pieces


@dataclass(frozen=True, slots=True)
class _Laid:
    """A stored piece on the call's timeline; ``seq``: the order it was written in."""

    start: int
    seq: int
    stored: _Stored

    @property
    def end(self) -> int:
        return self.start + self.stored.length


@dataclass(frozen=True, slots=True)
class Layout:
    """A call's pieces on its timeline (sample 0: the earliest stream's timestamp 0)."""

    pieces: list[_Laid]  # sorted by start
    samples: int
    segments: int
    longest: int  # the longest piece, for finding the pieces a block overlaps

    @property
    def wav_bytes(self) -> int:
        return _WAV_HEADER.size + self.samples * 4


def layout(call_dir: Path) -> Layout | None:
    """The call's recording as laid out from its segment files; None when there is none (no
    directory, no segment, no audio)."""
    if not call_dir.is_dir():
        return None
    segments = []
    for path in sorted(call_dir.glob("*" + SEGMENT_SUFFIX)):
        anchor, stored = _read_segment(path)
        if anchor is not None and stored:
            segments.append((anchor, stored))
    if not segments:
        return None
    origin = min(anchor for anchor, _ in segments)
    laid: list[_Laid] = []
    for anchor, stored in segments:
        shift, base = anchor - origin, len(laid)
        laid.extend(_Laid(shift + piece.at, base + i, piece) for i, piece in enumerate(stored))
    laid = [piece for piece in laid if piece.start < MAX_SAMPLES]
    if not laid:
        return None
    laid.sort(key=lambda piece: piece.start)
    samples = min(MAX_SAMPLES, max(piece.end for piece in laid))
    longest = max(piece.stored.length for piece in laid)
    return Layout(laid, samples, len(segments), longest)


def _wav_header(samples: int) -> bytes:
    channels, width = 2, 2
    data = samples * channels * width
    return _WAV_HEADER.pack(
        b"RIFF",
        36 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        SAMPLE_RATE,
        SAMPLE_RATE * channels * width,
        channels * width,
        width * 8,
        b"data",
        data,
    )


def _read(files: dict[Path, BinaryIO], stored: _Stored) -> bytes:
    file = files.get(stored.path)
    if file is None:
        file = files[stored.path] = stored.path.open("rb")
    file.seek(stored.offset)
    return file.read(stored.length)


def wav_chunks(plan: Layout) -> Iterator[bytes]:
    """The WAV file (header, then 10 s of stereo audio at a time): blocking file reads, for a
    thread (Starlette iterates a sync body in its threadpool)."""
    yield _wav_header(plan.samples)
    starts = [piece.start for piece in plan.pieces]
    files: dict[Path, BinaryIO] = {}
    try:
        for first in range(0, plan.samples, BLOCK_SAMPLES):
            last = min(first + BLOCK_SAMPLES, plan.samples)
            channels = [bytearray([SILENCE_BYTE]) * (last - first) for _ in range(2)]
            begin = bisect_left(starts, first - plan.longest)
            stop = bisect_left(starts, last)
            overlapping = [p for p in plan.pieces[begin:stop] if p.end > first]
            for piece in sorted(overlapping, key=lambda p: p.seq):  # later writes win
                audio = _read(files, piece.stored)
                lo, hi = max(first, piece.start), min(last, piece.start + len(audio))
                if lo < hi:
                    channel = channels[piece.stored.channel]
                    channel[lo - first : hi - first] = audio[lo - piece.start : hi - piece.start]
            stereo = np.empty((last - first, 2), dtype="<i2")
            stereo[:, 0] = ulaw_to_linear(bytes(channels[0]))
            stereo[:, 1] = ulaw_to_linear(bytes(channels[1]))
            yield stereo.tobytes()
    finally:
        for file in files.values():
            file.close()
