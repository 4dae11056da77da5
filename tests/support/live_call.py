"""A live call as the edge's runtime and drain see it (``services.edge.live_calls.LiveCall``),
without a socket: it takes a place in the registry and records being moved off."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StubCall"]


@dataclass
class StubCall:
    call_sid: str
    lease_key: str = "sb:call:x:lease"
    record_key: str = "sb:call:x"
    worker: str | None = None
    moved_off: bool = False  # the drain closed its stream

    def check_worker(self, holder: str | None, state: str | None, now: float) -> None:
        pass

    def worker_gone(self, worker: str, revoked: bool, now: float) -> None:
        pass

    def save_cursor(self) -> None:
        pass

    def move_off(self) -> None:
        self.moved_off = True
