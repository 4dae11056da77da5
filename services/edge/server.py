"""uvicorn's server, with the edge's own answer to SIGTERM: drain, then exit 0.

On the first SIGTERM or SIGINT the edge turns /readyz false and declines new calls, lets its
live calls go on for up to DRAIN_TIMEOUT, then closes the streams left itself (a clean close,
so that Twilio follows <Redirect> to another edge) and exits once each close is answered. A
second signal stops at once.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from services.edge.runtime import RuntimeSlot
from services.edge.socket_close import CLOSE_REPLY_TIMEOUT_S
from shared.clock import SYSTEM_CLOCK

__all__ = ["EdgeServer"]

logger = logging.getLogger("switchboard.edge")


class EdgeServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, slot: RuntimeSlot, drain_timeout_s: float, public_port: int
    ) -> None:
        super().__init__(config)
        self._slot = slot
        self._drain_timeout_s = drain_timeout_s
        self._public_port = public_port
        self._drain_started: float | None = None
        self._moved_off = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn, do not re-raise the signal after shutdown: a drained edge exits 0.
        if self._drain_started is not None:
            self.should_exit = True
            return
        self._drain_started = self._now()
        runtime = self._slot.runtime
        if runtime is None:
            self.should_exit = True
            return
        runtime.draining = True
        logger.info(
            "draining: declining new calls; %d live calls have up to %.0fs to finish",
            len(runtime.calls),
            self._drain_timeout_s,
        )

    def _stop_listening_publicly(self) -> None:
        """Refuse connections on the public port from now on: a stream this edge closes comes
        back through <Redirect> at once, and must reach another edge, not this one. The admin
        port stays open (liveness) until the process exits."""
        for server in self.servers:
            if any(sock.getsockname()[1] == self._public_port for sock in server.sockets):
                server.close()

    def _now(self) -> float:
        runtime = self._slot.runtime
        return runtime.clock.monotonic() if runtime is not None else SYSTEM_CLOCK.monotonic()

    async def on_tick(self, counter: int) -> bool:
        runtime = self._slot.runtime
        if self._drain_started is not None and not self.should_exit and runtime is not None:
            waited = self._now() - self._drain_started
            if not runtime.calls and not runtime.closing:
                logger.info("drained: no live calls left after %.1fs", waited)
                self.should_exit = True
            elif waited > self._drain_timeout_s and not self._moved_off:
                logger.warning(
                    "drain timeout: closing %d live calls (Twilio will move them to another "
                    "edge through <Redirect>)",
                    len(runtime.calls),
                )
                self._moved_off = True
                self._stop_listening_publicly()
                for call in list(runtime.calls):
                    call.move_off()
            elif waited > self._drain_timeout_s + CLOSE_REPLY_TIMEOUT_S + 1:
                self.should_exit = True  # a close that hangs: uvicorn's shutdown ends it
        return await super().on_tick(counter)
