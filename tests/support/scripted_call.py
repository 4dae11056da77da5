"""A ``CallSession`` running on a scripted Realtime socket, with helpers to play the model's
part; its playback clock is set by hand, so what the caller "heard" is exact."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from services.realtime_worker.call_session import CallSession
from shared.messages import Message, PlaybackMark, StreamStarted
from tests.support.clock import ManualClock
from tests.support.realtime import FakeRealtime, Opener
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness, inbound_handled

__all__ = ["ScriptedCall", "running_call", "start_session"]


class ScriptedCall:
    """A running session on the fake socket ``ws``."""

    def __init__(
        self, harness: Harness, ws: FakeRealtime, session: CallSession, clock: ManualClock
    ) -> None:
        self.harness, self.ws, self.session, self.clock = harness, ws, session, clock
        self.task: asyncio.Task[None] | None = None

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.ws.sent if e["type"] == kind]

    def reply(self, response_id: str, item_id: str, *chunks: int, done: bool = False) -> None:
        """The model streams ``chunks`` (byte counts) of audio for ``item_id``."""
        self.ws.push_event(type="response.created", response={"id": response_id})
        self.audio(response_id, item_id, *chunks)
        if done:
            self.ws.push_event(
                type="response.output_audio.done", response_id=response_id, item_id=item_id
            )

    def audio(self, response_id: str, item_id: str, *chunks: int) -> None:
        for size in chunks:
            self.ws.push_event(
                type="response.output_audio.delta",
                response_id=response_id,
                item_id=item_id,
                delta=base64.b64encode(b"\x55" * size).decode(),
            )

    def done(self, response_id: str, status: str = "completed", **response: Any) -> None:
        self.ws.push_event(
            type="response.done", response={"id": response_id, "status": status, **response}
        )

    async def inbound(self, *messages: Message) -> None:
        """Send the caller's side of the call, and wait until the session has handled it."""
        ids = await self.harness.send_inbound(*messages)
        await inbound_handled(self.session, ids[-1])

    async def marks(self) -> list[str]:
        await self.harness.writer.flush()
        return [m.name for m in await self.harness.outbound() if isinstance(m, PlaybackMark)]

    async def finish(self) -> None:
        """Wait for the session to end; every client event it sent is checked strictly."""
        assert self.task is not None
        await asyncio.wait_for(self.task, 3.0)
        for event in self.ws.sent:
            check_client_event(event)


@asynccontextmanager
async def running_call(harness: Harness, **session: Any) -> AsyncIterator[ScriptedCall]:
    """A session on a scripted Realtime socket whose stream has started; stopped afterwards.
    The watchdog looks every 10 ms; the playback clock starts at 100.0 and moves when the
    test says. ``session``: keyword arguments of ``CallSession`` (its agent, say)."""
    clock = ManualClock()
    harness.set_clock(clock)
    harness.set_timing(watchdog_interval_s=0.01, cancel_grace_s=0.05)
    ws = FakeRealtime()
    harness.use(ws)
    running = ScriptedCall(harness, ws, CallSession(harness.ctx, SID, "0-0", **session), clock)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    running.task = asyncio.create_task(running.session.run())
    await eventually(lambda: running.session.stream_seen)
    yield running
    if not running.task.done():
        running.session.stop("test over")
        await asyncio.wait_for(running.task, 3.0)


async def start_session(
    harness: Harness, opener: Opener, **settings: Any
) -> tuple[CallSession, asyncio.Task[None]]:
    """A session on ``opener``'s sockets whose stream has started and whose first session is
    up; reconnects back off by a few ms only."""
    if settings:
        harness.configure(**settings)
    harness.set_timing(reconnect_backoff_initial_s=0.01, reconnect_backoff_max_s=0.02)
    harness.use(opener)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: session.stream_seen and len(opener.opened[0].sent) >= 1)
    return session, task
