"""The identifiable frame pattern: a frame says which call and which frame it is.

A frame is 160 bytes of μ-law: a 2-byte magic, the call index and the frame's sequence number
(big-endian uint32 each), then 150 pseudo-random bytes taken from a fixed pool at an offset
derived from both numbers. The receiver rebuilds the expected frame from the header and compares
all 160 bytes, so any corruption, truncation or swap between calls is caught.
"""

from __future__ import annotations

import random
import struct
from typing import Final

from shared.audio import FRAME_BYTES

__all__ = ["FRAME_BYTES", "HEADER", "decode_frame", "encode_frame", "is_exact"]

MAGIC: Final = b"\xa5\x5a"
HEADER: Final = struct.Struct(">2sII")
_BODY: Final = FRAME_BYTES - HEADER.size
# Random bytes rather than a counter: a relay that mixed up offsets would still match a counter.
_POOL: Final = random.Random(0x5B).randbytes(1 << 16)
_SPAN: Final = len(_POOL) - _BODY


def _body(call: int, seq: int) -> bytes:
    offset = (call * 7919 + seq * 104_729) % _SPAN
    return _POOL[offset : offset + _BODY]


def encode_frame(call: int, seq: int) -> bytes:
    """The frame number ``seq`` of call ``call`` (both 0 ≤ n < 2**32)."""
    return HEADER.pack(MAGIC, call, seq) + _body(call, seq)


def decode_frame(frame: bytes) -> tuple[int, int] | None:
    """(call, seq) named by the frame's header; None if it is not one of ours."""
    if len(frame) != FRAME_BYTES or frame[:2] != MAGIC:
        return None
    _, call, seq = HEADER.unpack_from(frame)
    return call, seq


def is_exact(frame: bytes, call: int, seq: int) -> bool:
    """True when ``frame`` is exactly frame ``seq`` of ``call``."""
    return frame == encode_frame(call, seq)
