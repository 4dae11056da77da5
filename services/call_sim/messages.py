"""The JSON text frames Twilio sends on a Media Streams socket (docs/protocols.md §2.4), sans I/O.

Numeric-looking fields are strings, as Twilio sends them; ``sequenceNumber`` counts every
message after ``connected`` on one stream, from "1".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from shared.audio import SAMPLE_RATE

__all__ = [
    "connected_message",
    "mark_echo",
    "media_message",
    "start_message",
    "stop_message",
]


def _dump(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


def connected_message() -> str:
    return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    sequence: int,
    stream_sid: str,
    account_sid: str,
    call_sid: str,
    custom_parameters: Mapping[str, str],
) -> str:
    return _dump(
        {
            "event": "start",
            "sequenceNumber": str(sequence),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {
                    "encoding": "audio/x-mulaw",
                    "sampleRate": SAMPLE_RATE,
                    "channels": 1,
                },
                "customParameters": dict(custom_parameters),
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    sequence: int, stream_sid: str, chunk: int, timestamp_ms: int, audio: bytes
) -> str:
    return _dump(
        {
            "event": "media",
            "sequenceNumber": str(sequence),
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(audio).decode("ascii"),
            },
            "streamSid": stream_sid,
        }
    )


def mark_echo(sequence: int, stream_sid: str, name: str) -> str:
    return _dump(
        {
            "event": "mark",
            "sequenceNumber": str(sequence),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def dtmf_message(sequence: int, stream_sid: str, digit: str) -> str:
    """A key the caller pressed, as Twilio sends it (bidirectional streams only)."""
    return _dump(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def stop_message(sequence: int, stream_sid: str, account_sid: str, call_sid: str) -> str:
    return _dump(
        {
            "event": "stop",
            "sequenceNumber": str(sequence),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )
