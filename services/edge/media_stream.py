"""The Media Streams WebSocket: one Twilio call on this edge.

Handshake: the upgrade must carry a valid X-Twilio-Signature (else 403), the first ``start``
must arrive within IDLE_TIMEOUT and carry this call's stream token, and the call must exist
and not have ended. Then two loops run in one task group until either ends:

- twilio → redis: each ``media`` payload is base64-decoded once and published raw to the
  call's inbound stream; echoed marks and DTMF follow the same path;
- redis → twilio: the fan-in reader fills this call's bounded queue from its outbound stream;
  audio is re-framed into whole 20 ms frames and sent with the worker's marks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from services.edge.framing import Frame, Framer, Output
from services.edge.lease_watch import Action, LeaseView
from services.edge.limits import MediaPacer
from services.edge.runtime import EdgeRuntime
from services.edge.signature import SETTINGS_HEADER, check_signature
from services.edge.stream_token import TokenError, verify_token
from services.edge.twilio_protocol import (
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioEvent,
    TwilioStream,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from services.edge.urls import PublicUrls
from shared.audio_check import AudioVerdict, OutboundInspector
from shared.errors import DecodeError, TwilioProtocolError
from shared.keys import (
    CALL_KEY_TTL_S,
    DISPATCH_MAXLEN,
    ENDED_STREAM_TTL_S,
    INBOUND_MAXLEN,
    CallField,
    CallState,
)
from shared.logs import CallLog
from shared.messages import (
    ENTRY_FIELD,
    AudioDone,
    CallDispatch,
    CallStopped,
    ClearPlayback,
    DtmfPressed,
    Hangup,
    InboundAudio,
    MarkPlayed,
    OutboundAudio,
    OutboundMessage,
    PlaybackMark,
    StreamDetached,
    StreamStarted,
    decode,
)
from shared.metrics import HOP_WORKER_TO_EDGE
from shared.records import load_call, now_ms
from shared.streams import Entry
from shared.tasks import run_until_first_returns

__all__ = ["media_endpoint"]

logger = logging.getLogger("switchboard.edge.media")

QUEUE_PAUSE_AT = 256  # outbound messages held per call before its stream waits in Redis
QUEUE_RESUME_AT = 64
MAX_MALFORMED = 100  # per call; past this the caller's side is clearly broken
MAX_MARKS_TIMED = 256  # marks awaiting Twilio's echo whose send time is kept, per call
CLOSE_POLICY = 1008


class _Refused(Exception):
    """The stream may not attach; ``reason`` labels the counter and the close frame."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


async def media_endpoint(websocket: WebSocket) -> None:
    """ASGI handler of ``/twilio/media``."""
    runtime: EdgeRuntime = websocket.app.state.runtime
    settings = runtime.settings
    if settings.validate_signature:
        verdict = check_signature(
            runtime.signing_keys,
            PublicUrls(settings.public_url).media,
            [],
            websocket.headers.get("x-twilio-signature"),
            websocket.headers.get(SETTINGS_HEADER),
        )
        if not verdict.ok:
            runtime.metrics.rejected.labels("media", verdict.reason).inc()
            logger.warning("refused a media stream upgrade: %s", verdict.detail)
            await websocket.close(code=CLOSE_POLICY)  # before accept: HTTP 403
            return
    await websocket.accept()
    stream = TwilioStream()
    try:
        start = await asyncio.wait_for(
            _receive_start(runtime, websocket, stream), settings.idle_timeout_s
        )
        if start is None:
            return
        call = await EdgeCall.attach(runtime, websocket, stream, start)
    except TimeoutError:
        runtime.metrics.rejected.labels("media", "no_start").inc()
        logger.warning(
            "closed a media stream: no start message within %.0fs", settings.idle_timeout_s
        )
        await websocket.close(code=CLOSE_POLICY, reason="no start message")
        return
    except _Refused as refused:
        runtime.metrics.rejected.labels("media", refused.reason).inc()
        logger.warning("refused a media stream: %s", refused)
        await websocket.close(code=CLOSE_POLICY, reason=refused.reason)
        return
    await call.run()


async def _receive_start(
    runtime: EdgeRuntime, websocket: WebSocket, stream: TwilioStream
) -> Start | None:
    """Read until ``start``; None if the socket closed first. Other frames are counted faults,
    except ``connected`` and unknown events, which are legal before ``start``."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        try:
            if text is None:
                raise TwilioProtocolError("binary frame where JSON text was expected", "binary")
            event = stream.accept(parse_message(text))
        except TwilioProtocolError as exc:
            runtime.metrics.malformed.labels(exc.kind).inc()
            logger.warning("dropped a message before start (%s): %s", exc.kind, exc)
            continue
        if isinstance(event, Start):
            return event


class EdgeCall:
    """One attached stream: its two relay loops and its accounting."""

    def __init__(
        self, runtime: EdgeRuntime, websocket: WebSocket, stream: TwilioStream, start: Start
    ) -> None:
        self.runtime = runtime
        self.websocket = websocket
        self.stream = stream
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self.log = CallLog(logger, self.call_sid)
        keys = runtime.keys
        self.inbound_key = keys.inbound(self.call_sid)
        self.outbound_key = keys.outbound(self.call_sid)
        self.record_key = keys.call(self.call_sid)
        self.lease_key = keys.lease(self.call_sid)
        self.framer = Framer()
        self.queue: deque[tuple[bytes, OutboundMessage]] = deque()
        self.has_output = asyncio.Event()
        self.paused = False
        self.sent_cursor: bytes | None = None
        self.saved_cursor: bytes | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_out = 0
        self.malformed = 0
        self.end_reason = "stream_closed"
        self.lease_view = LeaseView(waiting_since=time.monotonic())
        self.stop_requested = asyncio.Event()
        self.pacer = MediaPacer(runtime.settings.media_burst_ms)
        self.inspector = OutboundInspector()
        self.last_message_at = time.monotonic()
        self.bytes_out_metric = runtime.metrics.call_audio_out_bytes.labels(self.call_sid)
        self.relay_latency = runtime.metrics.relay_latency.labels(HOP_WORKER_TO_EDGE)
        self.dropped_fast = runtime.metrics.media_dropped.labels("faster_than_real_time")
        self.marks_sent: dict[str, float] = {}  # mark name → when it was sent to Twilio
        # The webhook's time (the record's created_ms), while the call's first audio is due.
        self.first_audio_due_ms: int | None = None
        self._handlers: dict[type, Callable[[Any], Coroutine[Any, Any, bool]]] = {
            Media: self._on_media,
            Mark: self._on_mark,
            Dtmf: self._on_dtmf,
            Stop: self._on_stop,
        }

    @classmethod
    async def attach(
        cls, runtime: EdgeRuntime, websocket: WebSocket, stream: TwilioStream, start: Start
    ) -> EdgeCall:
        """Check the token and the call record, then bind the stream to the call.

        Raises ``_Refused`` when the stream must be closed instead.
        """
        token = start.custom_parameters.get("token", "")
        try:
            verify_token(runtime.token_keys, token, start.call_sid, time.time())
        except TokenError as exc:
            raise _Refused(exc.kind, f"{exc} (call {start.call_sid})") from None
        record = await load_call(runtime.redis, runtime.keys, start.call_sid)
        if record is None:
            raise _Refused("unknown_call", f"no call {start.call_sid} was answered here")
        if record.ended:
            raise _Refused("call_ended", f"call {start.call_sid} has ended")
        if start.call_sid in runtime.calls:
            raise _Refused("already_attached", f"call {start.call_sid} already has a stream")
        call = cls(runtime, websocket, stream, start)
        out_cursor = record.get(CallField.OUT_CURSOR)
        created_ms = record.get(CallField.CREATED_MS)
        if not out_cursor and created_ms and created_ms.isdigit():
            call.first_audio_due_ms = int(created_ms)  # no audio sent yet by any edge
        await call._bind(record.get(CallField.WORKER_ID), out_cursor)
        return call

    async def _bind(self, worker_id: str | None, out_cursor: str | None) -> None:
        runtime, sid = self.runtime, self.call_sid
        edge_id = runtime.settings.edge_id
        self._write_live_record()
        runtime.writer.xadd_nowait(
            self.inbound_key, StreamStarted(self.stream_sid, edge_id, time.time()), INBOUND_MAXLEN
        )
        # A worker that held this call and died leaves no lease: put the call back in line.
        if worker_id and not await runtime.redis.exists(self.lease_key):
            self._dispatch_again()
            self.log.info("worker %s no longer holds the call; dispatched it again", worker_id)
        runtime.calls[sid] = self
        runtime.metrics.active_calls.inc()
        runtime.reader.subscribe(self.outbound_key, self._sink, out_cursor or "0-0")
        self.log.info(
            "stream %s attached to edge %s%s",
            self.stream_sid,
            edge_id,
            f" (resuming after outbound entry {out_cursor})" if out_cursor else "",
        )

    async def run(self) -> None:
        """Relay both ways until the call ends on either side, then record the end."""
        try:
            await run_until_first_returns(
                self._inbound_loop(),
                self._outbound_loop(),
                self.stop_requested.wait(),
                self._idle_watch(),
            )
        except* (WebSocketDisconnect, OSError, RuntimeError) as group:
            # The socket failed under a send: the caller's side is gone.
            self.log.info("stream %s lost: %r", self.stream_sid, group.exceptions[0])
        finally:
            await self._finish()

    def save_cursor(self) -> None:
        """Record how far the outbound stream was sent, so another edge can resume there."""
        if self.sent_cursor != self.saved_cursor and self.sent_cursor is not None:
            self.runtime.writer.command(
                "HSET", self.record_key, CallField.OUT_CURSOR, self.sent_cursor
            )
            self.saved_cursor = self.sent_cursor

    def _write_live_record(self) -> None:
        """This edge's part of the call record (state, edge, stream) and the call's key TTLs;
        the outbound cursor is saved again at the next ``save_cursor``."""
        writer, settings = self.runtime.writer, self.runtime.settings
        writer.command(
            "HSET",
            self.record_key,
            CallField.STATE,
            CallState.LIVE,
            CallField.EDGE_ID,
            settings.edge_id,
            CallField.STREAM_SID,
            self.stream_sid,
        )
        for key in self.runtime.keys.call_keys(self.call_sid):
            writer.command("EXPIRE", key, CALL_KEY_TTL_S)
        self.saved_cursor = None

    def _dispatch_again(self) -> None:
        """Put the call back on the dispatch stream: its worker no longer holds it."""
        dispatch = CallDispatch(self.call_sid, "lease-lost", time.time())
        self.runtime.writer.xadd_nowait(self.runtime.keys.dispatch, dispatch, DISPATCH_MAXLEN)

    def check_worker(self, lease_present: bool, state: str | None, now: float) -> None:
        """One lease check's result (runtime's lease watch): re-dispatch or give up as needed."""
        runtime = self.runtime
        if state is None:
            # The record is gone while the caller is still here: Redis restarted empty.
            self._write_live_record()
            self.log.warning("call record was missing (Redis restarted?): wrote it back")
        elif state == CallState.ENDED:
            return
        waited_s = now - self.lease_view.waiting_since
        action = self.lease_view.observe(lease_present, now, runtime.settings.dispatch_timeout_s)
        if action is Action.SERVED:
            runtime.metrics.dispatch_wait.observe(waited_s)
        elif action is Action.REDISPATCH:
            self._dispatch_again()
            runtime.metrics.redispatched.inc()
            self.log.warning("the call's worker stopped renewing its lease: dispatched it again")
        elif action is Action.GIVE_UP:
            self.log.error(
                "no worker took the call within %.0f s (DISPATCH_TIMEOUT): ending the stream; "
                "the caller hears the busy message",
                runtime.settings.dispatch_timeout_s,
            )
            self.end_reason = "no_worker"
            self.stop_requested.set()

    # --- twilio → redis -----------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        receive = self.websocket.receive
        accept = self.stream.accept
        handlers = self._handlers
        max_bytes = self.runtime.settings.max_message_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.last_message_at = time.monotonic()
            text = message.get("text")
            try:
                if text is None:
                    raise TwilioProtocolError("binary frame where JSON text was expected", "binary")
                if len(text) > max_bytes:
                    raise TwilioProtocolError(
                        f"message of {len(text)} bytes is over MAX_MESSAGE_BYTES={max_bytes}",
                        "too_large",
                    )
                event: TwilioEvent = accept(parse_message(text))
            except TwilioProtocolError as exc:
                if self._malformed(exc.kind, str(exc)):
                    return
                continue
            handler = handlers.get(type(event))
            if handler is not None and await handler(event):
                return

    async def _idle_watch(self) -> None:
        """Return (ending the call) when Twilio has sent nothing for IDLE_TIMEOUT."""
        timeout_s = self.runtime.settings.idle_timeout_s
        while True:
            idle_s = time.monotonic() - self.last_message_at
            if idle_s >= timeout_s:
                self.log.warning("closing the stream: nothing from Twilio for %.0f s", idle_s)
                self.end_reason = "idle_timeout"
                return
            await asyncio.sleep(timeout_s - idle_s)

    async def _on_media(self, event: Media) -> bool:
        audio = event.payload
        if not audio:
            return False
        if not self.pacer.admit(len(audio), self.last_message_at):
            self.dropped_fast.inc()
            if self.log.debug_enabled:
                self.log.debug("dropped %d bytes of media: faster than real time", len(audio))
            return False
        await self.runtime.writer.xadd(
            self.inbound_key, InboundAudio(audio, event.timestamp_ms, time.time()), INBOUND_MAXLEN
        )
        self.bytes_in += len(audio)
        self.runtime.metrics.audio_in_bytes.inc(len(audio))
        return False

    async def _on_mark(self, event: Mark) -> bool:
        sent = self.marks_sent.pop(event.name, None)
        if sent is not None:
            self.runtime.metrics.mark_round_trip.observe(time.monotonic() - sent)
        await self.runtime.writer.xadd(self.inbound_key, MarkPlayed(event.name), INBOUND_MAXLEN)
        return False

    async def _on_dtmf(self, event: Dtmf) -> bool:
        self.log.info("caller pressed %s", event.digit)
        await self.runtime.writer.xadd(self.inbound_key, DtmfPressed(event.digit), INBOUND_MAXLEN)
        return False

    async def _on_stop(self, event: Stop) -> bool:
        self.end_reason = "caller_hangup"
        return True

    def _malformed(self, kind: str, detail: str) -> bool:
        """Count a dropped message; True when there have been too many to go on."""
        self.runtime.metrics.malformed.labels(kind).inc()
        self.malformed += 1
        if self.malformed <= 3:  # the first few say what is wrong; the counter says how often
            self.log.warning("dropped a message from Twilio (%s): %s", kind, detail)
        if self.malformed >= MAX_MALFORMED:
            self.log.error("ending the stream: %d malformed messages", self.malformed)
            self.end_reason = "malformed_input"
            return True
        return False

    # --- redis → twilio -----------------------------------------------------------------

    def _sink(self, entries: list[Entry]) -> bool:
        """Called by the fan-in reader with new outbound entries; False pauses the stream."""
        for entry_id, fields in entries:
            try:
                message = decode(fields[ENTRY_FIELD])
            except (DecodeError, KeyError) as exc:
                self.runtime.metrics.malformed.labels("bad_redis_message").inc()
                self.log.error("dropped outbound entry %s: %s", entry_id.decode(), exc)
                continue
            if not isinstance(message, OutboundMessage):
                self.runtime.metrics.malformed.labels("bad_redis_message").inc()
                self.log.error("dropped outbound entry %s: %r", entry_id.decode(), message)
                continue
            if isinstance(message, ClearPlayback):
                self._drop_queued(message.item_id)
            self.queue.append((entry_id, message))
        self.has_output.set()
        self.paused = len(self.queue) >= QUEUE_PAUSE_AT
        return not self.paused

    def _drop_queued(self, item_id: str) -> None:
        """Barge-in: audio of the interrupted item still waiting here is never sent."""
        kept: deque[tuple[bytes, OutboundMessage]] = deque()
        for entry in self.queue:
            message = entry[1]
            if isinstance(message, OutboundAudio) and message.item_id == item_id:
                continue
            kept.append(entry)
        self.queue = kept

    async def _outbound_loop(self) -> None:
        send = self.websocket.send_text
        while True:
            await self.has_output.wait()
            self.has_output.clear()
            while self.queue:
                entry_id, message = self.queue.popleft()
                if self.paused and len(self.queue) <= QUEUE_RESUME_AT:
                    self.paused = False
                    self.runtime.reader.resume(self.outbound_key)
                if isinstance(message, OutboundAudio):
                    if not self.inspector.done:
                        self._check_audio(self.inspector.feed(message.audio))
                    await self._send_outputs(send, self.framer.audio(message.audio))
                    self.relay_latency.observe(max(0.0, time.time() - message.sent_at))
                elif isinstance(message, PlaybackMark):
                    await self._send_outputs(send, self.framer.mark(message.name))
                elif isinstance(message, AudioDone):
                    await self._send_outputs(send, self.framer.finish())
                elif isinstance(message, ClearPlayback):
                    await send(clear_message(self.stream_sid))
                    self.marks_sent.clear()  # Twilio echoes them at once: no audio queued
                    for name in self.framer.clear():  # never reached Twilio: void at once
                        self.runtime.writer.xadd_nowait(
                            self.inbound_key, MarkPlayed(name), INBOUND_MAXLEN
                        )
                elif isinstance(message, Hangup):
                    self.end_reason = "worker_hangup"
                    self.log.info("worker ended the call: %s", message.reason)
                    self.sent_cursor = entry_id
                    return
                self.sent_cursor = entry_id

    def _check_audio(self, verdict: AudioVerdict | None) -> None:
        """One line per call when the model's audio is not μ-law speech ("vacuum cleaner")."""
        if verdict is None or verdict.kind == "ok":
            return
        self.runtime.metrics.format_mismatch.labels(verdict.kind).inc()
        self.runtime.writer.command("HSET", self.record_key, CallField.AUDIO_CHECK, verdict.kind)
        if verdict.is_fault:
            self.log.error("the audio sent to the caller is wrong: %s", verdict)
        else:
            self.log.warning("the audio sent to the caller so far: %s", verdict)

    async def _send_outputs(
        self, send: Callable[[str], Coroutine[Any, Any, None]], outputs: list[Output]
    ) -> None:
        for output in outputs:
            if isinstance(output, Frame):
                await send(media_message(self.stream_sid, output.audio))
                size = len(output.audio)
                self.bytes_out += size
                self.frames_out += 1
                self.runtime.metrics.audio_out_bytes.inc(size)
                self.bytes_out_metric.inc(size)
                if self.first_audio_due_ms is not None:
                    waited_s = (now_ms() - self.first_audio_due_ms) / 1000
                    self.first_audio_due_ms = None
                    self.runtime.metrics.webhook_to_first_audio.observe(max(0.0, waited_s))
                if self.log.debug_enabled:
                    self.log.debug("sent frame %d to Twilio", self.frames_out)
            else:
                await send(mark_message(self.stream_sid, output.name))
                marks = self.marks_sent
                if len(marks) >= MAX_MARKS_TIMED:
                    del marks[next(iter(marks))]  # the oldest: its echo was lost
                marks[output.name] = time.monotonic()

    # --- the end --------------------------------------------------------------------------

    async def _finish(self) -> None:
        runtime, sid = self.runtime, self.call_sid
        writer = runtime.writer
        runtime.reader.unsubscribe(self.outbound_key)
        runtime.calls.pop(sid, None)
        runtime.metrics.active_calls.dec()
        runtime.metrics.calls.labels(self.end_reason).inc()
        runtime.metrics.call_audio_out_bytes.remove(sid)
        record = self.record_key
        counters = (CallField.BYTES_IN, self.bytes_in, CallField.BYTES_OUT, self.bytes_out)
        if self.end_reason == "stream_closed":
            # No stop: Twilio may still be on the call and follow <Redirect> to another edge.
            writer.command("HSET", record, CallField.EDGE_ID, "", *counters)
            self.save_cursor()
            writer.xadd_nowait(
                self.inbound_key,
                StreamDetached(runtime.settings.edge_id, self.end_reason),
                INBOUND_MAXLEN,
            )
        else:
            if self.end_reason != "worker_hangup":
                writer.xadd_nowait(self.inbound_key, CallStopped(self.end_reason), INBOUND_MAXLEN)
                writer.command(
                    "HSET",
                    record,
                    CallField.STATE,
                    CallState.ENDED,
                    CallField.ENDED_MS,
                    now_ms(),
                    CallField.END_REASON,
                    self.end_reason,
                )
            writer.command("HSET", record, *counters)
            for key in (self.inbound_key, self.outbound_key):
                writer.command("EXPIRE", key, ENDED_STREAM_TTL_S)
        self.log.info(
            "stream %s ended (%s): %d bytes (%.1f s) of audio sent to Twilio in %d frames, "
            "%d bytes received from the caller",
            self.stream_sid,
            self.end_reason,
            self.bytes_out,
            self.bytes_out / 8000,
            self.frames_out,
            self.bytes_in,
        )
        if self.websocket.application_state is not WebSocketState.DISCONNECTED:
            try:
                await self.websocket.close(code=1000)
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass  # the caller's side closed first (after its stop): nothing to close
