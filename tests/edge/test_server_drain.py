"""The edge's drain on SIGTERM (``services/edge/server.py``), driven tick by tick with a manual
clock: live calls get DRAIN_TIMEOUT; then the public port stops listening, each stream is closed
by the edge (so Twilio's <Redirect> takes the call elsewhere), and the process exits only once
every close has been answered."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import cast

import pytest
import uvicorn

from services.edge.live_calls import LiveCalls
from services.edge.runtime import EdgeRuntime, RuntimeSlot
from services.edge.server import EdgeServer
from services.edge.socket_close import CLOSE_REPLY_TIMEOUT_S
from tests.support.clock import ManualClock
from tests.support.live_call import StubCall

pytestmark = pytest.mark.anyio

PUBLIC_PORT, ADMIN_PORT = 18080, 18081


@dataclass
class Listener:
    """What the drain sees of one of uvicorn's servers (an ``asyncio.Server``)."""

    port: int
    closed: bool = False

    @property
    def sockets(self) -> list[Listener]:
        return [self]

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        self.closed = True


@dataclass
class Runtime:
    """The runtime's fields the drain reads and writes."""

    clock: ManualClock = field(default_factory=ManualClock)
    calls: LiveCalls = field(default_factory=LiveCalls)
    closing: int = 0
    draining: bool = False


def draining_edge(runtime: Runtime) -> tuple[EdgeServer, list[Listener]]:
    slot = RuntimeSlot()
    slot.runtime = cast(EdgeRuntime, runtime)
    server = EdgeServer(uvicorn.Config(app="unused:app"), slot, 1.0, PUBLIC_PORT)
    listeners = [Listener(PUBLIC_PORT), Listener(ADMIN_PORT)]
    server.servers = cast("list[asyncio.Server]", listeners)
    server.handle_exit(signal.SIGTERM, None)
    return server, listeners


async def test_calls_get_the_drain_timeout_then_are_closed_and_the_edge_waits_for_the_replies() -> (
    None
):
    runtime = Runtime()
    call = StubCall("CA" + "1" * 32)
    runtime.calls.add(call)
    server, (public, admin) = draining_edge(runtime)
    assert runtime.draining

    runtime.clock.advance(0.9)  # within DRAIN_TIMEOUT: the call goes on, both ports listen
    assert await server.on_tick(1) is False
    assert not call.moved_off and not public.closed

    runtime.clock.advance(0.2)  # past it: the public port closes, the call is moved off
    assert await server.on_tick(2) is False
    assert call.moved_off
    assert public.closed and not admin.closed  # the probes still reach the admin port

    runtime.calls.remove(call)  # the stream ended; its close frame awaits Twilio's reply
    runtime.closing = 1
    assert await server.on_tick(3) is False
    runtime.closing = 0  # answered
    assert await server.on_tick(4) is True


async def test_a_close_never_answered_does_not_hold_the_exit() -> None:
    runtime = Runtime()
    server, _ = draining_edge(runtime)
    runtime.closing = 1  # a socket that never answers
    runtime.clock.advance(1.0 + CLOSE_REPLY_TIMEOUT_S)
    assert await server.on_tick(1) is False
    runtime.clock.advance(1.5)
    assert await server.on_tick(2) is True


async def test_an_edge_without_calls_exits_at_once() -> None:
    server, (public, _) = draining_edge(Runtime())
    assert await server.on_tick(1) is True
    assert not public.closed  # nothing to move: uvicorn's own shutdown closes the ports


async def test_a_second_signal_stops_at_once() -> None:
    runtime = Runtime()
    runtime.calls.add(StubCall("CA" + "2" * 32))
    server, _ = draining_edge(runtime)
    assert await server.on_tick(1) is False
    server.handle_exit(signal.SIGTERM, None)
    assert await server.on_tick(2) is True
