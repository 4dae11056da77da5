"""When a call's Realtime session drops, sans I/O: why it dropped, and whether (and when) to
open another one.

A session that closes without the worker asking is replaced by a new one seeded with the
conversation so far; the call goes on. The budget is ``REALTIME_RECONNECTS`` new sessions within
any minute, so a server that keeps failing ends the call (with an apology) instead of looping.
The first reconnect of a quiet spell goes at once: the caller is waiting. Later ones back off
exponentially with full jitter, so that many calls dropped together do not reconnect in step.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import websockets.exceptions

__all__ = ["WINDOW_S", "CloseInfo", "ReconnectBudget", "drop_reason"]

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a session's socket ended: the close frame the server sent (None: no close frame, the
    connection broke), and whether a ``server_error`` event came before it."""

    code: int | None
    reason: str = ""
    after_server_error: bool = False

    @classmethod
    def of(
        cls,
        ws: Any,
        exc: websockets.exceptions.ConnectionClosed | None,
        after_server_error: bool = False,
    ) -> CloseInfo:
        """How ``ws`` ended; ``exc``: what reading it raised, if anything (else its iteration
        simply ended)."""
        if exc is not None:
            close = exc.rcvd
            if close is None:
                return cls(None, "", after_server_error)
            return cls(close.code, close.reason, after_server_error)
        code = getattr(ws, "close_code", None)
        code = None if code in (None, 1006) else int(code)
        return cls(code, getattr(ws, "close_reason", "") or "", after_server_error)

    def describe(self) -> str:
        if self.code is None:
            return "the connection broke without a close frame"
        return f"close {self.code}" + (f" {self.reason!r}" if self.reason else "")


def drop_reason(close: CloseInfo) -> str:
    """A low-cardinality label for the reconnects counter."""
    if close.after_server_error:
        return "server_error"
    if close.code is None or close.code == 1006:
        return "connection_lost"
    if close.code == 1001:
        return "going_away"  # also the server's 60-minute session cap
    if close.code == 1011:
        return "internal_error"
    if close.code == 1000:
        return "closed_normally"
    return "closed_other"


@dataclass
class ReconnectBudget:
    """At most ``limit`` reconnects within any ``WINDOW_S`` seconds.

    Call ``next_delay(now)`` for each new session a drop calls for (a failed attempt to open
    one counts too): the seconds to wait before opening it, or None when the budget is spent.
    ``now`` is a monotonic time; nothing here reads a clock.
    """

    limit: int
    first_jitter_s: float = 0.05
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 4.0
    rng: random.Random = field(default_factory=random.Random)
    _attempts: deque[float] = field(default_factory=deque)

    def next_delay(self, now: float) -> float | None:
        attempts = self._attempts
        while attempts and now - attempts[0] >= WINDOW_S:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return None
        recent = len(attempts)
        attempts.append(now)
        if recent == 0:
            return self.rng.uniform(0.0, self.first_jitter_s)
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (recent - 1))
        return self.rng.uniform(delay / 2, delay)

    def used(self, now: float) -> int:
        """Reconnects within the last ``WINDOW_S`` seconds."""
        return sum(1 for at in self._attempts if now - at < WINDOW_S)
