"""What a simulated call is asked to do (``CallConfig``) and what happened (``CallReport``)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

from services.call_sim.callee import Callee
from services.call_sim.playback import Played
from services.call_sim.recording import Recording
from services.call_sim.signing import HMAC_SHA256, new_shared_key_id
from services.call_sim.stream_end import AbruptDrop
from shared.audio import FRAME_BYTES, SAMPLE_RATE

__all__ = [
    "ASSET_AUDIO",
    "CallConfig",
    "CallFailed",
    "CallReport",
    "CallbackRecord",
    "DialRecord",
    "StreamAudio",
    "Timings",
]

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
    # An echoing far end (the realtime simulator's echo mode): while less has come back than
    # was sent, only this much quiet ends the wait, so a loaded machine's stall of the echo
    # does not hang up on it. None: quiet_s throughout.
    echo_quiet_s: float | None = None
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
    frame_bytes: int | None = FRAME_BYTES  # media payloads must be whole such frames; None: any
    timeout_s: float | None = None  # whole call; None: audio + hold + 30 s
    http_timeout_s: float = 10.0
    strict: bool = False  # raise CallFailed instead of only reporting
    # Keys the caller presses: (seconds after the stream starts, digit), on the first stream.
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    # Sign with a Twilio SharedKey (as when a Webhook Rule matches) instead of auth_token:
    # its secret, its id and the Setting's algorithm, named in the settings header.
    shared_key: str | None = None
    shared_key_id: str = field(default_factory=new_shared_key_id)
    signature_algorithm: str = HMAC_SHA256
    # A stream the edge drops without a close frame (Twilio error 31903): "end" the call (the
    # conservative reading) or "continue" with the next verb, as after a clean close.
    abrupt_drop: AbruptDrop = "end"
    # Seconds Twilio takes between a stream's end and its next request (the <Redirect>);
    # real Twilio takes some time, not documented. The caller's audio meanwhile is lost.
    reconnect_delay_s: float = 0.0
    # The person a <Dial> rings: "answer", "no-answer", "busy" or "failed"; how long the phone
    # rings before they answer or it is given up (never longer than the <Dial timeout>); how long
    # they stay on once bridged, then hang up.
    callee: Callee = "answer"
    callee_ring_s: float = 1.0
    callee_talk_s: float = 1.0
    # The Direction every request carries: "inbound" for a call to one of the account's
    # numbers; "outbound-api" for one the REST API created (twilio_api.py places those).
    direction: str = "inbound"


@dataclass
class Timings:
    webhook_ms: list[float] = field(default_factory=list)  # each webhook's round trip
    connect_ms: list[float] = field(default_factory=list)  # each WebSocket handshake
    first_audio_ms: float | None = None  # first webhook sent → first media byte received
    duration_ms: float = 0.0


@dataclass
class StreamAudio:
    """One stream's share of the call's audio (raw μ-law). ``sent`` is contiguous: its first
    byte was spoken at ``sent_at_ms``; ``played`` is the playout log (``playback.py``), both on
    the call's clock (ms since the call began, as ``media_arrivals``)."""

    stream_sid: str
    sent: bytes = b""
    received: bytes = b""
    heard: bytes = b""
    sent_at_ms: float | None = None  # None: nothing was sent
    played: list[Played] = field(default_factory=list)


@dataclass
class CallbackRecord:
    """One callback the simulated Twilio requested (best effort: a failure is not fatal)."""

    kind: str  # "stream-status", "call-status", "amd-status" or "recording-status"
    event: str  # e.g. "stream-started", "ringing", "completed"
    url: str
    method: str
    params: dict[str, str]
    at_ms: float  # on the call's clock
    http_status: int | None = None  # None: no answer (see error)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "event": self.event,
            "url": self.url,
            "method": self.method,
            "params": self.params,
            "at_ms": self.at_ms,
            "http_status": self.http_status,
            "error": self.error,
        }


@dataclass
class DialRecord:
    """One ``<Dial>`` the call executed, and what came of it."""

    noun: str | None  # "number" or "sip"; None when there was nothing the simulator could ring
    address: str | None  # the number or SIP URI rung
    caller_id: str | None  # the callerId attribute, if any
    from_number: str  # the From of the called party's leg: callerId, else the caller's number
    timeout_s: int
    action: str | None
    callee: str  # the configured behaviour
    after_streams: int  # streams the call had had when the <Dial> began
    ring_s: float = 0.0  # how long it rang
    dial_call_sid: str | None = None
    dial_call_status: str | None = None  # as sent to the action (or that would have been)
    dial_call_duration: int | None = None
    bridged: bool = False
    whisper_url: str | None = None  # the <Number url> / <Sip url> requested, if any
    whisper: list[str] = field(default_factory=list)  # the <Say> texts the person heard
    whisper_declined: bool = False  # the person hung up in the whisper
    connected_s: float = 0.0  # from the answer to the callee's hang-up
    action_http_status: int | None = None
    action_answer: list[str] = field(default_factory=list)  # the action's verbs, in order
    error: str | None = None  # why the <Dial> broke the call, if it did

    def to_dict(self) -> dict[str, Any]:
        return {
            "noun": self.noun,
            "address": self.address,
            "caller_id": self.caller_id,
            "from": self.from_number,
            "timeout_s": self.timeout_s,
            "action": self.action,
            "callee": self.callee,
            "after_streams": self.after_streams,
            "ring_s": self.ring_s,
            "dial_call_sid": self.dial_call_sid,
            "dial_call_status": self.dial_call_status,
            "dial_call_duration": self.dial_call_duration,
            "bridged": self.bridged,
            "whisper_url": self.whisper_url,
            "whisper": self.whisper,
            "whisper_declined": self.whisper_declined,
            "connected_s": self.connected_s,
            "action_http_status": self.action_http_status,
            "action_answer": self.action_answer,
            "error": self.error,
        }


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
    twilio_errors: list[int] = field(default_factory=list)  # the codes Twilio would log
    # Byte ranges of the caller's audio (with its hold silence) spoken while Twilio was
    # reconnecting the stream: carried by no stream, so not in sent_audio.
    caller_audio_lost: list[tuple[int, int]] = field(default_factory=list)
    # Each media message from the edge: (ms since the first webhook, audio bytes).
    media_arrivals: list[tuple[float, int]] = field(default_factory=list)
    streams: list[StreamAudio] = field(default_factory=list)  # per stream, in order
    dials: list[DialRecord] = field(default_factory=list)  # each <Dial> executed, in order
    callbacks: list[CallbackRecord] = field(default_factory=list)  # in the order sent
    recordings: list[Recording] = field(default_factory=list)  # made by <Start><Recording>...
    timings: Timings = field(default_factory=Timings)

    @property
    def close_code(self) -> int | None:
        return self.close_codes[-1] if self.close_codes else None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.protocol_violations

    @property
    def caller_audio_lost_ms(self) -> float:
        return sum(end - start for start, end in self.caller_audio_lost) * 1000 / SAMPLE_RATE

    def longest_media_gap_ms(
        self, start_ms: float | None = None, end_ms: float | None = None
    ) -> float:
        """The longest time no media message from the edge arrived, between the first and the
        last arrival, or within [``start_ms``, ``end_ms``] (ms since the first webhook) when
        given: a window's bounds count as arrivals, so silence from the window's start to the
        first arrival in it, or from the last one to its end, counts too."""
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError("the window ends before it starts")
        times = [at for at, _ in self.media_arrivals]
        if start_ms is not None:
            times = [start_ms] + [at for at in times if at > start_ms]
        if end_ms is not None:
            times = [at for at in times if at < end_ms] + [end_ms]
        return max((later - earlier for earlier, later in pairwise(times)), default=0.0)

    def problems(self) -> list[str]:
        """The failure and the violations, one line each."""
        return ([f"call failed: {self.error}"] if self.error else []) + self.protocol_violations

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary; audio appears as its length, duration and SHA-256, and each
        stream's sent and heard audio and playout log also in full (base64), so that a test
        on the far side of a process boundary can compare them bit-exactly."""

        def audio(data: bytes) -> dict[str, Any]:
            sha = hashlib.sha256(data).hexdigest()
            return {"bytes": len(data), "seconds": len(data) / 8000, "sha256": sha}

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

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
            "twilio_errors": self.twilio_errors,
            "caller_audio_lost": {
                "ranges": [list(span) for span in self.caller_audio_lost],
                "ms": self.caller_audio_lost_ms,
            },
            "media_arrivals": {
                "ms_bytes": [list(arrival) for arrival in self.media_arrivals],
                "longest_gap_ms": self.longest_media_gap_ms(),
            },
            "streams": [
                {
                    "stream_sid": stream.stream_sid,
                    "sent_audio": audio(stream.sent),
                    "received_audio": audio(stream.received),
                    "heard_audio": audio(stream.heard),
                    "sent_at_ms": stream.sent_at_ms,
                    "sent": b64(stream.sent),
                    "heard": b64(stream.heard),
                    "played": [[start_ms, b64(data)] for start_ms, data in stream.played],
                }
                for stream in self.streams
            ],
            "dials": [dial.to_dict() for dial in self.dials],
            "callbacks": [callback.to_dict() for callback in self.callbacks],
            "recordings": [recording.to_dict() for recording in self.recordings],
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
