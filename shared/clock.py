"""The clock a process reads, injected so that tests can set the time.

``monotonic`` measures durations (timeouts, playback, the ending's deadline, reconnect
windows); ``wall`` timestamps what crosses processes or is recorded (``sent_at`` of a message,
a call record's times), where hosts must agree.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds, from an arbitrary origin, never going back."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The host's clocks."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


SYSTEM_CLOCK: Clock = SystemClock()
