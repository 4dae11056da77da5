"""Call recordings: what is asked for (``RecordingSpec``), what was made (``Recording``), and what
Twilio tells the ``recordingStatusCallback``. Pure: no I/O, no clock.

Two ways in: ``<Start><Recording>`` (https://www.twilio.com/docs/voice/twiml/recording, source
``StartCallRecordingTwiML``) and ``Record=true`` on a REST-created call (source
``OutboundAPI``). The callback's parameters are the ones both pages list: AccountSid, CallSid,
RecordingSid, RecordingUrl, RecordingStatus, RecordingDuration (``completed`` only),
RecordingChannels, RecordingStartTime, RecordingSource and RecordingTrack.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final

from services.call_sim.recording_audio import linear, mix, to_wav
from shared.audio import SAMPLE_RATE

__all__ = [
    "CHANNELS",
    "RECORDING_EVENTS",
    "SOURCE_API",
    "SOURCE_TWIML",
    "TRACKS",
    "TRIMS",
    "Recording",
    "RecordingSpec",
    "callback_params",
    "new_recording",
    "recording_url",
]

RECORDING_EVENTS: Final = ("in-progress", "completed", "absent")
CHANNELS: Final = ("mono", "dual")
TRACKS: Final = ("inbound", "outbound", "both")
TRIMS: Final = ("trim-silence", "do-not-trim")
SOURCE_TWIML: Final = "StartCallRecordingTwiML"  # as Twilio reports <Start><Recording>
SOURCE_API: Final = "OutboundAPI"  # Record=true on POST /Calls


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """One recording asked for. The defaults are ``<Start><Recording>``'s."""

    source: str = SOURCE_TWIML
    name: str | None = None
    channels: str = "dual"
    track: str = "both"
    trim: str = "trim-silence"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ("completed",)
    configuration_id: str | None = None


def recording_url(api_base_url: str, account_sid: str, recording_sid: str) -> str:
    """Where Twilio says the recording is: the Recording resource, without an extension."""
    return (
        f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"
    )


@dataclass
class Recording:
    """One recording of the call. ``left``/``right``: what Twilio received from the phone and
    what it played to it (μ-law, one byte a sample), after trimming; sample ``i`` is at
    ``offset_ms + i / 8`` on the call's clock. A track not recorded is silence."""

    sid: str
    spec: RecordingSpec
    url: str
    started_ms: float  # call clock: when the recording began
    start_time: datetime  # wall clock, for RecordingStartTime
    ended_ms: float | None = None  # call clock: the call's end or a <Stop>
    offset_ms: float | None = None  # call clock of the first sample kept
    status: str | None = None  # "completed" or "absent" once the call is over
    left: bytes = b""
    right: bytes = b""

    @property
    def channels(self) -> int:
        return 2 if self.spec.channels == "dual" else 1

    @property
    def duration_s(self) -> int:
        """RecordingDuration: whole seconds, rounded up (a recording with sound is ≥ 1 s)."""
        return math.ceil(len(self.left) / SAMPLE_RATE)

    def wav(self) -> bytes:
        """The recording file (``RecordingUrl`` + ``.wav``)."""
        if self.channels == 2:
            return to_wav([linear(self.left), linear(self.right)])
        return to_wav([mix(self.left, self.right)])

    def to_dict(self) -> dict[str, Any]:
        def audio(data: bytes) -> dict[str, Any]:
            sha = hashlib.sha256(data).hexdigest()
            return {"bytes": len(data), "seconds": len(data) / SAMPLE_RATE, "sha256": sha}

        return {
            "sid": self.sid,
            "source": self.spec.source,
            "name": self.spec.name,
            "url": self.url,
            "channels": self.channels,
            "track": self.spec.track,
            "trim": self.spec.trim,
            "status_callback": self.spec.status_callback,
            "status_callback_events": list(self.spec.status_callback_events),
            "started_ms": self.started_ms,
            "ended_ms": self.ended_ms,
            "offset_ms": self.offset_ms,
            "status": self.status,
            "duration_s": self.duration_s,
            "left": audio(self.left),
            "right": audio(self.right),
        }


def callback_params(
    recording: Recording, *, account_sid: str, call_sid: str, status: str
) -> dict[str, str]:
    """The ``recordingStatusCallback`` request's form fields for ``status``."""
    params = {
        "AccountSid": account_sid,
        "CallSid": call_sid,
        "RecordingSid": recording.sid,
        "RecordingUrl": recording.url,
        "RecordingStatus": status,
        "RecordingChannels": str(recording.channels),
        "RecordingStartTime": format_datetime(recording.start_time),
        "RecordingSource": recording.spec.source,
        "RecordingTrack": recording.spec.track,
    }
    if status == "completed":
        params["RecordingDuration"] = str(recording.duration_s)
    return params


def new_recording(spec: RecordingSpec, sid: str, url: str, started_ms: float) -> Recording:
    """A recording that begins now (its RecordingStartTime) at ``started_ms`` on the call clock."""
    return Recording(
        sid=sid, spec=spec, url=url, started_ms=started_ms, start_time=datetime.now(UTC)
    )
