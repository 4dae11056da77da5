"""Caller → model, for one call: the call's inbound stream, relayed to its current session.

Caller audio goes to ``input_audio_buffer.append``, base64-encoded once; it waits (in the
bounded inbox, then in Redis) while a session switch is under way. Audio that waited for a new
session — a takeover from a dead worker, or a reconnect — is sent only if recent
(TAKEOVER_BACKLOG_MS): the model should answer what the caller says now, not a stale monologue.
The inbound stream also says when the Twilio stream reaches an edge or leaves it, which marks
Twilio has played (what the caller heard), which keys were pressed, when the caller hangs
up, and, for an outbound call with machine detection, who answered: until then
(``awaiting_answer``) the caller's audio is held back from the model (``answering.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_io import CallIO
from services.realtime_worker.conversation import Conversation
from services.realtime_worker.live_session import SessionHolder
from services.realtime_worker.model_relay import ModelRelay
from services.realtime_worker.transcode import CallTranscoder, PassThrough
from services.realtime_worker.turn_state import decide_barge_in
from shared.audio import bytes_to_ms
from shared.inbox import Inbox
from shared.messages import (
    CallAnswered,
    CallStopped,
    DtmfPressed,
    InboundAudio,
    InboundMessage,
    MarkPlayed,
    StreamDetached,
    StreamStarted,
)
from shared.metrics import HOP_EDGE_TO_WORKER

__all__ = ["DTMF_DIGITS", "CallerRelay"]

DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass
class _Backlog:
    """Caller audio that waited while no session could take it (a takeover, a reconnect):
    frames older than ``max_age_s`` are skipped (the caller has moved on), younger ones sent."""

    last_id: tuple[int, int]  # the last inbound entry when the wait ended
    max_age_s: float
    why: str  # "took over the call from its previous worker", "reconnected"
    seeded: int = 0
    skipped_bytes: int = 0
    sent_bytes: int = 0


def stream_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a comparable pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class CallerRelay:
    def __init__(
        self,
        call: CallIO,
        holder: SessionHolder,
        conversation: Conversation,
        codec: PassThrough | CallTranscoder,
        model: ModelRelay,
        in_cursor: str,
        *,
        stream_seen: bool,
        awaiting_answer: bool = False,
    ) -> None:
        self._call = call
        self._holder = holder
        self._conversation = conversation
        self._codec = codec
        self._model = model
        self.in_cursor = in_cursor  # the last inbound entry handled
        self.saved_in_cursor = in_cursor  # as the record has it (heartbeat saves it)
        self.inbox: Inbox[InboundMessage] = Inbox(
            call.ctx.reader,
            call.inbound_key,
            (
                StreamStarted,
                StreamDetached,
                InboundAudio,
                MarkPlayed,
                DtmfPressed,
                CallStopped,
                CallAnswered,
            ),
            lambda detail: call.fault("bad_redis_message", f"inbound {detail}"),
        )
        self.inbox.on_delivery = self._heard_from_edge
        # A taken-over call's stream is attached already: its StreamStarted will not come again.
        self.stream_seen = stream_seen
        self.stream_started_at: float | None = None  # when this worker first saw the stream
        # Machine detection is on and Twilio has not said who answered (on_answered acts on
        # the verdict). Until a person is known to be there, the model hears nothing: neither
        # the caller's audio nor key presses.
        self.awaiting_answer = awaiting_answer
        self.model_hears = not awaiting_answer
        self.on_answered: Callable[[CallAnswered], Awaitable[None]] | None = None
        self.last_inbound = call.clock.monotonic()
        self.detached_since: float | None = None
        self.caller_ended = False  # the edge reported the end of the call (CallStopped)
        self.bytes_to_model = 0
        self._backlog: _Backlog | None = None
        self._relay_latency = call.metrics.relay_latency.labels(HOP_EDGE_TO_WORKER)

    def _heard_from_edge(self) -> None:
        self.last_inbound = self._call.clock.monotonic()

    # --- waiting audio ------------------------------------------------------------------------

    async def start_backlog(self, why: str, seeded: int = 0) -> None:
        """Caller audio that waited up to now is sent only if recent (TAKEOVER_BACKLOG_MS)."""
        io = self._call
        try:
            last: Any = await io.ctx.redis.xrevrange(io.inbound_key, count=1)
        except Exception as exc:
            io.log.warning("could not read where the caller's waiting audio ends: %s", exc)
            last = []
        last_id = stream_id(last[0][0]) if last else (0, 0)
        max_age_s = io.settings.takeover_backlog_ms / 1000
        self._backlog = _Backlog(last_id, max_age_s, why, seeded)
        if stream_id(self.in_cursor) >= last_id:
            self._backlog_done()

    def _backlog_keeps(self, message: InboundAudio) -> bool:
        backlog = self._backlog
        assert backlog is not None
        size = len(message.audio)
        if self._call.clock.wall() - message.sent_at > backlog.max_age_s:
            backlog.skipped_bytes += size
            self._call.metrics.stale_audio_skipped_bytes.inc(size)
            return False
        backlog.sent_bytes += size
        return True

    def _backlog_done(self) -> None:
        backlog, self._backlog = self._backlog, None
        if backlog is None:
            return
        self._call.log.info(
            "%s: seeded %d turns, skipped %d ms of stale caller audio, sending %d ms",
            backlog.why,
            backlog.seeded,
            bytes_to_ms(backlog.skipped_bytes),
            bytes_to_ms(backlog.sent_bytes),
        )

    # --- the relay ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Relay until the caller hangs up (CallStopped); the call's end cancels it otherwise."""
        io = self._call
        while True:
            entry_id, message = await self.inbox.get()
            if type(message) is InboundAudio:
                if self.model_hears and (self._backlog is None or self._backlog_keeps(message)):
                    await self._send_audio(message.audio)
                    self._relay_latency.observe(max(0.0, io.clock.wall() - message.sent_at))
            elif isinstance(message, StreamStarted):
                self._on_stream_started(message)
            elif isinstance(message, StreamDetached):
                self.detached_since = io.clock.monotonic()
                io.log.warning(
                    "stream left edge %s without a stop; waiting up to %.0fs for it to return",
                    message.edge_id,
                    io.settings.edge_grace_s,
                )
            elif isinstance(message, MarkPlayed):
                # Marks of items this worker never published (a takeover) are ignored.
                now = io.clock.monotonic()
                if self._conversation.playback.mark_played(message.name, now) is not None:
                    self._model.check_ending()
            elif isinstance(message, DtmfPressed):
                if self.model_hears:
                    await self._on_dtmf(message.digit)
            elif isinstance(message, CallAnswered):
                if self.awaiting_answer and self.on_answered is not None:
                    self.awaiting_answer = False
                    await self.on_answered(message)
            elif isinstance(message, CallStopped):
                self.in_cursor = entry_id.decode()
                self.caller_ended = True
                io.end(message.reason)
                return
            self.in_cursor = entry_id.decode()
            if self._backlog is not None and stream_id(entry_id) >= self._backlog.last_id:
                self._backlog_done()

    async def _send_audio(self, audio: bytes) -> None:
        payload = self._codec.to_model(audio)
        # Waits while a rollover or a reconnect switches sessions: the caller's audio waits in
        # the (bounded) inbox and in Redis meanwhile, and goes to the new session.
        if payload:
            await self._holder.send(rt.audio_append(payload))
        self.bytes_to_model += len(audio)
        self._call.metrics.audio_in_bytes.inc(len(audio))

    def _on_stream_started(self, message: StreamStarted) -> None:
        if self.detached_since is not None or self.stream_seen:
            # With or without a StreamDetached first: an edge that was killed writes none.
            self._call.log.info("stream is back, on edge %s", message.edge_id)
        self.stream_seen = True
        if self.stream_started_at is None:
            self.stream_started_at = self._call.clock.monotonic()
        self.detached_since = None
        self._conversation.playback.stream_ready(self._call.clock.monotonic())

    async def _on_dtmf(self, digit: str) -> None:
        """A key press is the caller's turn: it interrupts a playing reply, reaches the model
        as a user message, and prompts a response — once the interrupted response is over
        (a response.create while one is active would be refused)."""
        io = self._call
        io.log.info("caller pressed %s", digit)
        settings = io.settings
        conversation = self._conversation
        if not settings.dtmf or conversation.ending is not None:
            return
        if digit not in DTMF_DIGITS:
            io.fault("bad_dtmf", f"DTMF digit {digit[:8]!r}")
            return
        decision = decide_barge_in(
            conversation.playback.current,
            io.clock.monotonic(),
            enabled=settings.barge_in,
            min_heard_ms=0,
        )
        if decision is not None:
            await self._model.barge_in(decision)
        active = conversation.active_response
        if active is not None:
            # No VAD cancels for a key press: the reply being generated gives way to it.
            await self._holder.send(rt.response_cancel(io.next_event_id("cancel"), active))
            if not await io.response_ended(conversation, io.timing.cancel_wait_s):
                io.log.warning(
                    "response %s was not over %.0fs after its cancel",
                    active,
                    io.timing.cancel_wait_s,
                )
        text = f"The caller pressed {digit} on the keypad."
        await self._holder.send(
            rt.conversation_item_create(io.next_event_id("dtmf"), rt.user_text_item(text)),
            rt.response_create(io.next_event_id("dtmf")),
        )
        io.metrics.dtmf_digits.inc()
