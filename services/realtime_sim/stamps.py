"""Stamped audio for the load bench's conversation load: whose it is, when it was sent, and
exactly what it must be.

Both ends run on one host and read the same clock (``time.monotonic_ns``, CLOCK_MONOTONIC), so a
stamp's send time, read where the audio arrives, is its one-way latency.

**Caller frames** (160 bytes, one 20 ms Twilio frame): a quiet header, then 118 bytes of body.
The header is a 4-byte magic and 19 bytes of fields (call, frame sequence number, send time,
speech flag, a CRC-16 of them) written one nibble per byte as μ-law codes 0xF0–0xFF, none
louder than 120 of 32768: a stamped pause stays below the simulator's VAD threshold (−55 dBFS
at worst against −45). A speech frame's body is loud pseudo-random μ-law, a pause's is μ-law
silence (0xFF).

**Reply units**: each delta of a stamped reply is one unit: a 27-byte binary header (magic,
call, response number, delta index, length, send time) and pseudo-random bytes up to the
delta's length, drawn from where the header's fields say (an altered header shows too). The
bridge may cut and join deltas as it likes (the edge re-frames them into 20 ms frames); the
listener reads the byte stream back into units and checks every byte.
"""

from __future__ import annotations

import binascii
import random
import struct
from dataclasses import dataclass
from typing import Final

from shared.audio import FRAME_BYTES, SILENCE_BYTE

__all__ = [
    "CALLER_HEADER_BYTES",
    "UNIT_HEADER",
    "UNIT_MAGIC",
    "CallerStamp",
    "UnitHeader",
    "caller_frame",
    "read_caller_frame",
    "read_unit_header",
    "reply_unit",
    "unit_bytes",
]

# --- caller frames ---------------------------------------------------------------------------

_CALLER_MAGIC: Final = b"\x75\xfa\x7c\xf3"  # quiet codes too
_CALLER_FIELDS: Final = struct.Struct(">IIQB")  # call, seq, sent_ns, speech
_CHECK: Final = struct.Struct(">H")  # binascii.crc_hqx of the fields
CALLER_HEADER_BYTES: Final = len(_CALLER_MAGIC) + 2 * (_CALLER_FIELDS.size + _CHECK.size)
_CALLER_BODY: Final = FRAME_BYTES - CALLER_HEADER_BYTES
# Hex digits ⇄ quiet μ-law codes, both ways, at C speed (bytes.translate).
_HEX: Final = b"0123456789abcdef"
_QUIET: Final = bytes(range(0xF0, 0x100))
_TO_QUIET: Final = bytes.maketrans(_HEX, _QUIET)
_FROM_QUIET: Final = bytes.maketrans(_QUIET, _HEX)
_SILENT_BODY: Final = bytes([SILENCE_BYTE]) * _CALLER_BODY


def _loud_pool(size: int) -> bytes:
    """Pseudo-random μ-law codes of exponent 5 or more (|x| ≥ 1 000 of 32 768): loud."""
    rng = random.Random(0x5EED)
    loud = [b for b in range(256) if ((~b) & 0x70) >> 4 >= 5]
    return bytes(rng.choice(loud) for _ in range(size))


_LOUD: Final = _loud_pool(1 << 15)
_LOUD_SPAN: Final = len(_LOUD) - _CALLER_BODY


@dataclass(frozen=True, slots=True)
class CallerStamp:
    call: int
    seq: int
    sent_ns: int
    speech: bool
    exact: bool  # the body is exactly what the header says it must be


def _speech_body(call: int, seq: int) -> bytes:
    offset = (call * 7919 + seq * 104_729) % _LOUD_SPAN
    return _LOUD[offset : offset + _CALLER_BODY]


def caller_frame(call: int, seq: int, sent_ns: int, speech: bool) -> bytes:
    """Frame ``seq`` of call ``call``, sent at ``sent_ns``: speech or a pause."""
    fields = _CALLER_FIELDS.pack(call, seq, sent_ns, speech)
    fields += _CHECK.pack(binascii.crc_hqx(fields, 0))
    body = _speech_body(call, seq) if speech else _SILENT_BODY
    return _CALLER_MAGIC + binascii.hexlify(fields).translate(_TO_QUIET) + body


def read_caller_frame(frame: bytes) -> CallerStamp | None:
    """The stamp of a caller frame; None if it is not one (wrong size or magic, bad nibbles)."""
    if len(frame) != FRAME_BYTES or not frame.startswith(_CALLER_MAGIC):
        return None
    try:
        fields = binascii.unhexlify(
            frame[len(_CALLER_MAGIC) : CALLER_HEADER_BYTES].translate(_FROM_QUIET)
        )
    except binascii.Error:
        return None
    call, seq, sent_ns, speech = _CALLER_FIELDS.unpack_from(fields)
    (check,) = _CHECK.unpack_from(fields, _CALLER_FIELDS.size)
    if speech > 1 or check != binascii.crc_hqx(fields[: _CALLER_FIELDS.size], 0):
        return None
    body = frame[CALLER_HEADER_BYTES:]
    exact = body == (_speech_body(call, seq) if speech else _SILENT_BODY)
    return CallerStamp(call, seq, sent_ns, bool(speech), exact)


# --- reply units -----------------------------------------------------------------------------

UNIT_MAGIC: Final = b"\x5a\xa5\x3c"  # 0xFF (the edge's padding) never starts a unit
_UNIT_FIELDS: Final = struct.Struct(">IIIIQ")  # call, response, index, length, sent_ns
UNIT_HEADER: Final = len(UNIT_MAGIC) + _UNIT_FIELDS.size  # 27 bytes: 36 base64 characters
MAX_UNIT: Final = 1 << 15
_POOL: Final = random.Random(0x5A).randbytes(1 << 16)
_POOL_SPAN: Final = len(_POOL) - MAX_UNIT


@dataclass(frozen=True, slots=True)
class UnitHeader:
    call: int
    response: int
    index: int
    length: int  # of the whole unit, header included
    sent_ns: int


def _unit_body(call: int, response: int, index: int, size: int, sent_ns: int) -> bytes:
    offset = (call * 7919 + response * 65_537 + index * 104_729 + size + sent_ns) % _POOL_SPAN
    return _POOL[offset : offset + size]


def reply_unit(call: int, response: int, index: int, length: int, sent_ns: int) -> bytes:
    """Delta ``index`` of reply ``response`` to call ``call``: ``length`` bytes in all."""
    if not UNIT_HEADER <= length <= MAX_UNIT:
        raise ValueError(f"a reply unit is {UNIT_HEADER}..{MAX_UNIT} bytes, not {length}")
    header = UNIT_MAGIC + _UNIT_FIELDS.pack(call, response, index, length, sent_ns)
    return header + _unit_body(call, response, index, length - UNIT_HEADER, sent_ns)


def read_unit_header(data: bytes) -> UnitHeader | None:
    """The header at the start of ``data`` (at least UNIT_HEADER bytes); None if it is none."""
    if len(data) < UNIT_HEADER or not data.startswith(UNIT_MAGIC):
        return None
    header = UnitHeader(*_UNIT_FIELDS.unpack_from(data, len(UNIT_MAGIC)))
    return header if UNIT_HEADER <= header.length <= MAX_UNIT else None


def unit_bytes(header: UnitHeader) -> bytes:
    """The whole unit ``header`` names, exactly as it was sent."""
    return reply_unit(header.call, header.response, header.index, header.length, header.sent_ns)
