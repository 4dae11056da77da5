"""Realistic Media Streams frames (docs/protocols.md §2.4), as dicts tests can vary."""

from __future__ import annotations

import base64
from typing import Any

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
CALL_SID = "CA" + "a1b2c3d4e5f60718" * 2
STREAM_SID = "MZ" + "fedcba9876543210" * 2


def connected() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(
    token: str = "opaque-per-call-token",
    call_sid: str = CALL_SID,
    stream_sid: str = STREAM_SID,
) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": token},
        },
        "streamSid": stream_sid,
    }


def media(
    audio: bytes = b"\x7f\xff\x00\x80" * 40,
    timestamp: str = "5",
    seq: str = "4",
    chunk: str = "2",
    stream_sid: str = STREAM_SID,
) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": seq,
        "media": {
            "track": "inbound",
            "chunk": chunk,
            "timestamp": timestamp,
            "payload": base64.b64encode(audio).decode("ascii"),
        },
        "streamSid": stream_sid,
    }


def dtmf(digit: str = "1", stream_sid: str = STREAM_SID) -> dict[str, Any]:
    return {
        "event": "dtmf",
        "streamSid": stream_sid,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def mark(name: str = "my label", stream_sid: str = STREAM_SID) -> dict[str, Any]:
    return {"event": "mark", "sequenceNumber": "4", "streamSid": stream_sid, "mark": {"name": name}}


def stop(call_sid: str = CALL_SID, stream_sid: str = STREAM_SID) -> dict[str, Any]:
    return {
        "event": "stop",
        "sequenceNumber": "5",
        "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid},
        "streamSid": stream_sid,
    }
