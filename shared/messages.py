"""Messages that travel through Redis, and their wire format.

Every stream entry has one field, ``m``, holding one msgpack array::

    [tag, version, field1, field2, ...]

Audio stays raw μ-law bytes (msgpack ``bin``): it is base64-encoded only at the WebSocket
borders, exactly once each way. ``decode`` checks the tag, the version, the number of fields and
the type of each field, so a malformed entry becomes a ``DecodeError`` rather than a wrong value.

Streams and what they carry:

- dispatch: ``CallDispatch``
- ``:in`` (edge → worker): ``StreamStarted``, ``StreamDetached``, ``InboundAudio``,
  ``MarkPlayed``, ``DtmfPressed``, ``CallStopped``
- ``:out`` (worker → edge): ``OutboundAudio``, ``PlaybackMark``, ``AudioDone``,
  ``ClearPlayback``, ``Hangup``
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Final

import msgpack

from shared.errors import DecodeError

__all__ = [
    "ENTRY_FIELD",
    "AudioDone",
    "CallAnswered",
    "CallDispatch",
    "CallStopped",
    "ClearPlayback",
    "DtmfPressed",
    "Hangup",
    "InboundAudio",
    "InboundMessage",
    "MarkPlayed",
    "Message",
    "OutboundAudio",
    "OutboundMessage",
    "PlaybackMark",
    "StreamDetached",
    "StreamStarted",
    "decode",
    "encode",
]

ENTRY_FIELD: Final = b"m"
SCHEMA_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class CallDispatch:
    """A call waiting for a worker. ``reason``: ``new``, ``lease-lost``, ``handoff``, or
    ``TRANSFER_FAILED`` (back from a transfer: the worker tells the model)."""

    TRANSFER_FAILED: ClassVar[str] = "transfer_failed"
    TAG: ClassVar[int] = 1
    call_sid: str
    reason: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """Twilio's stream reached an edge (first attach, or re-attach after an edge failover)."""

    TAG: ClassVar[int] = 10
    stream_sid: str
    edge_id: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class StreamDetached:
    """The Twilio socket closed without ``stop``: Twilio may bring the call to another edge."""

    TAG: ClassVar[int] = 15
    edge_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class InboundAudio:
    """Caller audio: raw μ-law. ``twilio_ms`` is Twilio's ``media.timestamp`` (stream clock)."""

    TAG: ClassVar[int] = 11
    audio: bytes
    twilio_ms: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """Twilio echoed a mark: the audio before it was played, or cleared."""

    TAG: ClassVar[int] = 12
    name: str


@dataclass(frozen=True, slots=True)
class DtmfPressed:
    TAG: ClassVar[int] = 13
    digit: str


@dataclass(frozen=True, slots=True)
class CallStopped:
    """The caller's side ended: Twilio ``stop`` or the socket closed for good."""

    TAG: ClassVar[int] = 14
    reason: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Who answered an outbound call, by Twilio's answering-machine detection: ``human``,
    ``machine_end_beep``/``_silence``/``_other``, ``machine_start``, ``fax`` or ``unknown``."""

    TAG: ClassVar[int] = 16
    answered_by: str
    detection_ms: int


@dataclass(frozen=True, slots=True)
class OutboundAudio:
    """Model audio for the caller: raw μ-law, any length (the edge re-frames it)."""

    TAG: ClassVar[int] = 20
    audio: bytes
    item_id: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class PlaybackMark:
    """Ask Twilio to report when the audio published before this mark has been played."""

    TAG: ClassVar[int] = 21
    name: str


@dataclass(frozen=True, slots=True)
class AudioDone:
    """The item's audio is complete: pad the last partial frame with silence and send it."""

    TAG: ClassVar[int] = 22
    item_id: str


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Barge-in: drop the item's queued audio and send Twilio ``clear``."""

    TAG: ClassVar[int] = 23
    item_id: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The worker ends the call: the edge closes the Twilio stream."""

    TAG: ClassVar[int] = 24
    reason: str


InboundMessage = (
    StreamStarted
    | StreamDetached
    | InboundAudio
    | MarkPlayed
    | DtmfPressed
    | CallStopped
    | CallAnswered
)
OutboundMessage = OutboundAudio | PlaybackMark | AudioDone | ClearPlayback | Hangup
Message = CallDispatch | InboundMessage | OutboundMessage

_MESSAGE_TYPES: tuple[type[Message], ...] = (
    CallDispatch,
    StreamStarted,
    StreamDetached,
    InboundAudio,
    MarkPlayed,
    DtmfPressed,
    CallStopped,
    CallAnswered,
    OutboundAudio,
    PlaybackMark,
    AudioDone,
    ClearPlayback,
    Hangup,
)
_TYPE_OF_ANNOTATION: Final[dict[str, type]] = {
    "str": str,
    "bytes": bytes,
    "int": int,
    "float": float,
}
_SCHEMAS: Final[dict[int, tuple[type[Message], tuple[type, ...]]]] = {
    cls.TAG: (cls, tuple(_TYPE_OF_ANNOTATION[str(f.type)] for f in fields(cls)))
    for cls in _MESSAGE_TYPES
}
_packb = msgpack.Packer(use_bin_type=True).pack


def encode(message: Message) -> bytes:
    """Serialise a message for a stream entry's ``m`` field."""
    # Field order is the dataclass order; __slots__ lists it without building a dict.
    packed: bytes = _packb(
        (message.TAG, SCHEMA_VERSION, *(getattr(message, f) for f in message.__slots__))
    )
    return packed


def decode(data: bytes) -> Message:
    """Parse a stream entry's ``m`` field. Raises ``DecodeError`` naming what was wrong."""
    try:
        values = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise DecodeError(f"not a msgpack message: {exc}") from exc
    if type(values) is not tuple or len(values) < 2:
        raise DecodeError(f"expected [tag, version, ...], got {type(values).__name__}")
    tag, version, *body = values
    schema = _SCHEMAS.get(tag) if type(tag) is int else None
    if schema is None:
        raise DecodeError(f"unknown message tag {tag!r}")
    cls, types = schema
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DecodeError(f"{cls.__name__}: unsupported schema version {version!r}")
    if len(body) != len(types):
        raise DecodeError(f"{cls.__name__}: expected {len(types)} fields, got {len(body)}")
    for value, expected, name in zip(body, types, cls.__slots__, strict=True):
        if type(value) is not expected and not (expected is float and type(value) is int):
            raise DecodeError(
                f"{cls.__name__}.{name}: expected {expected.__name__}, got {type(value).__name__}"
            )
    return cls(*body)
