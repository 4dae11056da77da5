"""One Twilio call's Media Streams socket on this edge, once its stream has attached.

``EdgeCall.attach`` checks the ``start`` message's stream token and the call's record (it must
exist, must not have ended, must have no other stream here). Then two loops run in one task
group until either ends:

- twilio → redis: each ``media`` payload is base64-decoded once and published raw to the
  call's inbound stream; echoed marks and DTMF follow the same path;
- redis → twilio: the fan-in reader fills this call's bounded queue from its outbound stream;
  audio is re-framed into whole 20 ms frames and sent with the worker's marks.

With RECORDINGS_DIR set, both loops also tell the stream's recording (``recording_store.py``)
what the caller sent and what was sent to them, echoed and cleared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.edge.framing import Frame, Framer, Output
from services.edge.lease_watch import Action, LeaseView
from services.edge.limits import MediaPacer
from services.edge.recording_store import StreamRecording
from services.edge.runtime import EdgeRuntime
from services.edge.socket_close import close_cleanly
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
from shared.audio_check import AudioVerdict, OutboundInspector
from shared.errors import TwilioProtocolError
from shared.inbox import Inbox
from shared.keys import (
    FINAL_STATES,
    INBOUND_MAXLEN,
    CallField,
)
from shared.leases import lease_holder
from shared.logs import CallLog
from shared.messages import (
    AudioDone,
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
)
from shared.metrics import HOP_WORKER_TO_EDGE
from shared.records import (
    attach_stream,
    detached_commands,
    dispatch_command,
    edge_counts_command,
    ended_commands,
    expire_streams_commands,
    live_commands,
    set_fields_command,
)
from shared.tasks import run_until_first_returns

__all__ = ["CLOSE_POLICY", "EdgeCall", "Refused"]

logger = logging.getLogger("switchboard.edge.media")

MAX_MALFORMED = 100  # per call; past this the caller's side is clearly broken
MAX_MARKS_TIMED = 256  # marks awaiting Twilio's echo whose send time is kept, per call
CLOSE_POLICY = 1008


class Refused(Exception):
    """The stream may not attach; ``reason`` labels the counter and the close frame."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


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
        self.outbox: Inbox[OutboundMessage] = Inbox(
            runtime.reader,
            self.outbound_key,
            (OutboundAudio, PlaybackMark, AudioDone, ClearPlayback, Hangup),
            self._bad_entry,
        )
        self.outbox.on_message = self._on_outbound
        self.sent_cursor: bytes | None = None
        self.saved_cursor: bytes | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.media_sent = 0
        self.malformed = 0
        self.end_reason = "stream_closed"
        self.clock = runtime.clock
        self.lease_view = LeaseView(waiting_since=self.clock.monotonic())
        self.stop_requested = asyncio.Event()
        self.pacer = MediaPacer(runtime.settings.media_burst_ms)
        self.inspector = OutboundInspector()
        self.last_message_at = self.clock.monotonic()
        self.bytes_out_metric = runtime.metrics.call_audio_out_bytes.labels(self.call_sid)
        self.relay_latency = runtime.metrics.relay_latency.labels(HOP_WORKER_TO_EDGE)
        self.dropped_fast = runtime.metrics.media_dropped.labels("faster_than_real_time")
        self.marks_sent: dict[str, float] = {}  # mark name → when it was sent to Twilio
        # The webhook's time (the record's created_ms), while the call's first audio is due.
        self.first_audio_due_ms: int | None = None
        # What the caller said and heard, when RECORDINGS_DIR is set (opened once attached).
        self.recording: StreamRecording | None = None
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

        Raises ``Refused`` when the stream must be closed instead.
        """
        token = start.custom_parameters.get("token", "")
        try:
            verify_token(runtime.token_keys, token, start.call_sid, runtime.clock.wall())
        except TokenError as exc:
            raise Refused(exc.kind, f"{exc} (call {start.call_sid})") from None
        if start.call_sid in runtime.calls:
            raise Refused("already_attached", f"call {start.call_sid} already has a stream")
        # One step: a worker ending the call meanwhile must not be overwritten by "live".
        record = await attach_stream(
            runtime.redis, runtime.keys, start.call_sid, runtime.settings.edge_id, start.stream_sid
        )
        if record is None:
            raise Refused("unknown_call", f"no call {start.call_sid} was answered here")
        if record.ended:
            raise Refused("call_ended", f"call {start.call_sid} has ended")
        call = cls(runtime, websocket, stream, start)
        out_cursor = record.get(CallField.OUT_CURSOR)
        created_ms = record.get(CallField.CREATED_MS)
        if not out_cursor and created_ms and created_ms.isdigit():
            call.first_audio_due_ms = int(created_ms)  # no audio sent yet by any edge
        await call._bind(record.get(CallField.WORKER_ID), out_cursor)
        return call

    async def _bind(self, worker_id: str | None, out_cursor: str | None) -> None:
        runtime = self.runtime
        edge_id = runtime.settings.edge_id
        runtime.writer.xadd_nowait(
            self.inbound_key,
            StreamStarted(self.stream_sid, edge_id, self.clock.wall()),
            INBOUND_MAXLEN,
        )
        # A worker that held this call and died leaves no lease (or an edge revoked it): put the
        # call back in line. One that holds it but died is found by the worker watch.
        if worker_id and lease_holder(await runtime.redis.get(self.lease_key)) is None:
            self._dispatch_again()
            self.log.info("worker %s no longer holds the call; dispatched it again", worker_id)
        runtime.metrics.active_calls.inc()
        if runtime.recordings is not None:
            self.recording = runtime.recordings.open_stream(self.call_sid, self.stream_sid)
        self.outbox.open(out_cursor or "0-0")
        self.log.info(
            "stream %s attached to edge %s%s",
            self.stream_sid,
            edge_id,
            f" (resuming after outbound entry {out_cursor})" if out_cursor else "",
        )
        runtime.calls.add(self)  # last: a call in the registry is wholly attached

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
            cursor = {CallField.OUT_CURSOR: self.sent_cursor}
            self.runtime.writer.command(
                *set_fields_command(self.runtime.keys, self.call_sid, cursor)
            )
            self.saved_cursor = self.sent_cursor

    def _write_live_record(self) -> None:
        """This edge's part of the call record (state, edge, stream) and the call's key TTLs,
        written back after Redis lost them; the outbound cursor is saved again at the next
        ``save_cursor``."""
        runtime = self.runtime
        for command in live_commands(
            runtime.keys, self.call_sid, runtime.settings.edge_id, self.stream_sid
        ):
            runtime.writer.command(*command)
        self.saved_cursor = None

    def _dispatch_again(self) -> None:
        """Put the call back on the dispatch stream: its worker no longer holds it."""
        runtime = self.runtime
        runtime.writer.command(
            *dispatch_command(runtime.keys, self.call_sid, "lease-lost", self.clock)
        )

    @property
    def worker(self) -> str | None:
        """The worker serving the call at the last lease check (the worker watch checks it)."""
        return self.lease_view.holder

    def check_worker(self, holder: str | None, state: str | None, now: float) -> None:
        """One lease check's result (runtime's lease watch): re-dispatch or give up as needed."""
        runtime = self.runtime
        if state is None:
            # The record is gone while the caller is still here: Redis restarted empty.
            self._write_live_record()
            self.log.warning("call record was missing (Redis restarted?): wrote it back")
        elif state in FINAL_STATES:
            self.lease_view.holder = None  # an ended call needs no worker any more
            return
        waited_s = now - self.lease_view.waiting_since
        action = self.lease_view.observe(holder, now, runtime.settings.dispatch_timeout_s)
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

    def move_off(self) -> None:
        self.end_reason = "stream_closed"
        self.stop_requested.set()

    def worker_gone(self, worker: str, revoked: bool, now: float) -> None:
        """``worker``'s alive key lapsed (runtime's worker watch); ``revoked``: this edge took
        the call's lease from it, so the call goes back in line now."""
        if self.lease_view.worker_gone(worker, revoked, now) is Action.REDISPATCH:
            self._dispatch_again()
            self.runtime.metrics.redispatched.inc()
            self.log.warning("worker %s stopped renewing its alive key: dispatched again", worker)

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
            self.last_message_at = self.clock.monotonic()
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
            idle_s = self.clock.monotonic() - self.last_message_at
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
            self.inbound_key,
            InboundAudio(audio, event.timestamp_ms, self.clock.wall()),
            INBOUND_MAXLEN,
        )
        self.bytes_in += len(audio)
        self.runtime.metrics.audio_in_bytes.inc(len(audio))
        if self.recording is not None:
            heard = self.recording.heard
            heard.caller_audio(event.timestamp_ms, audio, self.last_message_at * 1000)
        return False

    async def _on_mark(self, event: Mark) -> bool:
        if self.recording is not None:
            self.recording.heard.mark_echoed(event.name, self.last_message_at * 1000)
        sent = self.marks_sent.pop(event.name, None)
        if sent is not None:
            self.runtime.metrics.mark_round_trip.observe(self.clock.monotonic() - sent)
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

    def _bad_entry(self, detail: str) -> None:
        self.runtime.metrics.malformed.labels("bad_redis_message").inc()
        self.log.error("dropped outbound %s", detail)

    def _on_outbound(self, message: OutboundMessage) -> None:
        """Barge-in: audio of the interrupted item still waiting here is never sent."""
        if isinstance(message, ClearPlayback):
            item_id = message.item_id
            self.outbox.drop(lambda m: isinstance(m, OutboundAudio) and m.item_id == item_id)

    async def _outbound_loop(self) -> None:
        send = self.websocket.send_text
        while True:
            entry_id, message = await self.outbox.get()
            if isinstance(message, OutboundAudio):
                if not self.inspector.done:
                    self._check_audio(self.inspector.feed(message.audio))
                await self._send_outputs(send, self.framer.audio(message.audio))
                self.relay_latency.observe(max(0.0, self.clock.wall() - message.sent_at))
            elif isinstance(message, PlaybackMark):
                await self._send_outputs(send, self.framer.mark(message.name))
            elif isinstance(message, AudioDone):
                await self._send_outputs(send, self.framer.finish())
            elif isinstance(message, ClearPlayback):
                await send(clear_message(self.stream_sid))
                if self.recording is not None:
                    self.recording.heard.cleared(self.clock.monotonic() * 1000)
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
        check = {CallField.AUDIO_CHECK: verdict.kind}
        self.runtime.writer.command(*set_fields_command(self.runtime.keys, self.call_sid, check))
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
                if self.recording is not None:
                    self.recording.heard.sent_audio(output.audio, self.clock.monotonic() * 1000)
                size = len(output.audio)
                self.bytes_out += size
                self.media_sent += 1
                self.runtime.metrics.audio_out_bytes.inc(size)
                self.bytes_out_metric.inc(size)
                if self.first_audio_due_ms is not None:
                    waited_s = (self.clock.wall_ms() - self.first_audio_due_ms) / 1000
                    self.first_audio_due_ms = None
                    self.runtime.metrics.webhook_to_first_audio.observe(max(0.0, waited_s))
                if self.log.debug_enabled:
                    self.log.debug(
                        "sent media message %d (%d bytes) to Twilio", self.media_sent, size
                    )
            else:
                await send(mark_message(self.stream_sid, output.name))
                if self.recording is not None:
                    self.recording.heard.sent_mark(output.name, self.clock.monotonic() * 1000)
                marks = self.marks_sent
                if len(marks) >= MAX_MARKS_TIMED:
                    del marks[next(iter(marks))]  # the oldest: its echo was lost
                marks[output.name] = self.clock.monotonic()

    # --- the end --------------------------------------------------------------------------

    async def _finish(self) -> None:
        runtime, sid = self.runtime, self.call_sid
        writer = runtime.writer
        self.outbox.close()
        runtime.calls.remove(self)
        runtime.metrics.active_calls.dec()
        if self.recording is not None:
            self.recording.close()
        runtime.metrics.calls.labels(self.end_reason).inc()
        runtime.metrics.call_audio_out_bytes.remove(sid)
        keys = runtime.keys
        if self.end_reason == "stream_closed":
            # No stop: Twilio may still be on the call and follow <Redirect> to another edge.
            commands = detached_commands(keys, sid, self.bytes_in, self.bytes_out)
            self.save_cursor()
            writer.xadd_nowait(
                self.inbound_key,
                StreamDetached(runtime.settings.edge_id, self.end_reason),
                INBOUND_MAXLEN,
            )
        else:
            commands = [edge_counts_command(keys, sid, self.bytes_in, self.bytes_out)]
            if self.end_reason != "worker_hangup":
                writer.xadd_nowait(self.inbound_key, CallStopped(self.end_reason), INBOUND_MAXLEN)
                commands += ended_commands(keys, sid, self.end_reason, runtime.clock.wall_ms())
            commands += expire_streams_commands(keys, sid)
        for command in commands:
            writer.command(*command)
        self.log.info(
            "stream %s ended (%s): %d bytes (%.1f s) of audio sent to Twilio in %d messages, "
            "%d bytes received from the caller",
            self.stream_sid,
            self.end_reason,
            self.bytes_out,
            self.bytes_out / 8000,
            self.media_sent,
            self.bytes_in,
        )
        self.runtime.closing += 1  # a draining edge waits for the close to be answered
        try:
            await close_cleanly(self.websocket)
        finally:
            self.runtime.closing -= 1
