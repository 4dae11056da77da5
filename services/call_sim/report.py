"""What a simulated call is asked to do (``CallConfig``) and what happened (``CallReport``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from shared.audio import FRAME_BYTES

__all__ = ["ASSET_AUDIO", "CallConfig", "CallFailed", "CallReport", "Timings"]

ASSET_AUDIO: Final = Path(__file__).parent / "assets" / "caller.ulaw"


@dataclass
class CallConfig:
    """One call. URLs the edge hands out name ``public_url``; they are sent to ``edge_urls``.

    ``edge_urls`` play the load balancer: a request goes to the current edge, and to the next
    one in the list when the current one refuses connections (an edge crash).
    """

    edge_urls: list[str]
    public_url: str  # what the edge believes it is reached at, e.g. https://edge.example.com
    auth_token: str
    caller_audio: bytes | None = None  # raw μ-law 8 kHz; None: the bundled caller.ulaw
    hold_s: float = 0.0  # μ-law silence sent after the audio while waiting for the reply
    # Then, sending nothing (as some calls are seen not to send silence), stay on the line
    # until the edge has been quiet for quiet_s and its audio has played, at most linger_s:
    # an echo or a reply still in flight would otherwise be cut off. 0: hang up at once.
    linger_s: float = 2.0
    quiet_s: float = 0.5
    call_sid: str | None = None  # "CA" + 32 hex; random when None
    account_sid: str | None = None  # "AC" + 32 hex; random when None
    from_number: str = "+15005550006"
    to_number: str = "+15005550001"
    voice_path: str = "/twilio/voice"  # the number's Voice URL is public_url + voice_path
    extra_params: dict[str, str] = field(default_factory=dict)  # more webhook form fields
    follow_redirects: bool = True
    max_redirects: int = 5
    send_stop: bool = True  # False: close the socket without a stop message
    status_callbacks: bool = True  # POST the <Stream statusCallback> events
    frame_bytes: int | None = FRAME_BYTES  # the outbound media size to insist on; None: any
    timeout_s: float | None = None  # whole call; None: audio + hold + 30 s
    http_timeout_s: float = 10.0
    strict: bool = False  # raise CallFailed instead of only reporting
    # Keys the caller presses: (seconds after the stream starts, digit), on the first stream.
    dtmf: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Timings:
    webhook_ms: list[float] = field(default_factory=list)  # each webhook's round trip
    connect_ms: list[float] = field(default_factory=list)  # each WebSocket handshake
    first_audio_ms: float | None = None  # first webhook sent → first media byte received
    duration_ms: float = 0.0


@dataclass
class CallReport:
    """Everything observed on one call. Audio is raw μ-law; ``heard`` ⊆ ``received``."""

    call_sid: str
    account_sid: str
    stream_sids: list[str] = field(default_factory=list)
    twiml: list[str] = field(default_factory=list)  # each document, as received
    sent_audio: bytes = b""  # every media payload sent, padding and hold silence included
    heard_audio: bytes = b""  # what the playout buffer actually played
    received_audio: bytes = b""  # every media payload received, in order, played or not
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    protocol_violations: list[str] = field(default_factory=list)
    closed_by: str | None = None  # "edge" or "caller" (last stream); None: never connected
    close_codes: list[int | None] = field(default_factory=list)  # per stream, from the edge
    redirects: list[str] = field(default_factory=list)  # URLs followed after a stream ended
    said: list[str] = field(default_factory=list)  # <Say> texts
    notes: list[str] = field(default_factory=list)  # non-fatal observations
    error: str | None = None  # why the call failed, if it did
    timings: Timings = field(default_factory=Timings)

    @property
    def close_code(self) -> int | None:
        return self.close_codes[-1] if self.close_codes else None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.protocol_violations

    def problems(self) -> list[str]:
        """The failure and the violations, one line each."""
        return ([f"call failed: {self.error}"] if self.error else []) + self.protocol_violations

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary; audio appears as its length, duration and SHA-256."""

        def audio(data: bytes) -> dict[str, Any]:
            sha = hashlib.sha256(data).hexdigest()
            return {"bytes": len(data), "seconds": len(data) / 8000, "sha256": sha}

        return {
            "call_sid": self.call_sid,
            "account_sid": self.account_sid,
            "ok": self.ok,
            "error": self.error,
            "protocol_violations": self.protocol_violations,
            "stream_sids": self.stream_sids,
            "closed_by": self.closed_by,
            "close_codes": self.close_codes,
            "redirects": self.redirects,
            "said": self.said,
            "notes": self.notes,
            "sent_audio": audio(self.sent_audio),
            "received_audio": audio(self.received_audio),
            "heard_audio": audio(self.heard_audio),
            "marks_received": self.marks_received,
            "marks_echoed": self.marks_echoed,
            "clears": self.clears,
            "timings": {
                "webhook_ms": self.timings.webhook_ms,
                "connect_ms": self.timings.connect_ms,
                "first_audio_ms": self.timings.first_audio_ms,
                "duration_ms": self.timings.duration_ms,
            },
            "twiml": self.twiml,
        }


class CallFailed(Exception):
    """Raised in strict mode; ``report`` holds what was observed up to the failure."""

    def __init__(self, report: CallReport) -> None:
        super().__init__("; ".join(report.problems()))
        self.report = report
