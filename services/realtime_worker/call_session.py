"""One call on a worker: its Realtime session and the relays between it and Redis.

Setup: connect, wait for ``session.created``, send ``session.update`` asking for G.711 μ-law
both ways, and relay nothing until ``session.updated`` confirms ``audio/pcmu`` in and out; any
other answer ends the call with an error naming the format the server chose. Then three loops
run in one task group until the first returns:

- caller → model: the call's inbound stream (filled by the worker's fan-in reader) to
  ``input_audio_buffer.append``, base64-encoded once;
- model → caller: audio deltas, decoded once, to the outbound stream, each followed by a mark;
  transcripts assembled and logged once per response;
- watchdog: the Twilio stream must reach an edge in time, and come back in time if it drops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import websockets.exceptions
from websockets.asyncio.client import ClientConnection

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.context import WorkerContext
from services.realtime_worker.realtime_client import open_realtime
from shared.errors import (
    DecodeError,
    FormatMismatchError,
    RealtimeProtocolError,
    RealtimeSessionError,
)
from shared.keys import ENDED_STREAM_TTL_S, OUTBOUND_MAXLEN, CallField, CallState
from shared.logs import CallLog
from shared.messages import (
    ENTRY_FIELD,
    AudioDone,
    CallStopped,
    DtmfPressed,
    Hangup,
    InboundAudio,
    InboundMessage,
    MarkPlayed,
    OutboundAudio,
    PlaybackMark,
    StreamDetached,
    StreamStarted,
    decode,
)
from shared.records import now_ms
from shared.streams import Entry, release_lease
from shared.tasks import run_until_first_returns

__all__ = ["CallSession"]

logger = logging.getLogger("switchboard.worker.call")

QUEUE_PAUSE_AT = 256
QUEUE_RESUME_AT = 64
WATCHDOG_INTERVAL_S = 0.25
MAX_LOGGED_FAULTS = 3
CLEANUP_TIMEOUT_S = 2.0


@dataclass
class _Response:
    """What one model response produced, for its log lines."""

    transcript: list[str] = field(default_factory=list)
    audio_bytes: int = 0


class CallSession:
    """Holds the Realtime session of one call for as long as this worker owns the call."""

    def __init__(self, ctx: WorkerContext, call_sid: str, in_cursor: str) -> None:
        self.ctx = ctx
        self.call_sid = call_sid
        self.log = CallLog(logger, call_sid)
        keys = ctx.keys
        self.inbound_key = keys.inbound(call_sid)
        self.outbound_key = keys.outbound(call_sid)
        self.lease_key = keys.lease(call_sid)
        self.in_cursor = in_cursor
        self.saved_in_cursor = in_cursor
        self.queue: deque[tuple[bytes, InboundMessage]] = deque()
        self.has_input = asyncio.Event()
        self.paused = False
        self.ws: ClientConnection | None = None
        self.claimed_at = time.monotonic()
        self.stream_seen = False
        self.detached_since: float | None = None
        self.stop_requested = asyncio.Event()
        self.end_reason: str | None = None
        self.error: str | None = None
        self.hang_up = False  # the worker ends the call: tell the edge, mark the record
        self.lease_lost = False
        self.responses: dict[str, _Response] = {}
        self.mark_seq = 0
        self.event_seq = 0
        self.bytes_to_model = 0
        self.bytes_from_model = 0
        self.faults = 0
        self._handlers: dict[type, Callable[[Any], Coroutine[Any, Any, bool]]] = {
            rt.OutputAudioDelta: self._on_audio_delta,
            rt.OutputAudioDone: self._on_audio_done,
            rt.TranscriptDelta: self._on_transcript_delta,
            rt.TranscriptDone: self._on_transcript_done,
            rt.InputTranscript: self._on_input_transcript,
            rt.ResponseDone: self._on_response_done,
            rt.SessionConfirmed: self._on_session,
            rt.ErrorEvent: self._on_error,
        }

    # --- control from the worker ----------------------------------------------------------

    def stop(self, reason: str, *, lease_lost: bool = False) -> None:
        """End this session without ending the call (lease lost, or handed back on drain)."""
        self.lease_lost = self.lease_lost or lease_lost
        self._end(reason)
        self.stop_requested.set()

    def _end(self, reason: str, *, hang_up: bool = False, error: str | None = None) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.hang_up = hang_up
            self.error = error

    def _next_event_id(self, kind: str) -> str:
        self.event_seq += 1
        return f"sb_{kind}_{self.event_seq}"

    # --- the session ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the call ends or this worker lets go of it. Never raises."""
        self.ctx.reader.subscribe(self.inbound_key, self._sink, self.in_cursor)
        try:
            await self._session()
        except* FormatMismatchError as group:
            self._fail("format_mismatch", str(group.exceptions[0]))
        except* RealtimeSessionError as group:
            error = group.exceptions[0]
            assert isinstance(error, RealtimeSessionError)
            self._fail(error.code, str(error))
        except* TimeoutError:
            self._fail("realtime_timeout", "the Realtime session was not ready in time")
        except* (OSError, websockets.exceptions.WebSocketException) as group:
            self._fail(
                "realtime_unreachable", f"cannot open the Realtime session: {group.exceptions[0]}"
            )
        except* Exception as group:
            self.log.error("call session failed", exc_info=group.exceptions[0])
            self._fail("internal_error", repr(group.exceptions[0]))
        finally:
            await self._cleanup()

    async def _session(self) -> None:
        async with asyncio.timeout(self.ctx.settings.realtime_connect_timeout_s):
            self.ws = await open_realtime(self.ctx.settings)
            await self._configure(self.ws)
        await run_until_first_returns(
            self._caller_to_model(self.ws),
            self._model_to_caller(self.ws),
            self._watchdog(),
            self.stop_requested.wait(),
        )

    def _fail(self, code: str, message: str) -> None:
        self.ctx.metrics.realtime_errors.labels(rt.metric_code(code)).inc()
        self.log.error("ending the call: %s (%s)", message, code)
        self._end(code, hang_up=True, error=message)

    async def _configure(self, ws: ClientConnection) -> None:
        created = await self._next_session_event(ws)
        if created.updated:
            raise RealtimeSessionError("session.updated before session.created", "protocol")
        update_id = self._next_event_id("session")
        settings = self.ctx.settings
        await ws.send(
            rt.session_update(
                update_id,
                rt.SessionOptions(
                    model=settings.realtime_model,
                    instructions=settings.instructions,
                    voice=settings.voice,
                    transcription_model=settings.transcription_model,
                    turn_detection=settings.vad,
                ),
            )
        )
        confirmed = await self._next_session_event(ws)
        self._check_formats(confirmed)
        self.ctx.writer.command(
            "HSET",
            self.ctx.keys.call(self.call_sid),
            CallField.INPUT_FORMAT,
            confirmed.input_format or "",
            CallField.OUTPUT_FORMAT,
            confirmed.output_format or "",
        )
        self.log.info(
            "realtime session %s ready: %s in, %s out (model %s, voice %s)",
            confirmed.session_id,
            confirmed.input_format,
            confirmed.output_format,
            settings.realtime_model,
            settings.voice,
        )

    async def _next_session_event(self, ws: ClientConnection) -> rt.SessionConfirmed:
        """The next session.created/updated; an error event before it is fatal (the session
        may still be at its PCM defaults)."""
        while True:
            try:
                event = rt.parse_server_event(await ws.recv())
            except websockets.exceptions.ConnectionClosed as exc:
                raise RealtimeSessionError(
                    f"the Realtime server closed the socket during setup ({_close_text(exc)})",
                    "realtime_closed",
                ) from None
            if isinstance(event, rt.SessionConfirmed):
                return event
            if isinstance(event, rt.ErrorEvent):
                raise RealtimeSessionError(
                    f"the Realtime server refused the session: {event.message}", event.code
                )

    def _check_formats(self, confirmed: rt.SessionConfirmed) -> None:
        if not confirmed.is_pcmu:
            raise FormatMismatchError(
                f"the Realtime server confirmed input {confirmed.input_format!r} and output "
                f"{confirmed.output_format!r}; Twilio needs {rt.PCMU!r} both ways. Relaying "
                "this would play noise to the caller. Check that OPENAI_REALTIME_URL speaks "
                "the GA protocol and supports G.711 μ-law"
            )

    # --- caller → model ---------------------------------------------------------------------

    def _sink(self, entries: list[Entry]) -> bool:
        """Called by the fan-in reader with new inbound entries; False pauses the stream."""
        for entry_id, fields in entries:
            try:
                message = decode(fields[ENTRY_FIELD])
            except (DecodeError, KeyError) as exc:
                self._fault("bad_redis_message", f"inbound entry {entry_id!r}: {exc}")
                continue
            if not isinstance(message, InboundMessage):
                self._fault("bad_redis_message", f"inbound entry {entry_id!r}: {message!r}")
                continue
            self.queue.append((entry_id, message))
        self.has_input.set()
        self.paused = len(self.queue) >= QUEUE_PAUSE_AT
        return not self.paused

    async def _caller_to_model(self, ws: ClientConnection) -> None:
        send = ws.send
        metrics = self.ctx.metrics.audio_in_bytes
        while True:
            await self.has_input.wait()
            self.has_input.clear()
            while self.queue:
                entry_id, message = self.queue.popleft()
                if self.paused and len(self.queue) <= QUEUE_RESUME_AT:
                    self.paused = False
                    self.ctx.reader.resume(self.inbound_key)
                if type(message) is InboundAudio:
                    await send(rt.audio_append(message.audio))
                    self.bytes_to_model += len(message.audio)
                    metrics.inc(len(message.audio))
                elif isinstance(message, StreamStarted):
                    self._on_stream_started(message)
                elif isinstance(message, StreamDetached):
                    self.detached_since = time.monotonic()
                    self.log.warning(
                        "stream left edge %s without a stop; waiting up to %.0fs for it to return",
                        message.edge_id,
                        self.ctx.settings.edge_grace_s,
                    )
                elif isinstance(message, MarkPlayed):
                    pass  # playback tracking arrives with barge-in handling
                elif isinstance(message, DtmfPressed):
                    self.log.info("caller pressed %s", message.digit)
                elif isinstance(message, CallStopped):
                    self.in_cursor = entry_id.decode()
                    self._end(message.reason)
                    return
                self.in_cursor = entry_id.decode()

    def _on_stream_started(self, message: StreamStarted) -> None:
        if self.detached_since is not None:
            self.log.info("stream is back, on edge %s", message.edge_id)
        self.stream_seen = True
        self.detached_since = None

    # --- model → caller ---------------------------------------------------------------------

    async def _model_to_caller(self, ws: ClientConnection) -> None:
        handlers = self._handlers
        try:
            async for frame in ws:
                try:
                    event = rt.parse_server_event(frame)
                except RealtimeProtocolError as exc:
                    self._fault(exc.kind, f"from the Realtime server: {exc}")
                    continue
                handler = handlers.get(type(event))
                if handler is not None and await handler(event):
                    return
        except websockets.exceptions.ConnectionClosed as exc:
            self._fail(
                "realtime_closed", f"the Realtime server closed the session ({_close_text(exc)})"
            )
            return
        self._fail(
            "realtime_closed",
            f"the Realtime server closed the session ({ws.close_code} {ws.close_reason!r})",
        )

    async def _on_audio_delta(self, event: rt.OutputAudioDelta) -> bool:
        writer = self.ctx.writer
        audio = event.audio
        await writer.xadd(
            self.outbound_key, OutboundAudio(audio, event.item_id, time.time()), OUTBOUND_MAXLEN
        )
        self.mark_seq += 1
        writer.xadd_nowait(
            self.outbound_key, PlaybackMark(f"{event.item_id}:{self.mark_seq}"), OUTBOUND_MAXLEN
        )
        self._response(event.response_id).audio_bytes += len(audio)
        self.bytes_from_model += len(audio)
        self.ctx.metrics.audio_out_bytes.inc(len(audio))
        if self.log.debug_enabled:
            self.log.debug("model audio: %d bytes for item %s", len(audio), event.item_id)
        return False

    async def _on_audio_done(self, event: rt.OutputAudioDone) -> bool:
        self.ctx.writer.xadd_nowait(self.outbound_key, AudioDone(event.item_id), OUTBOUND_MAXLEN)
        return False

    async def _on_transcript_delta(self, event: rt.TranscriptDelta) -> bool:
        self._response(event.response_id).transcript.append(event.delta)
        return False

    async def _on_transcript_done(self, event: rt.TranscriptDone) -> bool:
        self._response(event.response_id).transcript[:] = [event.transcript]
        return False

    async def _on_input_transcript(self, event: rt.InputTranscript) -> bool:
        self.log.info("caller said: %s", event.transcript)
        return False

    async def _on_response_done(self, event: rt.ResponseDone) -> bool:
        response = self.responses.pop(event.response_id, _Response())
        text = "".join(response.transcript).strip()
        if text:
            self.log.info("AI said: %s", text)
        self.log.info(
            "response %s %s: %d bytes (%d ms) of audio sent toward Twilio",
            event.response_id,
            event.status + (f" ({event.reason})" if event.reason else ""),
            response.audio_bytes,
            response.audio_bytes // 8,
        )
        return False

    async def _on_session(self, event: rt.SessionConfirmed) -> bool:
        try:
            self._check_formats(event)
        except FormatMismatchError as exc:
            self._fail("format_mismatch", str(exc))
            return True
        return False

    async def _on_error(self, event: rt.ErrorEvent) -> bool:
        if rt.ends_session(event):
            self._fail(event.code, f"the Realtime server reported an error: {event.message}")
            return True
        # Most errors concern one client event (a cancel racing the server's own, say) and
        # leave the session usable: the call goes on.
        self.ctx.metrics.realtime_errors.labels(rt.metric_code(event.code)).inc()
        self.log.warning(
            "the Realtime server refused event %s (%s): %s",
            event.event_id or "?",
            event.code,
            event.message,
        )
        return False

    def _response(self, response_id: str) -> _Response:
        response = self.responses.get(response_id)
        if response is None:
            response = self.responses[response_id] = _Response()
        return response

    def _fault(self, kind: str, detail: str) -> None:
        self.ctx.metrics.malformed.labels(kind).inc()
        self.faults += 1
        if self.faults <= MAX_LOGGED_FAULTS:
            self.log.warning("dropped a malformed message (%s): %s", kind, detail)

    # --- watchdog and the end ---------------------------------------------------------------

    async def _watchdog(self) -> None:
        settings = self.ctx.settings
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            if not self.stream_seen and now - self.claimed_at > settings.stream_start_timeout_s:
                self._fail(
                    "stream_never_arrived",
                    f"Twilio's stream did not reach an edge within "
                    f"{settings.stream_start_timeout_s:.0f}s",
                )
                return
            if (
                self.detached_since is not None
                and now - self.detached_since > settings.edge_grace_s
            ):
                self._fail("edge_lost", "Twilio's stream did not come back after it dropped")
                return

    async def _cleanup(self) -> None:
        ctx, keys, sid = self.ctx, self.ctx.keys, self.call_sid
        writer = ctx.writer
        ctx.reader.unsubscribe(self.inbound_key)
        if self.ws is not None:
            await self.ws.close()
        reason = self.end_reason or "ended"
        record = keys.call(sid)
        if not self.lease_lost:
            writer.command("HSET", record, CallField.IN_CURSOR, self.in_cursor)
        if self.hang_up and not self.lease_lost:
            # The record says "ended" before the edge sees Hangup, so that Twilio's <Redirect>
            # after the close finds an ended call and hangs up.
            fields: list[object] = [CallField.STATE, CallState.ENDED, CallField.ENDED_MS, now_ms()]
            fields += [CallField.END_REASON, reason, CallField.ERROR, self.error or ""]
            writer.command("HSET", record, *fields)
            writer.xadd_nowait(self.outbound_key, Hangup(reason), OUTBOUND_MAXLEN)
            if not self.stream_seen:
                for key in (self.inbound_key, self.outbound_key):
                    writer.command("EXPIRE", key, ENDED_STREAM_TTL_S)
        if not self.lease_lost:
            try:
                await asyncio.wait_for(writer.flush(), CLEANUP_TIMEOUT_S)
                await release_lease(ctx.redis, self.lease_key, ctx.worker_id)
            except Exception as exc:  # the lease lapses by itself within its TTL
                self.log.warning("could not release the lease: %s", exc)
        ctx.metrics.calls.labels(reason).inc()
        self.log.info(
            "call left this worker (%s): %d bytes of caller audio sent to the model, %d bytes "
            "(%.1f s) of model audio published for the caller",
            reason,
            self.bytes_to_model,
            self.bytes_from_model,
            self.bytes_from_model / 8000,
        )


def _close_text(exc: websockets.exceptions.ConnectionClosed) -> str:
    close = exc.rcvd
    return f"{close.code} {close.reason!r}" if close else "no close frame"
