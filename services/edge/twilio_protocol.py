"""Twilio Media Streams, sans I/O: parse what Twilio sends, build what we send back.

``parse_message`` turns one text frame into a typed event or raises ``TwilioProtocolError``
whose ``kind`` names the fault (for the malformed-input counter). ``TwilioStream`` enforces the
order of events on one socket: AWAITING_START → STREAMING → STOPPED. The builders return the
exact JSON Twilio accepts: ``media``, ``mark`` and ``clear`` with no extra fields
(docs/protocols.md §2.5), the payload base64-encoded exactly once.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

import orjson

from shared.errors import TwilioProtocolError

__all__ = [
    "CALL_SID_RE",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "Start",
    "Stop",
    "StreamState",
    "TwilioEvent",
    "TwilioStream",
    "Unknown",
    "clear_message",
    "mark_message",
    "media_message",
    "parse_message",
]

CALL_SID_RE: Final = re.compile(r"CA[0-9a-f]{32}")
STREAM_SID_RE: Final = re.compile(r"MZ[0-9a-f]{32}")
_DTMF_DIGITS: Final = frozenset("0123456789*#")
_MULAW: Final = "audio/x-mulaw"
_INBOUND: Final = "inbound"
_MAX_TIMESTAMP_DIGITS: Final = 15  # ~31,700 years of milliseconds; fits an int64


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(hash=False)
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    timestamp_ms: int
    payload: bytes  # raw μ-law, decoded once from base64


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event type this version does not know; Twilio may add new ones."""

    event: str


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop | Unknown


def _fail(kind: str, detail: str) -> TwilioProtocolError:
    return TwilioProtocolError(detail, kind=kind)


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if type(value) is not str:
        if value is None:
            raise _fail("missing_field", f"{where}.{key} is missing")
        raise _fail("bad_field", f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if type(value) is not dict:
        if value is None:
            raise _fail("missing_field", f"{where}.{key} is missing")
        raise _fail("bad_field", f"{where}.{key} must be an object, got {type(value).__name__}")
    return value


def _parse_media(msg: dict[str, Any]) -> Media:
    media = _obj(msg, "media", "media")
    payload = _str(media, "payload", "media")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail("bad_base64", f"media.payload is not valid base64: {exc}") from None
    raw_ts = _str(media, "timestamp", "media")
    # ASCII digits only, and few enough to fit the int64 the Redis message carries: int()
    # alone takes signs, spaces, underscores and other scripts' digits, and values that msgpack
    # cannot encode.
    if not (raw_ts.isascii() and raw_ts.isdigit() and len(raw_ts) <= _MAX_TIMESTAMP_DIGITS):
        raise _fail("bad_field", f"media.timestamp must be digits, got {raw_ts[:20]!r}")
    track = media.get("track", _INBOUND)
    if track != _INBOUND:
        # A bidirectional stream carries only the caller's track; anything else is not theirs.
        raise _fail("wrong_track", f"media.track must be {_INBOUND!r}, got {str(track)[:20]!r}")
    return Media(_str(msg, "streamSid", "media"), int(raw_ts), audio)


def _parse_start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start", "start")
    stream_sid = _str(start, "streamSid", "start")
    if not STREAM_SID_RE.fullmatch(stream_sid):
        raise _fail("bad_field", f"start.streamSid is not a stream sid: {stream_sid[:40]!r}")
    call_sid = _str(start, "callSid", "start")
    if not CALL_SID_RE.fullmatch(call_sid):
        raise _fail("bad_field", f"start.callSid is not a call sid: {call_sid[:40]!r}")
    params = start.get("customParameters") or {}
    if type(params) is not dict or not all(type(v) is str for v in params.values()):
        raise _fail("bad_field", "start.customParameters must map names to strings")
    fmt = _obj(start, "mediaFormat", "start")
    tracks = start.get("tracks", [])
    if type(tracks) is not list or not all(type(t) is str for t in tracks):
        raise _fail("bad_field", "start.tracks must be a list of strings")
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")
    if (encoding, rate, channels) != (_MULAW, 8000, 1):
        raise _fail(
            "bad_media_format",
            f"start.mediaFormat must be {_MULAW} 8000 Hz mono, got {encoding!r} {rate!r} Hz "
            f"{channels!r} channel(s)",
        )
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=_str(start, "accountSid", "start"),
        tracks=tuple(tracks),
        custom_parameters=params,
        encoding=_MULAW,
        sample_rate=8000,
        channels=1,
    )


def _parse_dtmf(msg: dict[str, Any]) -> Dtmf:
    digit = _str(_obj(msg, "dtmf", "dtmf"), "digit", "dtmf")
    if digit not in _DTMF_DIGITS:
        raise _fail("bad_field", f"dtmf.digit must be one of 0-9 * #, got {digit[:5]!r}")
    return Dtmf(_str(msg, "streamSid", "dtmf"), digit)


def _parse_mark(msg: dict[str, Any]) -> Mark:
    return Mark(_str(msg, "streamSid", "mark"), _str(_obj(msg, "mark", "mark"), "name", "mark"))


def _parse_stop(msg: dict[str, Any]) -> Stop:
    stop = msg.get("stop")
    call_sid = stop.get("callSid", "") if type(stop) is dict else ""
    return Stop(_str(msg, "streamSid", "stop"), call_sid if type(call_sid) is str else "")


def _parse_connected(msg: dict[str, Any]) -> Connected:
    return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], TwilioEvent]]] = {
    "media": _parse_media,
    "start": _parse_start,
    "mark": _parse_mark,
    "dtmf": _parse_dtmf,
    "stop": _parse_stop,
    "connected": _parse_connected,
}


def parse_message(text: str | bytes) -> TwilioEvent:
    """Parse one Media Streams text frame.

    Raises ``TwilioProtocolError`` (``kind``: not_json, not_object, missing_field, bad_field,
    bad_base64, bad_media_format, wrong_track) for anything Twilio would never send.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _fail("not_json", "frame is not JSON") from None
    if type(msg) is not dict:
        raise _fail("not_object", f"frame must be a JSON object, got {type(msg).__name__}")
    event = msg.get("event")
    if type(event) is not str:
        raise _fail("missing_field", "frame has no string 'event'")
    parser = _PARSERS.get(event)
    if parser is None:
        return Unknown(event)
    return parser(msg)


class StreamState(Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class TwilioStream:
    """The order of events on one Media Streams socket.

    ``accept(event)`` returns the event when it is legal in the current state and raises
    ``TwilioProtocolError`` (kinds: before_start, duplicate_start, wrong_stream, after_stop)
    otherwise, so that the caller can count it and drop it.
    """

    def __init__(self) -> None:
        self.state = StreamState.AWAITING_START
        self.stream_sid: str | None = None

    def accept(self, event: TwilioEvent) -> TwilioEvent:
        if isinstance(event, Connected | Unknown):
            return event
        if self.state is StreamState.STOPPED:
            raise _fail("after_stop", f"{type(event).__name__.lower()} after stop")
        if isinstance(event, Start):
            if self.state is not StreamState.AWAITING_START:
                raise _fail("duplicate_start", "a second start on one stream")
            self.state = StreamState.STREAMING
            self.stream_sid = event.stream_sid
            return event
        if self.state is StreamState.AWAITING_START:
            raise _fail("before_start", f"{type(event).__name__.lower()} before start")
        if event.stream_sid != self.stream_sid:
            raise _fail("wrong_stream", f"{type(event).__name__.lower()} for another streamSid")
        if isinstance(event, Stop):
            self.state = StreamState.STOPPED
        return event


def media_message(stream_sid: str, audio: bytes) -> str:
    """The ``media`` message for raw μ-law ``audio`` (base64-encoded here, once)."""
    payload = binascii.b2a_base64(audio, newline=False).decode("ascii")
    # stream_sid matched STREAM_SID_RE and base64 needs no JSON escaping: plain concatenation
    # is exact and twice as fast as a JSON encoder on the hottest path of the edge.
    return (
        '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"' + payload + '"}}'
    )


def mark_message(stream_sid: str, name: str) -> str:
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def clear_message(stream_sid: str) -> str:
    return '{"event":"clear","streamSid":"' + stream_sid + '"}'
