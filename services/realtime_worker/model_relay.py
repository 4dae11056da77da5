"""Model → caller, for one call: the events of its Realtime sessions, and what the worker says
back to the model.

Audio deltas are decoded once and published to the call's outbound stream with the marks that
tell when the caller heard them; transcripts become turns; ``response.done`` settles a
response (its turn, its tokens, its function calls, the ending). When the caller starts
speaking over a reply, the reply is cleared at the caller's end and truncated to what was
heard. Errors no new session would cure end the call; others are counted and the call goes on.
Events are handled with the session they came from; what is sent goes to the current session
without waiting for the send lock, so this relay never stalls behind a session switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import websockets.exceptions

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_io import CallIO
from services.realtime_worker.conversation import Conversation, Finished
from services.realtime_worker.function_calls import FunctionCalls
from services.realtime_worker.live_session import LiveSession, SessionHolder
from services.realtime_worker.reconnect import CloseInfo
from services.realtime_worker.session_setup import check_formats
from services.realtime_worker.transcode import CallTranscoder, PassThrough
from services.realtime_worker.transcript import Append, Write
from services.realtime_worker.turn_state import BargeIn, EndReason, cap_reached, decide_barge_in
from shared.audio import bytes_to_ms
from shared.errors import FormatMismatchError, RealtimeProtocolError
from shared.keys import CallField
from shared.messages import AudioDone, ClearPlayback, OutboundAudio, PlaybackMark
from shared.records import turn_commands, turns_rewrite_commands

__all__ = ["GOODBYE_CUES", "ModelRelay"]

RATE_LIMIT_WARN_FRACTION = 0.1  # warn (once per call) when a limit's remaining falls below this
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

Handler = Callable[[Any, LiveSession], Coroutine[Any, Any, bool]]


class ModelRelay:
    def __init__(
        self,
        call: CallIO,
        holder: SessionHolder,
        conversation: Conversation,
        codec: PassThrough | CallTranscoder,
        functions: FunctionCalls,
        started_ms: int,
    ) -> None:
        self._call = call
        self._holder = holder
        self.conversation = conversation
        self._codec = codec
        self._functions = functions
        self._started_ms = started_ms  # the call's start: the duration cap counts from it
        settings = call.settings
        # MAX_AUDIO_DELTA_BYTES counts μ-law bytes, that is duration, whatever the model speaks.
        self._max_delta_bytes = settings.max_audio_delta_bytes * codec.bytes_per_ulaw_byte
        self.bytes_from_model = 0
        self.idle = asyncio.Event()  # no response in progress and no caller speech since
        self._unconfirmed_warned = False
        self._rate_limit_warned = False
        self._cancel_target: str | None = None
        self._cancel_wanted = asyncio.Event()
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

    async def relay(self, session: LiveSession) -> CloseInfo | None:
        """Handle one session's events until it closes (how: the return value) or a handler
        ends the call (None)."""
        handlers = self._handlers
        try:
            async for frame in session.ws:
                try:
                    event = rt.parse_server_event(frame)
                except RealtimeProtocolError as exc:
                    self._call.fault(exc.kind, f"from the Realtime server: {exc}")
                    continue
                handler = handlers.get(type(event))
                if handler is not None and await handler(event, session):
                    return None
        except websockets.exceptions.ConnectionClosed as exc:
            return CloseInfo.of(session.ws, exc, session.server_error_seen)
        return CloseInfo.of(session.ws, None, session.server_error_seen)

    async def send(self, event: str) -> bool:
        """Send a client event on the current session now; False when it has just dropped
        (the relay notices and replaces it)."""
        try:
            await self._holder.current.send(event)
        except websockets.exceptions.ConnectionClosed:
            return False
        return True

    def store(self, write: Write) -> None:
        """Keep the turns in Redis as the transcript says, for a worker that takes the call
        over and for the call record."""
        if write is None:
            return
        io = self._call
        keys = io.ctx.keys
        if isinstance(write, Append):
            io.write(turn_commands(keys, io.call_sid, write.turn))
        else:
            io.write(turns_rewrite_commands(keys, io.call_sid, write.turns))

    # --- audio --------------------------------------------------------------------------------

    async def _on_audio_delta(self, event: rt.OutputAudioDelta, session: LiveSession) -> bool:
        audio = event.audio
        if self.conversation.playback.interrupted(event.item_id):
            # Already on the wire when the caller barged in: never after the clear.
            self._call.metrics.late_audio_dropped_bytes.inc(len(audio))
            return False
        if len(audio) > self._max_delta_bytes:
            # Real deltas hold a fraction of a second; this one would flood the caller's queue.
            duration = len(audio) // self._codec.bytes_per_ulaw_byte  # in μ-law bytes
            self._call.fault(
                "delta_too_large",
                f"audio delta of {duration} μ-law bytes ({bytes_to_ms(duration)} ms) is over "
                f"MAX_AUDIO_DELTA_BYTES={self._call.settings.max_audio_delta_bytes}",
            )
            return False
        session.items.add(event.item_id)
        await self._publish_audio(event.item_id, event.response_id, self._codec.to_caller(audio))
        return False

    async def _publish_audio(self, item_id: str, response_id: str, audio: bytes) -> None:
        """μ-law for the caller, with the mark that tells when it was heard."""
        if not audio:
            return  # the codec holds it back for now
        io = self._call
        if io.lease_lost or not io.ctx.lease_clock.valid(io.slot_group):
            # Paused past the lease, or told the lease is gone: another worker may be speaking
            # on this call already, and this session's last audio must not reach the caller.
            if not self._unconfirmed_warned:
                self._unconfirmed_warned = True
                io.log.warning("dropping model audio until this worker's lease is confirmed")
            return
        mark = self.conversation.audio_published(
            item_id, response_id, len(audio), io.clock.monotonic()
        )
        outbound = OutboundAudio(audio, item_id, io.clock.wall())
        await io.publish(*((outbound, PlaybackMark(mark)) if mark else (outbound,)))
        self.bytes_from_model += len(audio)
        io.metrics.audio_out_bytes.inc(len(audio))
        if io.log.debug_enabled:
            io.log.debug("model audio: %d bytes for item %s", len(audio), item_id)

    async def _on_audio_done(self, event: rt.OutputAudioDone, session: LiveSession) -> bool:
        playback = self.conversation.playback
        if playback.interrupted(event.item_id):
            return False
        await self._publish_audio(event.item_id, event.response_id, self._codec.finish_reply())
        # The ending waits for the echo of the item's last mark to know it was heard to the end.
        mark = playback.close_item(event.item_id)
        closing = [PlaybackMark(mark)] if mark else []
        self._call.publish_nowait(*closing, AudioDone(event.item_id))
        return False

    # --- transcripts and turns ----------------------------------------------------------------

    async def _on_transcript_delta(self, event: rt.TranscriptDelta, session: LiveSession) -> bool:
        self.conversation.reply(event.response_id).transcript.append(event.delta)
        return False

    async def _on_transcript_done(self, event: rt.TranscriptDone, session: LiveSession) -> bool:
        reply = self.conversation.reply(event.response_id)
        reply.item_id = event.item_id
        reply.transcript[:] = [event.transcript]
        return False

    async def _on_output_item_added(self, event: rt.OutputItemAdded, session: LiveSession) -> bool:
        if event.item_type == "message":
            # The reply's place in the conversation: its text comes with response.done.
            self.conversation.reply(event.response_id).item_id = event.item_id
            self.conversation.transcript.assistant_started(
                event.item_id, self._call.clock.wall_ms()
            )
        return False

    async def _on_input_committed(self, event: rt.InputCommitted, session: LiveSession) -> bool:
        if self._call.settings.transcription_model:
            # The caller's turn takes its place now; its words may come after the reply.
            transcript = self.conversation.transcript
            transcript.user_spoke(event.item_id, event.previous_item_id, self._call.clock.wall_ms())
        return False

    async def _on_input_transcript(self, event: rt.InputTranscript, session: LiveSession) -> bool:
        self._call.log.info("caller said: %s", event.transcript)
        text = event.transcript.strip()
        now_ms = self._call.clock.wall_ms()
        self.store(self.conversation.transcript.fill(event.item_id, "user", text, now_ms))
        return False

    async def _on_transcript_failed(
        self, event: rt.InputTranscriptFailed, session: LiveSession
    ) -> bool:
        io = self._call
        io.metrics.realtime_errors.labels(rt.metric_code(event.code)).inc()
        io.log.warning(
            "the caller's words could not be transcribed (%s): %s", event.code, event.message
        )
        self.store(self.conversation.transcript.transcription_failed(event.item_id))
        return False

    # --- barge-in -----------------------------------------------------------------------------

    async def _on_speech_started(self, event: rt.SpeechStarted, session: LiveSession) -> bool:
        io = self._call
        heard_at = io.clock.monotonic()
        self.idle.clear()
        settings = io.settings
        decision = decide_barge_in(
            self.conversation.playback.current,
            io.clock.monotonic(),
            enabled=settings.barge_in and self.conversation.ending is None,
            min_heard_ms=settings.barge_in_min_heard_ms,
        )
        if decision is None:
            return False
        await self.barge_in(decision, speech_at=heard_at)
        if self.conversation.active_response == decision.response_id:
            # With interrupt_response the server cancels the reply itself; the cancel loop
            # makes sure it did.
            self._cancel_target = decision.response_id
            self._cancel_wanted.set()
        return False

    async def barge_in(self, decision: BargeIn, *, speech_at: float | None = None) -> None:
        """Stop the reply at the caller's end and make the model forget what was not heard.
        ``speech_at``: when the caller's speech_started was handled (VAD barge-ins)."""
        io = self._call
        self.store(self.conversation.barge_in(decision))  # before any await: late audio drops
        self._codec.drop_reply()
        io.publish_nowait(ClearPlayback(decision.item_id))
        if speech_at is not None:
            io.metrics.speech_to_clear.observe(io.clock.monotonic() - speech_at)
        # Only the session that produced the item knows it; a reply of a session since
        # replaced is cut at the caller's end and in its turn, and that is all.
        if decision.item_id in self._holder.current.items:
            event_id = io.next_event_id("truncate")
            await self.send(rt.truncate(event_id, decision.item_id, decision.audio_end_ms))
        io.metrics.barge_ins.inc()
        io.metrics.unheard_ms.observe(decision.generated_ms - decision.audio_end_ms)
        io.count(CallField.BARGE_INS)
        io.log.info(
            "caller barged in: cleared the reply and truncated item %s at %d ms (of %d ms "
            "generated)",
            decision.item_id,
            decision.audio_end_ms,
            decision.generated_ms,
        )

    async def cancel_loop(self) -> None:
        """Cancel an interrupted reply the server has not cancelled within the grace."""
        io = self._call
        while True:
            await self._cancel_wanted.wait()
            self._cancel_wanted.clear()
            await asyncio.sleep(io.timing.cancel_grace_s)
            target, self._cancel_target = self._cancel_target, None
            if target is not None and target == self.conversation.active_response:
                if await self.send(rt.response_cancel(io.next_event_id("cancel"), target)):
                    io.log.info("cancelled interrupted response %s", target)

    # --- responses ----------------------------------------------------------------------------

    async def _on_response_created(self, event: rt.ResponseCreated, session: LiveSession) -> bool:
        self.idle.clear()
        if self._holder.is_current(session):
            self.conversation.created(event.response_id)
        return False

    async def _on_response_done(self, event: rt.ResponseDone, session: LiveSession) -> bool:
        io = self._call
        self._codec.drop_reply()  # cancelled before its audio was done: nothing to play
        finished = self.conversation.done(event, io.clock.wall_ms())
        if finished.marks:
            io.publish_nowait(*(PlaybackMark(mark) for mark in finished.marks))
        if self.conversation.active_response is None:
            io.response_over.set()
        if not self.conversation.replies:
            self.idle.set()
        if event.status == "failed":
            code = event.error_code or "response_failed"
            io.metrics.realtime_errors.labels(rt.metric_code(code)).inc()
            io.count(CallField.ERRORS)
            io.log.warning(
                "response %s failed (%s): %s", event.response_id, code, event.error_message or ""
            )
        self._log_response(event, finished)
        self.store(finished.turn)
        self._count_usage(event.token_usage)
        session.call_ids.update(call.call_id for call in event.function_calls)
        last_words = await self._functions.answer(finished.calls)
        if last_words is not None:
            # A model that already said goodbye with the call is not asked to say it again.
            goodbye = finished.reply.audio_bytes == 0
            await self.begin_ending(last_words.reason, goodbye=goodbye, cue=last_words.cue)
        if finished.while_ending:
            self.conversation.goodbye_heard()
            self.check_ending()
        else:
            await self.check_caps()
        return False

    def _log_response(self, event: rt.ResponseDone, finished: Finished) -> None:
        log = self._call.log
        text, heard_ms, generated_ms = finished.text, finished.reply.heard_ms, finished.generated_ms
        if heard_ms is not None:
            if text:
                log.info("AI said (cut off after %d of %d ms): %s", heard_ms, generated_ms, text)
        elif text:
            log.info("AI said: %s", text)
        log.info(
            "response %s %s: %d bytes (%d ms) of audio sent toward Twilio",
            event.response_id,
            event.status + (f" ({event.reason})" if event.reason else ""),
            finished.reply.audio_bytes,
            generated_ms,
        )

    def _count_usage(self, usage: rt.TokenUsage) -> None:
        """Count a response's tokens on the record and in the metrics."""
        if usage.total == 0:
            return
        io = self._call
        for direction, modality, tokens in usage.items():
            if tokens:
                io.metrics.tokens.labels(direction, modality).inc(tokens)
                io.count(CallField.tokens(direction, modality), tokens)

    # --- the ending ---------------------------------------------------------------------------

    def persona_response(self, kind: str, cue: str) -> str:
        """``response.create`` for a cue, under the session's own instructions too: the
        override replaces them for the response (docs/protocols.md §3.4)."""
        instructions = rt.response_instructions(self._call.profile.instructions, cue)
        return rt.response_create(self._call.next_event_id(kind), instructions)

    async def begin_ending(
        self, reason: EndReason, *, goodbye: bool, cue: str | None = None
    ) -> bool:
        """Start ending the call once the goodbye (asked for with ``cue``, by default the
        reason's) has been heard; False when it is ending already."""
        io = self._call
        deadline = io.clock.monotonic() + io.timing.wrap_up_timeout_s
        cue = cue or GOODBYE_CUES[reason]
        if not self.conversation.begin_ending(reason, deadline, goodbye=goodbye, cue=cue):
            return False
        io.log.info("ending the call (%s) once the model's last words have been heard", reason)
        if goodbye:
            # A session that drops now gets its goodbye asked for again once replaced.
            await self.send(self.persona_response("goodbye", cue))
        self.check_ending()
        return True

    def check_ending(self) -> None:
        """Hang up once the goodbye is over and every byte of it has been played."""
        io = self._call
        ending = self.conversation.ending
        if ending is None or io.end_reason is not None:
            return
        now = io.clock.monotonic()
        if self.conversation.ready_to_hang_up(now):
            if now >= ending.deadline:
                io.log.warning("hanging up: the goodbye did not finish within the wrap-up time")
            else:
                io.log.info("the goodbye has been heard: hanging up")
            io.end(ending.reason, hang_up=True)

    async def check_caps(self) -> None:
        """Start the goodbye when a cap is reached, between responses (never cutting one)."""
        conversation = self.conversation
        if conversation.ending is not None or conversation.active_response is not None:
            return
        profile = self._call.profile
        reason = cap_reached(
            (self._call.clock.wall_ms() - self._started_ms) / 1000,
            conversation.usage.total,
            max_duration_s=profile.max_call_duration_s,
            max_tokens=profile.max_tokens_per_call,
        )
        if reason is not None:
            await self.begin_ending(reason, goodbye=True)

    async def session_replaced(self) -> None:
        """The current session is a new one: settle what the old one left unfinished, and
        ask the new one for a goodbye the old one never said."""
        io = self._call
        for write in self.conversation.session_replaced(io.clock.wall_ms()):
            self.store(write)
        io.response_over.set()
        self._codec.drop_reply()
        ending = self.conversation.ending
        if ending is not None and ending.goodbye_pending and io.end_reason is None:
            await self.send(self.persona_response("goodbye", ending.cue))

    # --- session events -----------------------------------------------------------------------

    async def _on_session(self, event: rt.SessionConfirmed, session: LiveSession) -> bool:
        try:
            check_formats(event, self._codec.wire_format)
        except FormatMismatchError as exc:
            self._call.fail("format_mismatch", str(exc))
            return True
        return False

    async def _on_rate_limits(self, event: rt.RateLimits, session: LiveSession) -> bool:
        io = self._call
        for limit in event.limits:
            io.metrics.rate_limit_remaining.labels(limit.name).set(limit.remaining)
            low = limit.remaining < limit.limit * RATE_LIMIT_WARN_FRACTION
            if low and not self._rate_limit_warned:
                self._rate_limit_warned = True
                io.log.warning(
                    "OpenAI rate limit nearly reached: %d of %d %s remaining",
                    limit.remaining,
                    limit.limit,
                    limit.name,
                )
        return False

    async def _on_error(self, event: rt.ErrorEvent, session: LiveSession) -> bool:
        io = self._call
        if rt.is_fatal(event.code):
            io.fail(event.code, f"the Realtime server reported an error: {event.message}")
            return True
        io.metrics.realtime_errors.labels(rt.metric_code(event.code)).inc()
        io.count(CallField.ERRORS)
        if event.error_type == "server_error":
            # Retryable, says the server; the session usually goes on. If it closes, the
            # call gets a new one.
            session.server_error_seen = True
            io.log.warning("the Realtime server had an error (%s): %s", event.code, event.message)
            return False
        # Most errors concern one client event (a cancel racing the server's own, say) and
        # leave the session usable: the call goes on.
        io.log.warning(
            "the Realtime server refused event %s (%s): %s",
            event.event_id or "?",
            event.code,
            event.message,
        )
        return False
