"""One call on a worker: its Realtime sessions and the relays between them and Redis.

Setup (``session_setup.py``): connect, configure, and relay nothing until ``session.updated``
confirms the call's audio format both ways. Then these loops run in one task group until the
first returns:

- caller → model: the call's inbound stream (filled by the worker's fan-in reader) to
  ``input_audio_buffer.append``, base64-encoded once;
- model → caller: audio deltas, decoded once, to the outbound stream, with marks that tell when
  the caller heard them; transcripts, turns, function calls. When the session drops without
  the worker asking (a network error, a close by the server, its 60-minute cap), a new one is
  opened, confirmed and seeded with the conversation so far, up to REALTIME_RECONNECTS times a
  minute (``reconnect.py``); meanwhile the caller's audio waits (bounded) and goes to the new
  session, subject to the takeover backlog policy. Past that budget, or on an error no new
  session would cure (key, quota, model, format), the call ends and the caller hears
  FAILURE_MESSAGE through the edge's resume route;
- watchdog: the Twilio stream must reach an edge in time, and come back in time if it drops;
  an edge that goes silent (killed: no stop, no detach) ends the call after EDGE_GRACE;
- rollover: after SESSION_MAX, at the next pause, the call moves to a fresh session seeded the
  same way (the API caps a session at 60 minutes);
- cancel: a reply interrupted by the caller is cancelled if the server has not done so itself.

Conversation (decisions in ``turn_state.py``, playback bookkeeping in ``playback.py``, turn
order in ``transcript.py``): barge-in (speech over a playing reply: ClearPlayback to the edge,
``conversation.item.truncate`` to what the caller heard, late deltas of that reply dropped);
DTMF digits as user messages; an optional greeting; the ``end_call`` tool and the
duration/token caps, which end the call once the model's goodbye has been heard; configured
HTTP tools; token usage and a summary on the call record at the end.

Sessions (``live_session.py``): events are handled with the session they came from; replies
and caller audio go to the current one. A function output for a call the current session
never saw (it was made before a rollover or reconnect) recreates the call there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import websockets.exceptions

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.context import WorkerContext
from services.realtime_worker.live_session import LiveSession, SessionHolder
from services.realtime_worker.playback import PlaybackTracker
from services.realtime_worker.reconnect import CloseInfo, ReconnectBudget, drop_reason
from services.realtime_worker.session_setup import OpenedSession, check_formats, open_session
from services.realtime_worker.tool_runner import run_tool
from services.realtime_worker.tools import session_tools
from services.realtime_worker.transcode import CallTranscoder, call_codec
from services.realtime_worker.transcript import Append, Rewrite, Transcript, Write
from services.realtime_worker.turn_state import (
    BargeIn,
    Ending,
    EndReason,
    cap_reached,
    decide_barge_in,
    heard_text,
)
from shared.audio import bytes_to_ms
from shared.errors import (
    DecodeError,
    FormatMismatchError,
    RealtimeProtocolError,
    RealtimeSessionError,
    is_retryable,
)
from shared.keys import (
    CALL_KEY_TTL_S,
    DISPATCH_MAXLEN,
    ENDED_STREAM_TTL_S,
    OUTBOUND_MAXLEN,
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
    InboundMessage,
    MarkPlayed,
    Message,
    OutboundAudio,
    PlaybackMark,
    StreamDetached,
    StreamStarted,
    decode,
)
from shared.metrics import HOP_EDGE_TO_WORKER
from shared.records import (
    Turn,
    end_of_call_commands,
    load_turns,
    now_ms,
    turn_commands,
    turns_rewrite_commands,
)
from shared.streams import Entry, release_lease
from shared.tasks import run_until_first_returns

__all__ = ["CallSession"]

logger = logging.getLogger("switchboard.worker.call")

QUEUE_PAUSE_AT = 256
QUEUE_RESUME_AT = 64
WATCHDOG_INTERVAL_S = 0.25
MAX_LOGGED_FAULTS = 3
CLEANUP_TIMEOUT_S = 2.0
ROLLOVER_DRAIN_S = 0.25  # the old session's last events, already on their way, before it closes
ROLLOVER_RETRY_S = 5.0
ROLLOVER_FORCE_MAX_S = 60.0  # longest wait for a pause before rolling over anyway…
ROLLOVER_FORCE_FRACTION = 0.2  # …or this fraction of SESSION_MAX, when that is shorter
# With interrupt_response the server cancels an interrupted reply itself; only if it has not
# within this long does the worker send response.cancel (never a cancel with nothing to cancel).
CANCEL_GRACE_S = 0.5
# A response.cancel is answered by response.done a little later; a response.create before that
# would be refused (conversation_already_has_active_response). Longest wait for it.
CANCEL_WAIT_S = 2.0
WRAP_UP_TIMEOUT_S = 30.0  # longest wait for a goodbye to be said and heard before hanging up
RATE_LIMIT_WARN_FRACTION = 0.1  # warn (once per call) when a limit's remaining falls below this
DTMF_DIGITS = frozenset("0123456789*#ABCD")
GOODBYE_CUES = {
    EndReason.MODEL: "Say a brief, friendly goodbye to the caller now. The call then ends.",
    EndReason.MAX_DURATION: (
        "The call has reached its time limit. Wrap up now: tell the caller briefly that you "
        "have to end the call, and say goodbye."
    ),
    EndReason.MAX_TOKENS: (
        "The call has reached its usage limit. Wrap up now: tell the caller briefly that you "
        "have to end the call, and say goodbye."
    ),
}
# By end reason (an EndReason is its str value): who ended the call, on its record.
ENDED_BY: dict[str, str] = {
    EndReason.MODEL: "model",
    EndReason.MAX_DURATION: "limit",
    EndReason.MAX_TOKENS: "limit",
}

Handler = Callable[[Any, LiveSession], Coroutine[Any, Any, bool]]


@dataclass
class _Response:
    """What one model response produced, for its log lines and its turn."""

    item_id: str | None = None  # the reply item (its audio and transcript)
    transcript: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    heard_ms: int | None = None  # set when the caller cut it short: what was heard


@dataclass
class _Backlog:
    """Caller audio that waited while no session could take it (a takeover, a reconnect):
    frames older than ``max_age_s`` are skipped (the caller has moved on), younger ones sent."""

    last_id: tuple[int, int]  # the last inbound entry when the wait ended
    max_age_s: float
    why: str  # "took over the call from a lapsed lease", "reconnected"
    seeded: int = 0
    skipped_bytes: int = 0
    sent_bytes: int = 0


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a comparable pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _close_info(ws: Any, exc: websockets.exceptions.ConnectionClosed | None) -> CloseInfo:
    """How a session's socket ended (``exc``: what iterating it raised, if anything)."""
    if exc is not None:
        close = exc.rcvd
        return CloseInfo(close.code, close.reason) if close else CloseInfo(None)
    code = getattr(ws, "close_code", None)
    return CloseInfo(None if code in (None, 1006) else int(code), ws.close_reason or "")


def _failure(exc: BaseException) -> tuple[str, str]:
    """The error code and message a failed session setup (or relay) ends the call with."""
    if isinstance(exc, FormatMismatchError):
        return "format_mismatch", str(exc)
    if isinstance(exc, RealtimeSessionError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):
        return "realtime_timeout", "the Realtime session was not ready in time"
    if isinstance(exc, OSError | websockets.exceptions.WebSocketException):
        return "realtime_unreachable", f"cannot open the Realtime session: {exc}"
    return "internal_error", repr(exc)


def _cured_by_retrying(exc: BaseException) -> bool:
    """Whether another attempt at a new session could succeed where this one failed."""
    if isinstance(exc, FormatMismatchError):
        return False
    if isinstance(exc, RealtimeSessionError):
        return not rt.is_fatal(exc.code)
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return is_retryable(exc)  # 401/403/404 stay wrong; 429 and 5xx may pass
    return isinstance(exc, TimeoutError | OSError | websockets.exceptions.WebSocketException)


class CallSession:
    """Holds the Realtime sessions of one call for as long as this worker owns the call."""

    def __init__(
        self,
        ctx: WorkerContext,
        call_sid: str,
        in_cursor: str,
        *,
        takeover: bool = False,
        started_ms: int | None = None,
    ) -> None:
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
        self.holder = SessionHolder()
        self.clock = time.monotonic  # of playback, the ending and reconnects; tests replace it
        self.claimed_at = time.monotonic()
        # A taken-over call's stream is attached already: its StreamStarted will not come again.
        self.takeover = takeover
        self.stream_seen = takeover
        self.last_inbound = self.claimed_at
        self.detached_since: float | None = None
        self._backlog: _Backlog | None = None
        self.transcript = Transcript()
        self.formats: tuple[str, str] | None = None
        self.session_started = self.claimed_at
        self.idle = asyncio.Event()  # no response in progress and no caller speech since
        self.handoff = False
        self.stop_requested = asyncio.Event()
        self.end_reason: str | None = None
        self.error: str | None = None
        self.hang_up = False  # the worker ends the call: tell the edge, mark the record
        self.lease_lost = False
        self.unconfirmed_warned = False
        self.rate_limit_warned = False
        self.responses: dict[str, _Response] = {}
        self.event_seq = 0
        self.bytes_to_model = 0
        self.bytes_from_model = 0
        self.faults = 0
        self.started_ms = started_ms or now_ms()  # the call's start (its record's created_ms)
        self.playback = PlaybackTracker()
        settings = ctx.settings
        self.codec = call_codec(settings)
        self.options = rt.SessionOptions(
            model=settings.realtime_model,
            instructions=settings.instructions,
            voice=settings.voice,
            transcription_model=settings.transcription_model,
            turn_detection=settings.vad,
            interrupt_response=settings.barge_in,
            tools=session_tools((rt.END_CALL_TOOL,), ctx.tools),
            audio_format=self.codec.wire_format,
        )
        self.reconnects = ReconnectBudget(settings.realtime_reconnects)
        self.reconnect_count = 0
        # MAX_AUDIO_DELTA_BYTES counts μ-law bytes, that is duration, whatever the model speaks.
        self.max_delta_bytes = settings.max_audio_delta_bytes * self.codec.bytes_per_ulaw_byte
        self.audio_in_bytes = ctx.metrics.audio_in_bytes
        self.relay_latency = ctx.metrics.relay_latency.labels(HOP_EDGE_TO_WORKER)
        if takeover:
            self.playback.stream_ready(self.clock())
        self.active_response: str | None = None  # of the current session: created, not done
        self._cancel_target: str | None = None
        self._cancel_wanted = asyncio.Event()
        self.barge_ins = 0
        self.usage = rt.TokenUsage()
        self.ending: Ending | None = None
        self.caller_ended = False  # the edge reported the end of the call (CallStopped)
        self._answered_calls: set[str] = set()
        self._tools = {tool.name: tool for tool in ctx.tools}
        self._tool_tasks: set[asyncio.Task[None]] = set()  # calls to configured tools
        self._response_over = asyncio.Event()  # set whenever active_response becomes None
        self._handlers: dict[type, Handler] = {
            rt.OutputAudioDelta: self._on_audio_delta,
            rt.OutputAudioDone: self._on_audio_done,
            rt.TranscriptDelta: self._on_transcript_delta,
            rt.TranscriptDone: self._on_transcript_done,
            rt.OutputItemAdded: self._on_output_item_added,
            rt.InputCommitted: self._on_input_committed,
            rt.InputTranscript: self._on_input_transcript,
            rt.InputTranscriptFailed: self._on_transcript_failed,
            rt.ResponseDone: self._on_response_done,
            rt.ResponseCreated: self._on_response_created,
            rt.SpeechStarted: self._on_speech_started,
            rt.SessionConfirmed: self._on_session,
            rt.RateLimits: self._on_rate_limits,
            rt.ErrorEvent: self._on_error,
        }

    @property
    def turns(self) -> list[Turn]:
        """The conversation so far, in conversation order."""
        return self.transcript.turns()

    # --- control from the worker ----------------------------------------------------------

    def stop(self, reason: str, *, lease_lost: bool = False) -> None:
        """End this session without ending the call (lease lost, or handed back on drain)."""
        self.lease_lost = self.lease_lost or lease_lost
        self._end(reason)
        self.stop_requested.set()

    def hand_off(self) -> None:
        """Stop without hanging up, and put the call back on the dispatch stream once the
        lease is released, so that another worker takes it over at once."""
        if self.end_reason is None:
            self.handoff = True
        self.stop("handoff")

    def restore_record(self) -> None:
        """Write again what this worker owns of the call in Redis, after Redis lost it
        (restarted empty). HSET of our own fields only: the edge re-writes its own."""
        keys, sid, writer = self.ctx.keys, self.call_sid, self.ctx.writer
        fields: list[object] = [CallField.WORKER_ID, self.ctx.worker_id]
        fields += [CallField.IN_CURSOR, self.in_cursor]
        if self.formats is not None:
            fields += [CallField.INPUT_FORMAT, self.formats[0]]
            fields += [CallField.OUTPUT_FORMAT, self.formats[1]]
        writer.command("HSET", keys.call(sid), *fields)
        writer.command("EXPIRE", keys.call(sid), CALL_KEY_TTL_S)
        for command in turns_rewrite_commands(keys, sid, self.turns):
            writer.command(*command)

    def _end(self, reason: str, *, hang_up: bool = False, error: str | None = None) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.hang_up = hang_up
            self.error = error

    def _next_event_id(self, kind: str) -> str:
        self.event_seq += 1
        return f"sb_{kind}_{self.event_seq}"

    # --- sessions ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the call ends or this worker lets go of it. Never raises."""
        self.ctx.reader.subscribe(self.inbound_key, self._sink, self.in_cursor)
        try:
            await self._session()
        except* Exception as group:
            error = group.exceptions[0]
            code, message = _failure(error)
            if code == "internal_error":
                self.log.error("call session failed", exc_info=error)
            self._fail(code, message)
        finally:
            await self._cleanup()

    async def _session(self) -> None:
        if self.takeover:
            await self._load_takeover_state()
        async with asyncio.timeout(self.ctx.settings.realtime_connect_timeout_s):
            opened = await self._open()
        self.holder.install(opened.ws)
        if self._backlog is not None:
            self._backlog.seeded = opened.seeded
            if _stream_id(self.in_cursor) >= self._backlog.last_id:
                self._backlog_done()
        if not self.takeover and self.ctx.settings.greeting:
            await self._send(self._persona_response("greeting", self.ctx.settings.greeting))
            self.log.info("asked the model to greet the caller")
        await run_until_first_returns(
            self._caller_to_model(),
            self._model_to_caller(),
            self._watchdog(),
            self._rollover_loop(),
            self._cancel_loop(),
            self.stop_requested.wait(),
        )

    async def _load_takeover_state(self) -> None:
        """The stored turns, and where the unread backlog ends; Redis failing here costs the
        new session its memory, never the call."""
        ctx = self.ctx
        self.ctx.metrics.takeovers.inc()
        try:
            self.transcript = Transcript(await load_turns(ctx.redis, ctx.keys, self.call_sid))
        except Exception as exc:
            self.log.warning("could not read the call's turns on takeover: %s", exc)
        await self._start_backlog("took over the call from a lapsed lease")

    async def _start_backlog(self, why: str, seeded: int = 0) -> None:
        """Caller audio that waited up to now is sent only if recent (TAKEOVER_BACKLOG_MS)."""
        try:
            last: Any = await self.ctx.redis.xrevrange(self.inbound_key, count=1)
        except Exception as exc:
            self.log.warning("could not read where the caller's waiting audio ends: %s", exc)
            last = []
        last_id = _stream_id(last[0][0]) if last else (0, 0)
        max_age_s = self.ctx.settings.takeover_backlog_ms / 1000
        self._backlog = _Backlog(last_id, max_age_s, why, seeded)

    def _backlog_done(self) -> None:
        backlog = self._backlog
        if backlog is None:
            return
        self._backlog = None
        self.log.info(
            "%s: seeded %d turns, skipped %d ms of stale caller audio, sending %d ms",
            backlog.why,
            backlog.seeded,
            bytes_to_ms(backlog.skipped_bytes),
            bytes_to_ms(backlog.sent_bytes),
        )

    async def _open(self) -> OpenedSession:
        """A new Realtime session: its format confirmed (and recorded), seeded with the turns
        so far. Raises as ``open_session``."""
        settings = self.ctx.settings
        opened = await open_session(
            self.ctx.connect, settings, self.options, self.turns, self._next_event_id
        )
        confirmed = opened.confirmed
        self.formats = (confirmed.input_format or "", confirmed.output_format or "")
        self.ctx.writer.command(
            "HSET",
            self.ctx.keys.call(self.call_sid),
            CallField.INPUT_FORMAT,
            self.formats[0],
            CallField.OUTPUT_FORMAT,
            self.formats[1],
        )
        self.log.info(
            "realtime session %s ready: %s in, %s out (model %s, voice %s)",
            confirmed.session_id,
            confirmed.input_format,
            confirmed.output_format,
            settings.realtime_model,
            settings.voice,
        )
        if isinstance(self.codec, CallTranscoder):
            self.log.info(
                "transcoding: caller μ-law 8 kHz ↔ model PCM16 24 kHz (libsoxr %s)",
                self.codec.quality,
            )
        self.session_started = time.monotonic()
        self.idle.set()
        return opened

    async def _switch_session(self, *, backlog: str | None = None) -> tuple[LiveSession, int]:
        """Open a new session and make it the current one, holding the send lock meanwhile
        (caller audio waits for it). ``backlog``: start the stale-audio policy, saying why.
        Returns the session replaced and the turns seeded; raises as ``open_session``."""
        async with self.holder.lock:
            async with asyncio.timeout(self.ctx.settings.realtime_connect_timeout_s):
                opened = await self._open()
            if backlog is not None:
                await self._start_backlog(backlog, opened.seeded)
            old = self.holder.current
            self.holder.install(opened.ws)
        return old, opened.seeded

    async def _session_switched(self) -> None:
        """Settle what the replaced session left unfinished: its open responses keep what
        they said, texts that will never come are given up, and a goodbye it never said is
        asked of the new session."""
        self._close_open_responses()
        for role in ("assistant", "user"):
            self._store(self.transcript.abandon_pending(role))
        self.active_response = None
        self._response_over.set()
        self.codec.drop_reply()
        ending = self.ending
        if ending is not None and ending.goodbye_pending and self.end_reason is None:
            await self._send(self._persona_response("goodbye", GOODBYE_CUES[ending.reason]))

    def _persona_response(self, kind: str, cue: str) -> str:
        """``response.create`` for a cue, under the session's own instructions too: the
        override replaces them for the response (docs/protocols.md §3.4)."""
        instructions = rt.response_instructions(self.ctx.settings.instructions, cue)
        return rt.response_create(self._next_event_id(kind), instructions)

    async def _publish(self, *messages: Message) -> None:
        """Queue messages for the caller's edge; Redis drops them if another worker holds the
        call by the time they are written (this process may be paused in between)."""
        await self.ctx.writer.fenced_xadd(
            self.lease_key, self.ctx.worker_id, self.outbound_key, messages, OUTBOUND_MAXLEN
        )

    def _publish_nowait(self, *messages: Message) -> None:
        """Like ``_publish``, for control messages: never waits."""
        self.ctx.writer.fenced_xadd_nowait(
            self.lease_key, self.ctx.worker_id, self.outbound_key, messages, OUTBOUND_MAXLEN
        )

    async def _send(self, event: str) -> bool:
        """Send a client event on the current session now; False when it has just dropped
        (the relay notices and replaces it). Never waits for the send lock, so handlers of the
        model's events never stall behind a session switch."""
        try:
            await self.holder.current.send(event)
        except websockets.exceptions.ConnectionClosed:
            return False
        return True

    def _fail(self, code: str, message: str) -> None:
        self.ctx.metrics.realtime_errors.labels(rt.metric_code(code)).inc()
        self._count_error()
        self.log.error("ending the call: %s (%s)", message, code)
        self._end(code, hang_up=True, error=message)

    # --- caller → model ---------------------------------------------------------------------

    def _sink(self, entries: list[Entry]) -> bool:
        """Called by the fan-in reader with new inbound entries; False pauses the stream."""
        self.last_inbound = time.monotonic()
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

    async def _caller_to_model(self) -> None:
        while True:
            await self.has_input.wait()
            self.has_input.clear()
            while self.queue:
                entry_id, message = self.queue.popleft()
                if self.paused and len(self.queue) <= QUEUE_RESUME_AT:
                    self.paused = False
                    self.ctx.reader.resume(self.inbound_key)
                if type(message) is InboundAudio:
                    if self._backlog is None or self._backlog_keeps(message):
                        await self._send_audio(message.audio)
                        self.relay_latency.observe(max(0.0, time.time() - message.sent_at))
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
                    # Marks of items this worker never published (a takeover) are ignored.
                    if self.playback.mark_played(message.name, self.clock()) is not None:
                        self._check_ending()
                elif isinstance(message, DtmfPressed):
                    await self._on_dtmf(message.digit)
                elif isinstance(message, CallStopped):
                    self.in_cursor = entry_id.decode()
                    self.caller_ended = True
                    self._end(message.reason)
                    return
                self.in_cursor = entry_id.decode()
                if self._backlog is not None and _stream_id(entry_id) >= self._backlog.last_id:
                    self._backlog_done()

    async def _send_audio(self, audio: bytes) -> None:
        payload = self.codec.to_model(audio)
        # Waits while a rollover or a reconnect switches sessions: the caller's audio waits in
        # the (bounded) queue and in Redis meanwhile, and goes to the new session.
        if payload:
            await self.holder.send(rt.audio_append(payload))
        self.bytes_to_model += len(audio)
        self.audio_in_bytes.inc(len(audio))

    def _backlog_keeps(self, message: InboundAudio) -> bool:
        """Whether to send a frame of audio that waited for a session: only if still recent."""
        backlog = self._backlog
        assert backlog is not None
        size = len(message.audio)
        if time.time() - message.sent_at > backlog.max_age_s:
            backlog.skipped_bytes += size
            self.ctx.metrics.stale_audio_skipped_bytes.inc(size)
            return False
        backlog.sent_bytes += size
        return True

    def _on_stream_started(self, message: StreamStarted) -> None:
        if self.detached_since is not None or self.stream_seen:
            # With or without a StreamDetached first: an edge that was killed writes none.
            self.log.info("stream is back, on edge %s", message.edge_id)
        self.stream_seen = True
        self.detached_since = None
        self.playback.stream_ready(self.clock())

    async def _on_dtmf(self, digit: str) -> None:
        """A key press is the caller's turn: it interrupts a playing reply, reaches the model
        as a user message, and prompts a response — once the interrupted response is over
        (a response.create while one is active would be refused)."""
        self.log.info("caller pressed %s", digit)
        settings = self.ctx.settings
        if not settings.dtmf or self.ending is not None:
            return
        if digit not in DTMF_DIGITS:
            self._fault("bad_dtmf", f"DTMF digit {digit[:8]!r}")
            return
        decision = decide_barge_in(
            self.playback.current, self.clock(), enabled=settings.barge_in, min_heard_ms=0
        )
        if decision is not None:
            await self._barge_in(decision)
        active = self.active_response
        if active is not None:
            # No VAD cancels for a key press: the reply being generated gives way to it.
            await self.holder.send(rt.response_cancel(self._next_event_id("cancel"), active))
            if not await self._response_ended(CANCEL_WAIT_S):
                self.log.warning(
                    "response %s was not over %.0fs after its cancel", active, CANCEL_WAIT_S
                )
        text = f"The caller pressed {digit} on the keypad."
        await self.holder.send(
            rt.conversation_item_create(self._next_event_id("dtmf"), rt.user_text_item(text)),
            rt.response_create(self._next_event_id("dtmf")),
        )
        self.ctx.metrics.dtmf_digits.inc()

    async def _response_ended(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until no response is active; whether none is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.active_response is not None:
                    self._response_over.clear()
                    await self._response_over.wait()
        return self.active_response is None

    # --- model → caller ---------------------------------------------------------------------

    async def _model_to_caller(self) -> None:
        while True:
            session = self.holder.current
            close = await self._relay_session(session)
            if close is None:
                return  # a handler ended the call
            if not self.holder.is_current(session):
                continue  # replaced on purpose (a rollover), then closed
            if not await self._reconnect(close):
                return

    async def _relay_session(self, session: LiveSession) -> CloseInfo | None:
        """Handle one session's events: None when a handler ended the call, else how the
        socket closed."""
        handlers = self._handlers
        try:
            async for frame in session.ws:
                try:
                    event = rt.parse_server_event(frame)
                except RealtimeProtocolError as exc:
                    self._fault(exc.kind, f"from the Realtime server: {exc}")
                    continue
                handler = handlers.get(type(event))
                if handler is not None and await handler(event, session):
                    return None
        except websockets.exceptions.ConnectionClosed as exc:
            close = _close_info(session.ws, exc)
        else:
            close = _close_info(session.ws, None)
        return CloseInfo(close.code, close.reason, session.server_error_seen)

    async def _reconnect(self, close: CloseInfo) -> bool:
        """The current session dropped: open another, seeded with the conversation so far,
        within the REALTIME_RECONNECTS budget. False when the call has to end instead."""
        limit = self.ctx.settings.realtime_reconnects
        reason = drop_reason(close)
        what = close.describe() + (" after a server_error" if close.after_server_error else "")
        self.log.warning("the Realtime session dropped (%s)", what)
        while True:
            delay = self.reconnects.next_delay(self.clock())
            if delay is None:
                self._fail(
                    "realtime_reconnects_exhausted",
                    f"the Realtime session dropped ({what}) after {limit} reconnects within a "
                    f"minute (REALTIME_RECONNECTS={limit})",
                )
                return False
            self.reconnect_count += 1
            self.ctx.metrics.session_reconnects.labels(reason).inc()
            self.ctx.writer.command(
                "HINCRBY", self.ctx.keys.call(self.call_sid), CallField.RECONNECTS, 1
            )
            self.log.info(
                "opening a new Realtime session in %.0f ms (reconnect %d of at most %d a minute)",
                delay * 1000,
                self.reconnects.used(self.clock()),
                limit,
            )
            await asyncio.sleep(delay)
            try:
                _, seeded = await self._switch_session(backlog="reconnected")
            except Exception as exc:
                code, message = _failure(exc)
                if not _cured_by_retrying(exc):
                    self._fail(code, message)
                    return False
                self.log.warning("could not open a new Realtime session: %s (%s)", message, code)
                reason = "reconnect_failed"
                continue
            await self._session_switched()
            self.log.info("reconnected: a new Realtime session holds the call (%d turns)", seeded)
            return True

    async def _on_audio_delta(self, event: rt.OutputAudioDelta, session: LiveSession) -> bool:
        audio = event.audio
        if self.playback.interrupted(event.item_id):
            # Already on the wire when the caller barged in: never after the clear.
            self.ctx.metrics.late_audio_dropped_bytes.inc(len(audio))
            return False
        if len(audio) > self.max_delta_bytes:
            # Real deltas hold a fraction of a second; this one would flood the caller's queue.
            duration = len(audio) // self.codec.bytes_per_ulaw_byte  # in μ-law bytes
            self._fault(
                "delta_too_large",
                f"audio delta of {duration} μ-law bytes ({bytes_to_ms(duration)} ms) is over "
                f"MAX_AUDIO_DELTA_BYTES={self.ctx.settings.max_audio_delta_bytes}",
            )
            return False
        session.items.add(event.item_id)
        audio = self.codec.to_caller(audio)
        await self._publish_model_audio(event.item_id, event.response_id, audio)
        return False

    async def _publish_model_audio(self, item_id: str, response_id: str, audio: bytes) -> None:
        """μ-law for the caller, with the mark that tells when it was heard."""
        if not audio:
            return  # the codec holds it back for now
        if self.lease_lost or not self.ctx.lease_clock.valid():
            # Paused past the lease, or told the lease is gone: another worker may be speaking
            # on this call already, and this session's last audio must not reach the caller.
            if not self.unconfirmed_warned:
                self.unconfirmed_warned = True
                self.log.warning("dropping model audio until this worker's lease is confirmed")
            return
        mark = self.playback.audio_sent(item_id, response_id, len(audio), self.clock())
        outbound = OutboundAudio(audio, item_id, time.time())
        await self._publish(*((outbound, PlaybackMark(mark)) if mark else (outbound,)))
        response = self._response(response_id)
        response.item_id = item_id
        response.audio_bytes += len(audio)
        self.bytes_from_model += len(audio)
        self.ctx.metrics.audio_out_bytes.inc(len(audio))
        if self.log.debug_enabled:
            self.log.debug("model audio: %d bytes for item %s", len(audio), item_id)

    async def _on_audio_done(self, event: rt.OutputAudioDone, session: LiveSession) -> bool:
        if self.playback.interrupted(event.item_id):
            return False
        await self._publish_model_audio(event.item_id, event.response_id, self.codec.finish_reply())
        # The ending waits for the echo of the item's last mark to know it was heard to the end.
        mark = self.playback.close_item(event.item_id)
        closing = [PlaybackMark(mark)] if mark else []
        self._publish_nowait(*closing, AudioDone(event.item_id))
        return False

    async def _on_transcript_delta(self, event: rt.TranscriptDelta, session: LiveSession) -> bool:
        self._response(event.response_id).transcript.append(event.delta)
        return False

    async def _on_transcript_done(self, event: rt.TranscriptDone, session: LiveSession) -> bool:
        response = self._response(event.response_id)
        response.item_id = event.item_id
        response.transcript[:] = [event.transcript]
        return False

    async def _on_output_item_added(self, event: rt.OutputItemAdded, session: LiveSession) -> bool:
        if event.item_type == "message":
            # The reply's place in the conversation: its text comes with response.done.
            self._response(event.response_id).item_id = event.item_id
            self.transcript.assistant_started(event.item_id, now_ms())
        return False

    async def _on_input_committed(self, event: rt.InputCommitted, session: LiveSession) -> bool:
        if self.ctx.settings.transcription_model:
            # The caller's turn takes its place now; its words may come after the reply.
            self.transcript.user_spoke(event.item_id, event.previous_item_id, now_ms())
        return False

    async def _on_input_transcript(self, event: rt.InputTranscript, session: LiveSession) -> bool:
        self.log.info("caller said: %s", event.transcript)
        self._store(self.transcript.fill(event.item_id, "user", event.transcript.strip(), now_ms()))
        return False

    async def _on_transcript_failed(
        self, event: rt.InputTranscriptFailed, session: LiveSession
    ) -> bool:
        self.ctx.metrics.realtime_errors.labels(rt.metric_code(event.code)).inc()
        self.log.warning(
            "the caller's words could not be transcribed (%s): %s", event.code, event.message
        )
        self._store(self.transcript.transcription_failed(event.item_id))
        return False

    async def _on_speech_started(self, event: rt.SpeechStarted, session: LiveSession) -> bool:
        heard_at = time.monotonic()
        self.idle.clear()
        settings = self.ctx.settings
        decision = decide_barge_in(
            self.playback.current,
            self.clock(),
            enabled=settings.barge_in and self.ending is None,
            min_heard_ms=settings.barge_in_min_heard_ms,
        )
        if decision is None:
            return False
        await self._barge_in(decision, speech_at=heard_at)
        if self.active_response == decision.response_id:
            # With interrupt_response the server cancels the reply itself; the cancel loop
            # makes sure it did.
            self._cancel_target = decision.response_id
            self._cancel_wanted.set()
        return False

    async def _barge_in(self, decision: BargeIn, *, speech_at: float | None = None) -> None:
        """Stop the reply at the caller's end and make the model forget what was not heard.
        ``speech_at``: when the caller's speech_started was handled (VAD barge-ins)."""
        item = self.playback.get(decision.item_id)
        if item is not None:
            item.interrupted = True  # before any await: its late deltas are dropped from now
        self.codec.drop_reply()
        if decision.response_id in self.responses:
            self._response(decision.response_id).heard_ms = decision.audio_end_ms
        else:
            self._amend_spoken_turn(decision)
        self._publish_nowait(ClearPlayback(decision.item_id))
        if speech_at is not None:
            self.ctx.metrics.speech_to_clear.observe(time.monotonic() - speech_at)
        # Only the session that produced the item knows it; a reply of a session since
        # replaced is cut at the caller's end, and its turn amended, and that is all.
        if decision.item_id in self.holder.current.items:
            await self._send(
                rt.truncate(
                    self._next_event_id("truncate"), decision.item_id, decision.audio_end_ms
                )
            )
        self.barge_ins += 1
        metrics = self.ctx.metrics
        metrics.barge_ins.inc()
        metrics.unheard_ms.observe(decision.generated_ms - decision.audio_end_ms)
        self.ctx.writer.command(
            "HINCRBY", self.ctx.keys.call(self.call_sid), CallField.BARGE_INS, 1
        )
        self.log.info(
            "caller barged in: cleared the reply and truncated item %s at %d ms (of %d ms "
            "generated)",
            decision.item_id,
            decision.audio_end_ms,
            decision.generated_ms,
        )

    async def _cancel_loop(self) -> None:
        """Cancel an interrupted reply the server has not cancelled within CANCEL_GRACE_S."""
        while True:
            await self._cancel_wanted.wait()
            self._cancel_wanted.clear()
            await asyncio.sleep(CANCEL_GRACE_S)
            target, self._cancel_target = self._cancel_target, None
            if target is not None and target == self.active_response:
                if await self._send(rt.response_cancel(self._next_event_id("cancel"), target)):
                    self.log.info("cancelled interrupted response %s", target)

    async def _on_response_created(self, event: rt.ResponseCreated, session: LiveSession) -> bool:
        self.idle.clear()
        if self.holder.is_current(session):
            self.active_response = event.response_id
        return False

    async def _on_response_done(self, event: rt.ResponseDone, session: LiveSession) -> bool:
        response = self.responses.pop(event.response_id, _Response())
        self.codec.drop_reply()  # cancelled before its audio was done: nothing to play
        closing = self.playback.close_response(event.response_id)
        if closing:
            self._publish_nowait(*(PlaybackMark(mark) for mark in closing))
        if self.active_response == event.response_id:
            self.active_response = None
            self._response_over.set()
        if not self.responses:
            self.idle.set()
        if event.status == "failed":
            code = event.error_code or "response_failed"
            self.ctx.metrics.realtime_errors.labels(rt.metric_code(code)).inc()
            self._count_error()
            self.log.warning(
                "response %s failed (%s): %s", event.response_id, code, event.error_message or ""
            )
        self._log_response(event, response)
        self._count_usage(event.token_usage)
        ending = self.ending  # a goodbye asked for before this response: this was it
        session.call_ids.update(call.call_id for call in event.function_calls)
        await self._answer_function_calls(event, response)
        if ending is not None:
            ending.goodbye_pending = False
            self._check_ending()
        else:
            await self._check_caps()
        return False

    def _log_response(self, event: rt.ResponseDone, response: _Response) -> None:
        text = "".join(response.transcript).strip()
        generated_ms = bytes_to_ms(response.audio_bytes)
        if response.heard_ms is not None:
            text = heard_text(text, response.heard_ms, generated_ms)
            if text:
                self.log.info(
                    "AI said (cut off after %d of %d ms): %s", response.heard_ms, generated_ms, text
                )
        elif text:
            self.log.info("AI said: %s", text)
        self._store(self.transcript.fill(response.item_id, "assistant", text, now_ms()))
        self.log.info(
            "response %s %s: %d bytes (%d ms) of audio sent toward Twilio",
            event.response_id,
            event.status + (f" ({event.reason})" if event.reason else ""),
            response.audio_bytes,
            generated_ms,
        )

    async def _on_rate_limits(self, event: rt.RateLimits, session: LiveSession) -> bool:
        for limit in event.limits:
            self.ctx.metrics.rate_limit_remaining.labels(limit.name).set(limit.remaining)
            low = limit.remaining < limit.limit * RATE_LIMIT_WARN_FRACTION
            if low and not self.rate_limit_warned:
                self.rate_limit_warned = True
                self.log.warning(
                    "OpenAI rate limit nearly reached: %d of %d %s remaining",
                    limit.remaining,
                    limit.limit,
                    limit.name,
                )
        return False

    def _count_usage(self, usage: rt.TokenUsage) -> None:
        """Add a response's tokens to the call (in memory, on the record) and to the metrics."""
        if usage.total == 0:
            return
        self.usage += usage
        record = self.ctx.keys.call(self.call_sid)
        for direction, modality, tokens in usage.items():
            if tokens:
                self.ctx.metrics.tokens.labels(direction, modality).inc(tokens)
                self.ctx.writer.command(
                    "HINCRBY", record, CallField.tokens(direction, modality), tokens
                )

    # --- function calls ---------------------------------------------------------------------

    async def _answer_function_calls(self, event: rt.ResponseDone, response: _Response) -> None:
        """Answer every function call of the response; ``end_call`` starts the goodbye."""
        for call in event.function_calls:
            if call.call_id in self._answered_calls:
                continue
            self._answered_calls.add(call.call_id)
            if call.name in self._tools:
                # The HTTP call runs beside the relays, never blocking audio.
                task = asyncio.create_task(self._call_tool(call), name=f"tool-{call.name}")
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
                continue
            if call.name == rt.END_CALL:
                output = '{"ok": true, "note": "The call ends after your goodbye."}'
            else:
                output = f'{{"error": "there is no function named {call.name[:64]}"}}'
            self.log.info("model called %s(%s)", call.name, call.arguments[:200])
            await self._send_function_output(self.holder.current, call, output)
            if call.name == rt.END_CALL:
                # A model that already said goodbye with the call is not asked to say it again.
                await self._begin_ending(EndReason.MODEL, goodbye=response.audio_bytes == 0)
            else:
                await self._send(rt.response_create(self._next_event_id("tool")))

    async def _send_function_output(
        self, session: LiveSession, call: rt.FunctionCall, output: str
    ) -> None:
        """``function_call_output`` on ``session``; a call it never saw (made in a session
        since replaced) is recreated there first, or the server would refuse the output
        (invalid_tool_call_id). Raises ConnectionClosed if the session is gone."""
        if call.call_id not in session.call_ids:
            item = rt.function_call_item(call.call_id, call.name, call.arguments)
            await session.send(rt.conversation_item_create(self._next_event_id("tool"), item))
            session.call_ids.add(call.call_id)
        item = rt.function_call_output_item(call.call_id, output)
        await session.send(rt.conversation_item_create(self._next_event_id("tool"), item))

    async def _call_tool(self, call: rt.FunctionCall) -> None:
        """Call a configured tool and give the model its answer (or what went wrong), then
        ask for a response. Supervised: a failure is logged, never the end of the call."""
        tool = self._tools[call.name]
        self.log.info("model called %s(%s)", call.name, call.arguments[:200])
        try:
            assert self.ctx.http is not None
            result = await run_tool(self.ctx.http, tool, self.call_sid, call.arguments)
            self.ctx.metrics.tool_calls.labels(tool.name, result.outcome).inc()
            if result.problem is not None:
                self.log.warning("tool %s failed: %s", tool.name, result.problem)
            await self._deliver_function_output(call, result.output)
            # One response at a time: a reply already under way finishes first.
            await self._response_ended(WRAP_UP_TIMEOUT_S)
            if self.ending is None and self.end_reason is None:
                await self.holder.send(rt.response_create(self._next_event_id("tool")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.warning("could not answer the call of tool %s: %r", tool.name, exc)

    async def _deliver_function_output(self, call: rt.FunctionCall, output: str) -> None:
        """The output on whichever session is current once it is ready, waiting through a
        switch (a rollover or a reconnect) if one is under way."""
        while True:
            async with self.holder.lock:
                session = self.holder.current
                try:
                    await self._send_function_output(session, call, output)
                    return
                except websockets.exceptions.ConnectionClosed:
                    pass
            await self.holder.replaced(session)

    # --- caps and the ending ------------------------------------------------------------------

    async def _check_caps(self) -> None:
        """Start the goodbye when a cap is reached, between responses (never cutting one)."""
        if self.ending is not None or self.active_response is not None:
            return
        settings = self.ctx.settings
        reason = cap_reached(
            (now_ms() - self.started_ms) / 1000,
            self.usage.total,
            max_duration_s=settings.max_call_duration_s,
            max_tokens=settings.max_tokens_per_call,
        )
        if reason is not None:
            await self._begin_ending(reason, goodbye=True)

    async def _begin_ending(self, reason: EndReason, *, goodbye: bool) -> None:
        if self.ending is not None:
            return
        self.ending = Ending(reason, self.clock() + WRAP_UP_TIMEOUT_S, goodbye)
        self.log.info("ending the call (%s) once the model's goodbye has been heard", reason)
        if goodbye:
            # A session that drops now gets its goodbye asked for again once replaced.
            await self._send(self._persona_response("goodbye", GOODBYE_CUES[reason]))
        self._check_ending()

    def _check_ending(self) -> None:
        """Hang up once the goodbye is over and every byte of it has been played."""
        ending = self.ending
        if ending is None or self.end_reason is not None:
            return
        now = self.clock()
        if ending.ready(
            response_active=self.active_response is not None,
            all_heard=self.playback.all_heard(),
            now=now,
        ):
            if now >= ending.deadline:
                self.log.warning("hanging up: the goodbye did not finish within the wrap-up time")
            else:
                self.log.info("the goodbye has been heard: hanging up")
            self._end(ending.reason, hang_up=True)
            self.stop_requested.set()

    # --- session events ---------------------------------------------------------------------

    async def _on_session(self, event: rt.SessionConfirmed, session: LiveSession) -> bool:
        try:
            check_formats(event, self.codec.wire_format)
        except FormatMismatchError as exc:
            self._fail("format_mismatch", str(exc))
            return True
        return False

    async def _on_error(self, event: rt.ErrorEvent, session: LiveSession) -> bool:
        if rt.is_fatal(event.code):
            self._fail(event.code, f"the Realtime server reported an error: {event.message}")
            return True
        self.ctx.metrics.realtime_errors.labels(rt.metric_code(event.code)).inc()
        self._count_error()
        if event.error_type == "server_error":
            # Retryable, says the server; the session usually goes on. If it closes, the
            # call gets a new one.
            session.server_error_seen = True
            self.log.warning("the Realtime server had an error (%s): %s", event.code, event.message)
            return False
        # Most errors concern one client event (a cancel racing the server's own, say) and
        # leave the session usable: the call goes on.
        self.log.warning(
            "the Realtime server refused event %s (%s): %s",
            event.event_id or "?",
            event.code,
            event.message,
        )
        return False

    def _count_error(self) -> None:
        self.ctx.writer.command("HINCRBY", self.ctx.keys.call(self.call_sid), CallField.ERRORS, 1)

    # --- turns ----------------------------------------------------------------------------------

    def _store(self, write: Write) -> None:
        """Keep the turns in Redis as the transcript says (pipelined, never waiting), for a
        worker that takes the call over and for the call record."""
        if write is None:
            return
        keys, sid, writer = self.ctx.keys, self.call_sid, self.ctx.writer
        if isinstance(write, Append):
            commands = turn_commands(keys, sid, write.turn)
        else:
            assert isinstance(write, Rewrite)
            commands = turns_rewrite_commands(keys, sid, write.turns)
        for command in commands:
            writer.command(*command)

    def _amend_spoken_turn(self, decision: BargeIn) -> None:
        """A reply interrupted after it was complete (and stored in full): keep only what the
        caller heard of it, in memory and in Redis."""
        text = self.transcript.text_of(decision.item_id)
        if text is None:
            return
        cut = heard_text(text, decision.audio_end_ms, decision.generated_ms)
        self._store(self.transcript.amend(decision.item_id, cut))
        self.log.info("AI was cut off after %d ms; it said: %s", decision.audio_end_ms, cut)

    def _close_open_responses(self) -> None:
        """Responses a replaced session left unfinished: keep what they said."""
        for response in self.responses.values():
            text = "".join(response.transcript).strip()
            self._store(self.transcript.fill(response.item_id, "assistant", text, now_ms()))
        self.responses.clear()

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
            if self.paused or not self.ctx.reader.healthy:
                # Our own back-pressure, or Redis being down, is not silence from the edge;
                # nor can a StreamStarted arrive while Redis is down.
                self.last_inbound = now
                if not self.stream_seen:
                    self.claimed_at += WATCHDOG_INTERVAL_S
            if self.stream_seen and now - self.last_inbound > settings.edge_grace_s:
                self._fail(
                    "edge_lost",
                    f"nothing arrived from the edge for {settings.edge_grace_s:.0f}s (no "
                    "media, no stop): the edge is gone and Twilio did not come back",
                )
                return
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
            if self.stream_seen:
                await self._check_caps()
            self._check_ending()

    # --- session rollover ---------------------------------------------------------------------

    async def _rollover_loop(self) -> None:
        """After SESSION_MAX, move to a fresh session at the next pause (or, if none comes
        within a while, anyway: the server's own cap would cut the call)."""
        limit = self.ctx.settings.session_max_s
        force_after = min(ROLLOVER_FORCE_MAX_S, limit * ROLLOVER_FORCE_FRACTION)
        while True:
            due = self.session_started + limit
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            forced = False
            try:
                async with asyncio.timeout(force_after):
                    await self.idle.wait()
            except TimeoutError:
                forced = True
            if not await self._roll_over(forced):
                await asyncio.sleep(ROLLOVER_RETRY_S)

    async def _roll_over(self, forced: bool) -> bool:
        """Switch the call to a new session; False (and the call keeps the old one) if the
        new one cannot be opened."""
        age = time.monotonic() - self.session_started
        try:
            old, seeded = await self._switch_session()
        except Exception as exc:
            self.log.warning(
                "could not open a new Realtime session for the rollover (%r); keeping the "
                "current one, retrying in %.0fs",
                exc,
                ROLLOVER_RETRY_S,
            )
            return False
        self.ctx.metrics.rollovers.inc()
        self.log.info(
            "rolled the call over to a new Realtime session after %.0f s (seeded %d turns)%s",
            age,
            seeded,
            " without waiting any longer for a pause" if forced else "",
        )
        try:
            await asyncio.sleep(ROLLOVER_DRAIN_S)
        finally:
            await old.ws.close()
            await self._session_switched()
        return True

    async def _cleanup(self) -> None:
        ctx, keys, sid = self.ctx, self.ctx.keys, self.call_sid
        writer = ctx.writer
        ctx.reader.unsubscribe(self.inbound_key)
        for task in self._tool_tasks:
            task.cancel()
        if self.holder.opened:
            await self.holder.current.ws.close()
        reason = self.end_reason or "ended"
        record = keys.call(sid)
        if not self.lease_lost and await self._lease_taken_by_another():
            # This process was paused (SIGSTOP, a long GC, a frozen VM) past its lease: another
            # worker serves the call now, and must not be hung up on by what this one saw.
            self.lease_lost = True
            self.log.warning("another worker holds the call now: leaving it without a word")
        if not self.lease_lost:
            writer.command("HSET", record, CallField.IN_CURSOR, self.in_cursor)
        if self.hang_up and not self.lease_lost:
            # The record says "ended" before the edge sees Hangup, so that Twilio's <Redirect>
            # after the close finds an ended call and hangs up.
            fields: list[object] = [CallField.STATE, CallState.ENDED, CallField.ENDED_MS, now_ms()]
            fields += [CallField.END_REASON, reason, CallField.ERROR, self.error or ""]
            writer.command("HSET", record, *fields)
            self._publish_nowait(Hangup(reason))
            if not self.stream_seen:
                for key in (self.inbound_key, self.outbound_key):
                    writer.command("EXPIRE", key, ENDED_STREAM_TTL_S)
        if (self.hang_up or self.caller_ended) and not self.lease_lost:
            for command in self._summary_commands(reason):
                writer.command(*command)
        if not self.lease_lost:
            try:
                await asyncio.wait_for(writer.flush(), CLEANUP_TIMEOUT_S)
                await release_lease(ctx.redis, self.lease_key, ctx.worker_id)
            except Exception as exc:  # the lease lapses by itself within its TTL
                self.log.warning("could not release the lease: %s", exc)
            else:
                if self.handoff:
                    await self._dispatch_again()
        ctx.metrics.calls.labels(reason).inc()
        self.log.info(
            "call left this worker (%s): %d bytes of caller audio sent to the model, %d bytes "
            "(%.1f s) of model audio published for the caller",
            reason,
            self.bytes_to_model,
            self.bytes_from_model,
            self.bytes_from_model / 8000,
        )

    async def _lease_taken_by_another(self) -> bool:
        try:
            owner = await self.ctx.redis.get(self.lease_key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return False  # cannot tell; the heartbeat settles it within the lease TTL
        if owner is None:
            return False
        return (owner.decode() if isinstance(owner, bytes) else owner) != self.ctx.worker_id

    def _summary_commands(self, reason: str) -> list[tuple[object, ...]]:
        """The end-of-call summary on the record; record and turns kept CALL_RECORD_RETENTION."""
        record = self.ctx.keys.call(self.call_sid)
        if self.caller_ended:
            ended_by = "caller" if reason == "caller_hangup" else "edge"
        else:
            ended_by = ENDED_BY.get(reason, "error")
        summary: dict[CallField, object] = {
            CallField.ENDED_BY: ended_by,
            CallField.DURATION_MS: max(0, now_ms() - self.started_ms),
        }
        # Counters nobody incremented still appear, as 0.
        counters = [CallField.BARGE_INS, CallField.ERRORS, CallField.RECONNECTS]
        counters += [CallField.tokens(d, m) for d, m, _ in rt.TokenUsage().items()]
        commands: list[tuple[object, ...]] = [("HINCRBY", record, f, 0) for f in counters]
        retention = self.ctx.settings.call_record_retention_s
        commands += end_of_call_commands(self.ctx.keys, self.call_sid, summary, retention)
        self.log.info(
            "call summary: ended by %s (%s) after %.1f s, %d barge-ins, %d tokens",
            ended_by,
            reason,
            summary[CallField.DURATION_MS] / 1000,  # type: ignore[operator]
            self.barge_ins,
            self.usage.total,
        )
        return commands

    async def _dispatch_again(self) -> None:
        """Put the call back in line, after the lease is released (so the next worker can
        take it) and the inbound cursor saved (so it resumes where this one stopped)."""
        writer = self.ctx.writer
        dispatch = CallDispatch(self.call_sid, "handoff", time.time())
        writer.xadd_nowait(self.ctx.keys.dispatch, dispatch, DISPATCH_MAXLEN)
        try:
            await asyncio.wait_for(writer.flush(), CLEANUP_TIMEOUT_S)
        except TimeoutError:
            self.log.warning("could not hand the call off yet: Redis is not taking writes")
            return
        self.ctx.metrics.handoffs.inc()
        self.log.info("handed the call off: lease released, call back on the dispatch stream")
