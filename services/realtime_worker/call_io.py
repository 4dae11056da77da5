"""What every part of one call on a worker shares: who the call is, how it is ending, and the
writes toward its edge and its record.

The parts of a call session (the caller's relay, the model's relay, the session switcher, the
function calls, the watchdog) each hold this one object rather than each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_profile import CallProfile
from services.realtime_worker.context import WorkerContext
from shared.keys import OUTBOUND_MAXLEN, CallField
from shared.logs import CallLog
from shared.messages import Message
from shared.records import count_command

if TYPE_CHECKING:
    from services.realtime_worker.conversation import Conversation

__all__ = ["MAX_LOGGED_FAULTS", "CallIO"]

logger = logging.getLogger("switchboard.worker.call")

MAX_LOGGED_FAULTS = 3  # per call: the first few say what is wrong, the counter how often


class CallIO:
    """One call's identity, its outcome so far, and its writes (pipelined, fenced)."""

    def __init__(self, ctx: WorkerContext, call_sid: str, profile: CallProfile) -> None:
        self.ctx = ctx
        # How the call is served (its agent, the set-up hook's overrides); set again once the
        # hook has answered, before the first session is configured.
        self.profile = profile
        self.settings = ctx.settings
        self.metrics = ctx.metrics
        self.clock = ctx.clock
        self.timing = ctx.timing
        self.call_sid = call_sid
        self.log = CallLog(logger, call_sid)
        keys = ctx.keys
        self.inbound_key = keys.inbound(call_sid)
        self.outbound_key = keys.outbound(call_sid)
        self.lease_key = keys.lease(call_sid)
        self.slot_group = keys.slot_group(call_sid)  # whose alive key vouches for the call
        self.record_key = keys.call(call_sid)
        # How the call is ending, once it is: set once, by whoever ends it first.
        self.end_reason: str | None = None
        self.error: str | None = None
        self.hang_up = False  # the worker ends the call: tell the edge, mark the record
        self.lease_lost = False
        self.stop_requested = asyncio.Event()
        self.faults = 0
        self.event_seq = 0
        # Set whenever the conversation's active response ends (or its session is replaced).
        self.response_over = asyncio.Event()

    def next_event_id(self, kind: str) -> str:
        """A client event id, unique in the call, so an error naming it can be traced."""
        self.event_seq += 1
        return f"sb_{kind}_{self.event_seq}"

    async def response_ended(self, conversation: Conversation, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until no response is active; whether none is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while conversation.active_response is not None:
                    self.response_over.clear()
                    await self.response_over.wait()
        return conversation.active_response is None

    def end(self, reason: str, *, hang_up: bool = False, error: str | None = None) -> None:
        """Record why the call ends (the first reason wins) and stop its session."""
        if self.end_reason is None:
            self.end_reason = reason
            self.hang_up = hang_up
            self.error = error
        self.stop_requested.set()

    def fail(self, code: str, message: str) -> None:
        """End the call because it cannot go on: the edge hangs up and the caller hears
        FAILURE_MESSAGE (the record's error says why)."""
        self.metrics.realtime_errors.labels(rt.metric_code(code)).inc()
        self.count(CallField.ERRORS)
        self.log.error("ending the call: %s (%s)", message, code)
        self.end(code, hang_up=True, error=message)

    def fault(self, kind: str, detail: str) -> None:
        """A malformed message was dropped: counted, and logged the first few times."""
        self.metrics.malformed.labels(kind).inc()
        self.faults += 1
        if self.faults <= MAX_LOGGED_FAULTS:
            self.log.warning("dropped a malformed message (%s): %s", kind, detail)

    # --- writes -----------------------------------------------------------------------------

    async def publish(self, *messages: Message) -> None:
        """Queue messages for the caller's edge; Redis drops them if another worker holds the
        call by the time they are written (this process may be paused in between)."""
        await self.ctx.writer.fenced_xadd(
            self.lease_key, self.ctx.worker_id, self.outbound_key, messages, OUTBOUND_MAXLEN
        )

    def publish_nowait(self, *messages: Message) -> None:
        """Like ``publish``, for control messages: never waits."""
        self.ctx.writer.fenced_xadd_nowait(
            self.lease_key, self.ctx.worker_id, self.outbound_key, messages, OUTBOUND_MAXLEN
        )

    def write(self, commands: Sequence[tuple[object, ...]]) -> None:
        """Queue Redis commands (the record's, the turns'), never waiting."""
        for command in commands:
            self.ctx.writer.command(*command)

    def count(self, field: CallField, amount: int = 1) -> None:
        """Add to one of the call record's counters."""
        self.ctx.writer.command(*count_command(self.ctx.keys, self.call_sid, field, amount))
