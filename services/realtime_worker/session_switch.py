"""The Realtime sessions of one call: the first one, and the moves to a new one.

A call moves to a new session in two ways, both through ``switch``: a planned **rollover**
after SESSION_MAX, at the next pause in the conversation (the API caps a session at 60
minutes), and a **reconnect** when the current session drops without the worker asking (the
connection breaks, the server closes it, or reaches its cap first). Either way the new session
is opened with the send lock held, so caller audio waits for it (bounded, in the call's inbox
and in Redis); its format is confirmed and it is seeded with the conversation so far; then what
the old one left unfinished is settled. Reconnects are bounded (``reconnect.py``); past the
budget, or on an error no new session would cure, the call ends and the caller hears
FAILURE_MESSAGE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import websockets.exceptions

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_io import CallIO
from services.realtime_worker.conversation import Conversation
from services.realtime_worker.live_session import LiveSession, SessionHolder
from services.realtime_worker.model_relay import ModelRelay
from services.realtime_worker.reconnect import CloseInfo, ReconnectBudget, drop_reason
from services.realtime_worker.session_setup import OpenedSession, open_session, session_options
from services.realtime_worker.transcode import CallTranscoder
from shared.errors import FormatMismatchError, RealtimeSessionError, is_retryable
from shared.keys import CallField
from shared.records import set_fields_command

__all__ = ["SessionSwitcher", "failure_of"]

#: Starts the stale-audio policy for caller audio that waited for a new session:
#: (why, turns seeded).
StartBacklog = Callable[[str, int], Awaitable[None]]


def failure_of(exc: BaseException) -> tuple[str, str]:
    """The error code and message a failed session (setup or relay) ends the call with."""
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


class SessionSwitcher:
    def __init__(
        self,
        call: CallIO,
        holder: SessionHolder,
        conversation: Conversation,
        relay: ModelRelay,
        transcoder: CallTranscoder | None,
        start_backlog: StartBacklog,
    ) -> None:
        self._call = call
        self._holder = holder
        self._conversation = conversation
        self._relay = relay
        self._transcoder = transcoder
        self._start_backlog = start_backlog
        timing = call.timing
        self.reconnects = ReconnectBudget(
            call.settings.realtime_reconnects,
            first_jitter_s=timing.reconnect_first_jitter_s,
            backoff_initial_s=timing.reconnect_backoff_initial_s,
            backoff_max_s=timing.reconnect_backoff_max_s,
        )
        self.formats: tuple[str, str] | None = None  # as the current session confirmed them
        self.session_started = call.clock.monotonic()

    async def open_first(self, profile_ready: Awaitable[None]) -> int:
        """Open the call's first session on this worker, configured once ``profile_ready``
        (the set-up hook, bounded by its timeout) has settled the call's profile; the turns it
        was seeded with."""

        async def options() -> rt.SessionOptions:
            await profile_ready
            return session_options(self._call.settings, self._call.profile)

        pending = options()
        try:
            async with asyncio.timeout(self._call.settings.realtime_connect_timeout_s):
                opened = await self._open(pending)
        finally:
            pending.close()  # never awaited if connecting failed first
        self._holder.install(opened.ws)
        return opened.seeded

    async def _open(self, options: Awaitable[rt.SessionOptions] | None = None) -> OpenedSession:
        """A new session (configured with ``options``, by default the call's profile's): its
        format confirmed (and recorded), seeded with the turns so far. Raises as
        ``open_session``."""
        io = self._call
        settings = io.settings
        opened = await open_session(
            io.ctx.connect,
            settings,
            options or session_options(settings, io.profile),
            self._conversation.transcript.turns(),
            io.next_event_id,
        )
        confirmed = opened.confirmed
        self.formats = (confirmed.input_format or "", confirmed.output_format or "")
        formats = {
            CallField.INPUT_FORMAT: self.formats[0],
            CallField.OUTPUT_FORMAT: self.formats[1],
        }
        io.ctx.writer.command(*set_fields_command(io.ctx.keys, io.call_sid, formats))
        io.log.info(
            "realtime session %s ready: %s in, %s out (model %s, agent %s, voice %s)",
            confirmed.session_id,
            confirmed.input_format,
            confirmed.output_format,
            settings.realtime_model,
            io.profile.agent,
            io.profile.voice,
        )
        if self._transcoder is not None:
            io.log.info(
                "transcoding: caller μ-law 8 kHz ↔ model PCM16 24 kHz (libsoxr %s)",
                self._transcoder.quality,
            )
        self.session_started = io.clock.monotonic()
        self._relay.idle.set()
        return opened

    async def switch(self, *, backlog: str | None = None) -> tuple[LiveSession, int]:
        """Open a new session and make it the current one, holding the send lock meanwhile.
        ``backlog``: start the stale-audio policy, saying why. Returns the session replaced
        and the turns seeded; raises as ``open_session``."""
        holder = self._holder
        async with holder.lock:
            async with asyncio.timeout(self._call.settings.realtime_connect_timeout_s):
                opened = await self._open()
            if backlog is not None:
                await self._start_backlog(backlog, opened.seeded)
            old = holder.current
            holder.install(opened.ws)
        return old, opened.seeded

    # --- model → caller, across sessions ------------------------------------------------------

    async def model_to_caller(self) -> None:
        """Relay the current session's events; replace it when it drops. Returns when the
        call ends."""
        while True:
            session = self._holder.current
            close = await self._relay.relay(session)
            if close is None:
                return  # a handler ended the call
            if not self._holder.is_current(session):
                continue  # replaced on purpose (a rollover), then closed
            if not await self._reconnect(close):
                return

    async def _reconnect(self, close: CloseInfo) -> bool:
        """The current session dropped: open another, seeded with the conversation so far,
        within the REALTIME_RECONNECTS budget. False when the call has to end instead."""
        io = self._call
        limit = io.settings.realtime_reconnects
        reason = drop_reason(close)
        what = close.describe() + (" after a server_error" if close.after_server_error else "")
        io.log.warning("the Realtime session dropped (%s)", what)
        while True:
            delay = self.reconnects.next_delay(io.clock.monotonic())
            if delay is None:
                io.fail(
                    "realtime_reconnects_exhausted",
                    f"the Realtime session dropped ({what}) after {limit} reconnects within a "
                    f"minute (REALTIME_RECONNECTS={limit})",
                )
                return False
            io.metrics.session_reconnects.labels(reason).inc()
            io.count(CallField.RECONNECTS)
            io.log.info(
                "opening a new Realtime session in %.0f ms (reconnect %d of at most %d a minute)",
                delay * 1000,
                self.reconnects.used(io.clock.monotonic()),
                limit,
            )
            await asyncio.sleep(delay)
            try:
                _, seeded = await self.switch(backlog="reconnected")
            except Exception as exc:
                code, message = failure_of(exc)
                if not _cured_by_retrying(exc):
                    io.fail(code, message)
                    return False
                io.log.warning("could not open a new Realtime session: %s (%s)", message, code)
                reason = "reconnect_failed"
                continue
            await self._relay.session_replaced()
            io.log.info("reconnected: a new Realtime session holds the call (%d turns)", seeded)
            return True

    # --- rollover -----------------------------------------------------------------------------

    async def rollover_loop(self) -> None:
        """After SESSION_MAX, move to a fresh session at the next pause (or, if none comes
        within a while, anyway: the server's own cap would cut the call)."""
        io = self._call
        timing = io.timing
        limit = io.settings.session_max_s
        force_after = min(timing.rollover_force_max_s, limit * timing.rollover_force_fraction)
        while True:
            due = self.session_started + limit
            await asyncio.sleep(max(0.0, due - io.clock.monotonic()))
            forced = False
            try:
                async with asyncio.timeout(force_after):
                    await self._relay.idle.wait()
            except TimeoutError:
                forced = True
            if not await self._roll_over(forced):
                await asyncio.sleep(timing.rollover_retry_s)

    async def _roll_over(self, forced: bool) -> bool:
        """Switch the call to a new session; False (and the call keeps the old one) if the
        new one cannot be opened."""
        io = self._call
        age = io.clock.monotonic() - self.session_started
        try:
            old, seeded = await self.switch()
        except Exception as exc:
            io.log.warning(
                "could not open a new Realtime session for the rollover (%r); keeping the "
                "current one, retrying in %.0fs",
                exc,
                io.timing.rollover_retry_s,
            )
            return False
        io.metrics.rollovers.inc()
        io.log.info(
            "rolled the call over to a new Realtime session after %.0f s (seeded %d turns)%s",
            age,
            seeded,
            " without waiting any longer for a pause" if forced else "",
        )
        try:
            await asyncio.sleep(io.timing.rollover_drain_s)
        finally:
            await old.ws.close()
            await self._relay.session_replaced()
        return True
