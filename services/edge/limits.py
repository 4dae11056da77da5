"""Per-call input limits on the edge, as pure logic (no clock or socket of their own)."""

from __future__ import annotations

from shared.audio import BYTES_PER_MS

__all__ = ["MediaPacer"]


class MediaPacer:
    """Admits a call's inbound media at most ``burst_ms`` ahead of real time.

    Twilio sends 20 ms every 20 ms; a client that sends faster is flooding. Excess frames are
    dropped (and counted by the caller) so a flood can neither fill Redis nor make the model
    hear time that did not pass; the call itself goes on.
    """

    __slots__ = ("_budget_bytes", "_started", "_admitted")

    def __init__(self, burst_ms: int) -> None:
        self._budget_bytes = burst_ms * BYTES_PER_MS
        self._started: float | None = None
        self._admitted = 0

    def admit(self, n_bytes: int, now: float) -> bool:
        """True if ``n_bytes`` arriving at ``now`` (seconds) fit in real time plus the burst."""
        if self._started is None:
            self._started = now
        allowed = (now - self._started) * 1000 * BYTES_PER_MS + self._budget_bytes
        if self._admitted + n_bytes > allowed:
            return False
        self._admitted += n_bytes
        return True
