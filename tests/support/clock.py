"""A clock tests set by hand (``shared.clock.Clock``)."""

from __future__ import annotations

import time

__all__ = ["ManualClock"]


class ManualClock:
    """``monotonic`` stays where the test puts it; ``wall`` follows the host's clock (records
    and relay latencies stay real) plus ``wall_offset_s``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.wall_offset_s = 0.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> float:
        return time.time() + self.wall_offset_s

    def wall_ms(self) -> int:
        return int(self.wall() * 1000)
