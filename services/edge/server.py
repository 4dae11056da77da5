"""uvicorn's server, with the edge's own answer to SIGTERM: drain, then exit 0.

On the first SIGTERM or SIGINT the edge turns /readyz false and declines new calls, lets its
live calls go on for up to DRAIN_TIMEOUT, and only then lets uvicorn close what is left. A
second signal stops at once.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from services.edge.runtime import RuntimeSlot
from shared.clock import SYSTEM_CLOCK

__all__ = ["EdgeServer"]

logger = logging.getLogger("switchboard.edge")


class EdgeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, slot: RuntimeSlot, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._slot = slot
        self._drain_timeout_s = drain_timeout_s
        self._drain_started: float | None = None

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

    def _now(self) -> float:
        runtime = self._slot.runtime
        return runtime.clock.monotonic() if runtime is not None else SYSTEM_CLOCK.monotonic()

    async def on_tick(self, counter: int) -> bool:
        runtime = self._slot.runtime
        if self._drain_started is not None and not self.should_exit and runtime is not None:
            waited = self._now() - self._drain_started
            if not runtime.calls:
                logger.info("drained: no live calls left after %.1fs", waited)
                self.should_exit = True
            elif waited > self._drain_timeout_s:
                logger.warning(
                    "drain timeout: closing %d live calls (Twilio will move them to another "
                    "edge through <Redirect>)",
                    len(runtime.calls),
                )
                self.should_exit = True
        return await super().on_tick(counter)
