"""One call on a worker, for as long as the worker holds it: its parts, its tasks, its end.

The parts, each in its own module, share one ``CallIO`` (the call's identity, outcome and
writes), one ``Conversation`` (sans-I/O state that outlives every session) and one
``SessionHolder`` (the current Realtime session and its send lock):

- ``SessionSwitcher`` opens the first session, relays the current one's events through the
  ``ModelRelay`` (model → caller), replaces a session that drops, and rolls over after
  SESSION_MAX;
- ``CallerRelay`` relays the call's inbound stream (caller → model, stream state, marks, keys);
- ``FunctionCalls`` answers the model's calls (``end_call``, TOOLS_FILE's tools);
- here: the task group, the watchdog (the stream must reach an edge and stay; the caps) and the
  clean-up that records how the call left this worker.

One task group per call: the first task to return ends the call's session on this worker, and
the others are cancelled. A taken-over call (its stream is attached already) seeds its first
session with the stored turns and skips caller audio older than TAKEOVER_BACKLOG_MS. A call
back from a transfer that did not go through is seeded the same way (its turns end with a note
saying why) and the model is asked to tell the caller.

The call's profile (its agent, and the set-up hook's overrides) is settled while its first
session opens: the hook is asked at the same time as the socket connects, and the session is
configured once it has answered or its time is up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.answering import (
    VERDICT_WAIT_S,
    AnswerAction,
    answer_action,
    voicemail_cue,
)
from services.realtime_worker.call_io import CallIO
from services.realtime_worker.call_profile import CallParty, SetupOverrides, call_profile
from services.realtime_worker.call_setup import (
    decode_overrides,
    encode_overrides,
    run_setup_hook,
)
from services.realtime_worker.caller_relay import CallerRelay
from services.realtime_worker.context import WorkerContext
from services.realtime_worker.conversation import Conversation
from services.realtime_worker.function_calls import FunctionCalls
from services.realtime_worker.live_session import SessionHolder
from services.realtime_worker.model_relay import ModelRelay
from services.realtime_worker.session_switch import SessionSwitcher, failure_of
from services.realtime_worker.transcode import CallTranscoder, call_codec
from services.realtime_worker.transcript import Transcript
from services.realtime_worker.transfer_tool import RETURN_CUE
from services.realtime_worker.turn_state import EndReason
from shared.agents import DEFAULT_AGENT, Agent
from shared.errors import is_retryable
from shared.keys import CallField
from shared.messages import CallAnswered, Hangup
from shared.records import (
    Turn,
    dispatch_command,
    end_of_call_commands,
    ended_commands,
    expire_streams_commands,
    load_turns,
    set_fields_command,
    transferred_commands,
    turns_rewrite_commands,
    worker_fields_commands,
)
from shared.streams import release_lease
from shared.tasks import run_until_first_returns

if TYPE_CHECKING:
    from services.realtime_worker.playback import PlaybackTracker
    from services.realtime_worker.turn_state import Ending

__all__ = ["CallSession"]

# By end reason (an EndReason is its str value): who ended the call, on its record.
ENDED_BY: dict[str, str] = {
    EndReason.MODEL: "model",
    EndReason.MAX_DURATION: "limit",
    EndReason.MAX_TOKENS: "limit",
    EndReason.TRANSFER: "transfer",
    EndReason.VOICEMAIL: "machine",
    EndReason.NO_PERSON: "machine",
}


class CallSession:
    """Holds the Realtime sessions of one call for as long as this worker owns the call."""

    def __init__(
        self,
        ctx: WorkerContext,
        call_sid: str,
        in_cursor: str,
        *,
        agent: Agent | None = None,
        party: CallParty | None = None,
        setup: str | None = None,
        takeover: bool = False,
        resumed: bool = False,
        started_ms: int | None = None,
        awaiting_answer: bool = False,
        ring_timeout_s: float = 0.0,
    ) -> None:
        """``setup``: the set-up hook's answer stored on the record (the hook is asked only
        when a call first arrives); ``resumed``: back from a transfer that did not go
        through; ``awaiting_answer``: an outbound call with machine detection, whose model
        waits for Twilio's verdict; ``ring_timeout_s``: how long an outbound call may ring
        before its stream can start."""
        self.ctx = ctx
        self.agent = agent or Agent(DEFAULT_AGENT)
        self.party = party or CallParty(call_sid)
        stored = decode_overrides(setup)
        self._ask_hook = bool(ctx.settings.call_setup_url) and not (takeover or resumed or setup)
        profile = call_profile(ctx.settings, self.agent, self.party, stored, ctx.tools)
        self.io = io = CallIO(ctx, call_sid, profile)
        self.call_sid = call_sid
        self.log = io.log
        self.lease_key = io.lease_key
        self.takeover = takeover
        self.resumed = resumed
        self.handoff = False
        self.claimed_at = io.clock.monotonic()
        self.ring_timeout_s = ring_timeout_s
        self.started_ms = started_ms or io.clock.wall_ms()  # the record's created_ms
        settings = ctx.settings
        self.codec = call_codec(settings)
        self.holder = SessionHolder()
        self.conversation = Conversation()
        self.functions = FunctionCalls(io, self.holder, self.conversation, profile.tools)
        self.model = ModelRelay(
            io, self.holder, self.conversation, self.codec, self.functions, self.started_ms
        )
        self.caller = CallerRelay(
            io,
            self.holder,
            self.conversation,
            self.codec,
            self.model,
            in_cursor,
            stream_seen=takeover,
            awaiting_answer=awaiting_answer,
        )
        self.caller.on_answered = self._answered
        transcoder = self.codec if isinstance(self.codec, CallTranscoder) else None
        self.sessions = SessionSwitcher(
            io,
            self.holder,
            self.conversation,
            self.model,
            transcoder,
            self.caller.start_backlog,
        )
        if takeover:
            self.conversation.playback.stream_ready(io.clock.monotonic())

    # --- what the worker and the tests read -----------------------------------------------------

    @property
    def end_reason(self) -> str | None:
        return self.io.end_reason

    @property
    def in_cursor(self) -> str:
        return self.caller.in_cursor

    @property
    def saved_in_cursor(self) -> str:
        return self.caller.saved_in_cursor

    @saved_in_cursor.setter
    def saved_in_cursor(self, value: str) -> None:
        self.caller.saved_in_cursor = value

    @property
    def stream_seen(self) -> bool:
        return self.caller.stream_seen

    @property
    def turns(self) -> list[Turn]:
        """The conversation so far, in conversation order."""
        return self.conversation.transcript.turns()

    @property
    def active_response(self) -> str | None:
        return self.conversation.active_response

    @property
    def ending(self) -> Ending | None:
        return self.conversation.ending

    @property
    def usage(self) -> rt.TokenUsage:
        return self.conversation.usage

    @property
    def playback(self) -> PlaybackTracker:
        return self.conversation.playback

    @property
    def bytes_from_model(self) -> int:
        return self.model.bytes_from_model

    @property
    def bytes_to_model(self) -> int:
        return self.caller.bytes_to_model

    # --- control from the worker ----------------------------------------------------------

    def stop(self, reason: str, *, lease_lost: bool = False) -> None:
        """End this session without ending the call (lease lost, or handed back on drain)."""
        self.io.lease_lost = self.io.lease_lost or lease_lost
        self.io.end(reason)

    def hand_off(self) -> None:
        """Stop without hanging up, and put the call back on the dispatch stream once the
        lease is released, so that another worker takes it over at once."""
        if self.io.end_reason is None:
            self.handoff = True
        self.stop("handoff")

    def restore_record(self) -> None:
        """Write again what this worker owns of the call in Redis, after Redis lost it
        (restarted empty). HSET of our own fields only: the edge re-writes its own."""
        io, keys = self.io, self.ctx.keys
        io.write(
            worker_fields_commands(
                keys, self.call_sid, self.ctx.worker_id, self.in_cursor, self.sessions.formats
            )
        )
        io.write(turns_rewrite_commands(keys, self.call_sid, self.turns))

    # --- the call -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the call ends or this worker lets go of it. Never raises."""
        self.caller.inbox.open(self.in_cursor)
        try:
            if self.io.end_reason is None:  # not failed before it began (an unknown agent)
                await self._session()
        except* Exception as group:
            error = group.exceptions[0]
            code, message = failure_of(error)
            if code == "internal_error":
                self.log.error("call session failed", exc_info=error)
            self.io.fail(code, message)
        finally:
            await self._cleanup()

    async def _session(self) -> None:
        if self.takeover or self.resumed:
            await self._load_turns()
        setup = asyncio.create_task(self._set_up(), name=f"setup-{self.call_sid}")
        try:
            seeded = await self.sessions.open_first(setup)
        finally:
            setup.cancel()  # still asking only if the session failed first
        if not self.takeover:
            self.ctx.metrics.calls_by_agent.labels(self.io.profile.agent).inc()
        if self.takeover:
            self.ctx.metrics.takeovers.inc()
            await self.caller.start_backlog("took over the call from its previous worker", seeded)
        if self.resumed:
            await self.model.send(self.model.persona_response("transfer_failed", RETURN_CUE))
            self.log.info("back from a transfer that did not go through: told the model")
        elif not self.takeover and not self.caller.awaiting_answer:
            await self._greet()
        await run_until_first_returns(
            self.caller.run(),
            self.sessions.model_to_caller(),
            self._watchdog(),
            self.sessions.rollover_loop(),
            self.model.cancel_loop(),
            self.io.stop_requested.wait(),
        )

    async def _greet(self) -> None:
        greeting = self.io.profile.greeting_cue
        if greeting:
            await self.model.send(self.model.persona_response("greeting", greeting))
            self.log.info("asked the model to greet the caller")

    async def _answered(self, verdict: CallAnswered) -> None:
        """Twilio said who answered (or the wait for it ran out): greet a person, leave the
        message on a machine, or hang up, as the agent says."""
        profile, io = self.io.profile, self.io
        action = answer_action(
            verdict.answered_by,
            voicemail=profile.voicemail,
            fax_or_unknown=profile.fax_or_unknown,
        )
        io.metrics.answered_by.labels(verdict.answered_by[:32], action).inc()
        self.log.info(
            "answered by %s (detection took %d ms): %s",
            verdict.answered_by,
            verdict.detection_ms,
            action,
        )
        self.caller.model_hears = action is AnswerAction.GREET  # a machine is never heard
        if action is AnswerAction.GREET:
            await self._greet()
        elif action is AnswerAction.HANGUP:
            io.end(EndReason.NO_PERSON, hang_up=True)
        else:
            cue = voicemail_cue(profile.voicemail_message)
            await self.model.begin_ending(EndReason.VOICEMAIL, goodbye=True, cue=cue)

    async def _set_up(self) -> None:
        """Ask the set-up hook (when configured, and the call is new here) and settle the
        call's profile. Never raises: a hook that fails costs the call its overrides only."""
        ctx, io = self.ctx, self.io
        url = ctx.settings.call_setup_url
        if not self._ask_hook or url is None or ctx.http is None:
            return
        started = io.clock.monotonic()
        result = await run_setup_hook(
            ctx.http, url, ctx.settings.call_setup_timeout_s, self.party, self.agent.name
        )
        ctx.metrics.call_setup.labels(result.outcome).inc()
        waited_ms = (io.clock.monotonic() - started) * 1000
        if result.overrides is None:
            io.log.warning(
                "set-up hook: %s after %.0f ms; serving the call with agent %s's defaults",
                result.problem,
                waited_ms,
                self.agent.name,
            )
            return
        io.profile = call_profile(ctx.settings, self.agent, self.party, result.overrides, ctx.tools)
        io.write(self._setup_commands(result.overrides))
        io.log.info(
            "set-up hook answered in %.0f ms (%s)",
            waited_ms,
            ", ".join(_overridden(result.overrides)) or "no overrides",
        )

    def _setup_commands(self, overrides: SetupOverrides) -> list[tuple[object, ...]]:
        stored = {CallField.SETUP: encode_overrides(overrides)}
        return [set_fields_command(self.ctx.keys, self.call_sid, stored)]

    async def _load_turns(self) -> None:
        """The stored turns of a taken-over call; Redis failing here costs the new session its
        memory, never the call."""
        try:
            turns = await load_turns(self.ctx.redis, self.ctx.keys, self.call_sid)
        except Exception as exc:
            self.log.warning("could not read the call's turns on takeover: %s", exc)
            return
        self.conversation.transcript = Transcript(turns)

    async def _watchdog(self) -> None:
        io, caller = self.io, self.caller
        settings, interval = io.settings, io.timing.watchdog_interval_s
        while True:
            await asyncio.sleep(interval)
            now = io.clock.monotonic()
            if caller.inbox.paused or not self.ctx.reader.healthy:
                # Our own back-pressure, or Redis being down, is not silence from the edge;
                # nor can a StreamStarted arrive while Redis is down.
                caller.last_inbound = now
                if not caller.stream_seen:
                    self.claimed_at += interval
            if caller.stream_seen and now - caller.last_inbound > settings.edge_grace_s:
                io.fail(
                    "edge_lost",
                    f"nothing arrived from the edge for {settings.edge_grace_s:.0f}s (no "
                    "media, no stop): the edge is gone and Twilio did not come back",
                )
                return
            stream_wait_s = settings.stream_start_timeout_s + self.ring_timeout_s
            if not caller.stream_seen and now - self.claimed_at > stream_wait_s:
                io.fail(
                    "stream_never_arrived",
                    f"Twilio's stream did not reach an edge within {stream_wait_s:.0f}s",
                )
                return
            started = caller.stream_started_at
            if caller.awaiting_answer and started is not None and now - started > VERDICT_WAIT_S:
                self.log.warning(
                    "no answering-machine verdict %.0fs after the answer: acting as if unknown",
                    VERDICT_WAIT_S,
                )
                caller.awaiting_answer = False
                await self._answered(CallAnswered("unknown", round((now - started) * 1000)))
            detached = caller.detached_since
            if detached is not None and now - detached > settings.edge_grace_s:
                io.fail("edge_lost", "Twilio's stream did not come back after it dropped")
                return
            if caller.stream_seen:
                await self.model.check_caps()
            self.model.check_ending()

    # --- the end ----------------------------------------------------------------------------

    async def _cleanup(self) -> None:
        io, ctx = self.io, self.ctx
        writer = ctx.writer
        self.caller.inbox.close()
        self.functions.cancel()
        if self.holder.opened:
            await self.holder.current.ws.close()
        reason = io.end_reason or "ended"
        if not io.lease_lost and await self._lease_taken_by_another():
            # This process was paused (SIGSTOP, a long GC, a frozen VM) past its lease: another
            # worker serves the call now, and must not be hung up on by what this one saw.
            io.lease_lost = True
            self.log.warning("another worker holds the call now: leaving it without a word")
        if not io.lease_lost:
            cursor = {CallField.IN_CURSOR: self.in_cursor}
            writer.command(*set_fields_command(ctx.keys, self.call_sid, cursor))
        if io.hang_up and not io.lease_lost:
            # The record says "ended" (or "transferred") before the edge sees Hangup, so that
            # Twilio's <Redirect> after the close finds it (and plays FAILURE_MESSAGE if the
            # call failed, or dials the person).
            now_ms = io.clock.wall_ms()
            if reason == EndReason.TRANSFER:
                io.write(transferred_commands(ctx.keys, self.call_sid, now_ms))
            else:
                io.write(ended_commands(ctx.keys, self.call_sid, reason, now_ms, io.error or ""))
            io.publish_nowait(Hangup(reason))
            if not self.caller.stream_seen:
                io.write(expire_streams_commands(ctx.keys, self.call_sid))
        if (io.hang_up or self.caller.caller_ended) and not io.lease_lost:
            io.write(self._summary_commands(reason))
        if not io.lease_lost:
            try:
                await asyncio.wait_for(writer.flush(), io.timing.cleanup_timeout_s)
                await release_lease(ctx.redis, io.lease_key, ctx.worker_id)
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
        if self.caller.caller_ended:
            ended_by = "caller" if reason == "caller_hangup" else "edge"
        else:
            ended_by = ENDED_BY.get(reason, "error")
        duration_ms = max(0, self.io.clock.wall_ms() - self.started_ms)
        usage = self.conversation.usage
        self.log.info(
            "call summary: ended by %s (%s) after %.1f s, %d barge-ins, %d tokens",
            ended_by,
            reason,
            duration_ms / 1000,
            self.conversation.barge_ins,
            usage.total,
        )
        return end_of_call_commands(
            self.ctx.keys,
            self.call_sid,
            {CallField.ENDED_BY: ended_by, CallField.DURATION_MS: duration_ms},
            self.ctx.settings.call_record_retention_s,
        )

    async def _dispatch_again(self) -> None:
        """Put the call back in line, after the lease is released (so the next worker can
        take it) and the inbound cursor saved (so it resumes where this one stopped)."""
        writer = self.ctx.writer
        writer.command(*dispatch_command(self.ctx.keys, self.call_sid, "handoff", self.io.clock))
        try:
            await asyncio.wait_for(writer.flush(), self.io.timing.cleanup_timeout_s)
        except TimeoutError:
            self.log.warning("could not hand the call off yet: Redis is not taking writes")
            return
        self.ctx.metrics.handoffs.inc()
        self.log.info("handed the call off: lease released, call back on the dispatch stream")


def _overridden(overrides: SetupOverrides) -> list[str]:
    """What the hook's answer changes, for the log line (never the values: they may be
    personal data)."""
    named = [name for name in ("instructions", "greeting") if getattr(overrides, name)]
    if overrides.variables:
        named.append(f"{len(overrides.variables)} variables")
    return named
