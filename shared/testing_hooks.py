"""Test-only hooks, on with SWITCHBOARD_TEST_HOOKS=true and off by default: never in production.

``POST /test/block-loop?seconds=N`` on a process's private port (the edge's ADMIN_PORT, the
worker's METRICS_PORT) answers 202, then blocks the process's event loop for N seconds with a
blocking call run inside the loop, as a stuck loop would (a blocking library call, a runaway
computation). The liveness tests use it to see ``/livez`` stop answering meanwhile.
"""

from __future__ import annotations

import math
import time

__all__ = ["BLOCK_LOOP_PATH", "MAX_BLOCK_S", "block_loop", "block_seconds"]

BLOCK_LOOP_PATH = "/test/block-loop"
MAX_BLOCK_S = 60.0


def block_seconds(raw: str | None) -> float:
    """The ``seconds`` query parameter: a number above 0, at most MAX_BLOCK_S (ValueError)."""
    try:
        seconds = float(raw or "")
    except ValueError:
        raise ValueError("seconds: expected a number") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_BLOCK_S):
        raise ValueError(f"seconds: expected a number above 0, at most {MAX_BLOCK_S:g}")
    return seconds


def block_loop(seconds: float) -> None:
    """Block the calling thread: called from a coroutine, the whole event loop stops."""
    time.sleep(seconds)
