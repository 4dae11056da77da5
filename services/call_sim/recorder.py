"""The recordings of one call: begun by ``<Start><Recording>`` (or ``Record=true`` on a call the
REST API created), ended by ``<Stop><Recording name=...>`` or the end of the call, then made from
what the simulator knows was said and played, and announced to their ``recordingStatusCallback``.

``assemble`` is pure: the audio comes from the call's clock (``recording_audio.py``). The left
channel is what Twilio received from the phone (the caller, or the party an outbound call
reached): every frame spoken while recording, streamed or not, for Twilio records the line, not
the stream. The right channel is what Twilio played to the phone: the playout logs of the
streams. A recording that holds no sound at all is ``absent``, else ``completed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from services.call_sim.recording import (
    Recording,
    RecordingSpec,
    callback_params,
    new_recording,
    recording_url,
)
from services.call_sim.recording_audio import Placed, Window, place, trim_silence
from services.call_sim.routing import new_sid
from shared.audio import BYTES_PER_MS, SILENCE_BYTE

__all__ = ["CallRecorder", "Placed", "SendCallback", "assemble"]

# (kind, event, url, method, params): a signed, best-effort request; never raises.
SendCallback = Callable[[str, str, str, str, dict[str, str]], Awaitable[object]]

_SILENT = frozenset({SILENCE_BYTE, 0x7F})  # μ-law +0 and -0


def assemble(
    recording: Recording, end_ms: float, caller: Sequence[Placed], played: Sequence[Placed]
) -> None:
    """Fill ``recording``'s audio, window and status. It ends at its ``<Stop>``, else at
    ``end_ms`` (the call's end); a track it does not record is silence."""
    if recording.ended_ms is None or recording.ended_ms > end_ms:
        recording.ended_ms = end_ms
    window = Window(recording.started_ms, max(recording.started_ms, recording.ended_ms))
    quiet = bytes([SILENCE_BYTE]) * window.samples
    track = recording.spec.track
    left = place(window, caller) if track in ("inbound", "both") else quiet
    right = place(window, played) if track in ("outbound", "both") else quiet
    cut = 0
    if recording.spec.trim == "trim-silence":
        cut, left, right = trim_silence(left, right)
    recording.offset_ms = window.start_ms + cut / BYTES_PER_MS
    recording.left, recording.right = left, right
    sound = not (set(left) <= _SILENT and set(right) <= _SILENT)
    recording.status = "completed" if sound else "absent"


class CallRecorder:
    """The call's recordings, in the order begun; ``send`` requests their status callbacks."""

    def __init__(
        self, *, api_base_url: str, account_sid: str, call_sid: str, send: SendCallback
    ) -> None:
        self.recordings: list[Recording] = []
        self._api_base_url = api_base_url
        self._account_sid = account_sid
        self._call_sid = call_sid
        self._send = send
        self._pending: list[asyncio.Task[None]] = []

    def start(self, spec: RecordingSpec, at_ms: float) -> Recording:
        """Begin a recording now; its ``in-progress`` callback goes out meanwhile, if asked."""
        sid = new_sid("RE")
        url = recording_url(self._api_base_url, self._account_sid, sid)
        recording = new_recording(spec, sid, url, at_ms)
        self.recordings.append(recording)
        if "in-progress" in spec.status_callback_events:
            self._pending.append(asyncio.create_task(self._notify(recording, "in-progress")))
        return recording

    def stop(self, name: str | None, at_ms: float) -> Recording | None:
        """End the running recording called ``name`` (the last begun, if several are)."""
        if name is None:
            return None
        for recording in reversed(self.recordings):
            if recording.spec.name == name and recording.ended_ms is None:
                recording.ended_ms = at_ms
                return recording
        return None

    def finish(self, end_ms: float, caller: Sequence[Placed], played: Sequence[Placed]) -> None:
        """The call is over at ``end_ms``: make every recording's audio."""
        for recording in self.recordings:
            assemble(recording, end_ms, caller, played)

    async def announce(self) -> None:
        """Send each recording's final callback (``completed`` or ``absent``) if asked, after
        any ``in-progress`` one still on its way."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
        for recording in self.recordings:
            status = recording.status
            if status is not None and status in recording.spec.status_callback_events:
                await self._notify(recording, status)

    def cancel(self) -> None:
        """The call was cut short (cancelled): drop the callbacks still on their way."""
        for task in self._pending:
            task.cancel()

    async def _notify(self, recording: Recording, status: str) -> None:
        url = recording.spec.status_callback
        if url is None:
            return
        params = callback_params(
            recording, account_sid=self._account_sid, call_sid=self._call_sid, status=status
        )
        await self._send(
            "recording-status", status, url, recording.spec.status_callback_method, params
        )
