"""The calls whose Twilio streams are attached to this edge, as the edge's background loops and
routes see them: a typed registry, so the runtime never reaches into the media socket.

The media socket (``media_stream.EdgeCall``) registers itself when its stream attaches and
removes itself when the stream ends; the runtime's loops ask each registered call what they
need through the ``LiveCall`` protocol below, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

__all__ = ["LiveCall", "LiveCalls"]


class LiveCall(Protocol):
    """What the edge's loops need of a live call."""

    @property
    def call_sid(self) -> str: ...

    @property
    def lease_key(self) -> str:
        """The key of the lease its worker holds (the lease watch checks it)."""
        ...

    @property
    def record_key(self) -> str: ...

    @property
    def worker(self) -> str | None:
        """The worker serving the call at the last lease check (None: none is)."""
        ...

    def check_worker(self, holder: str | None, state: str | None, now: float) -> None:
        """One lease check's result (``holder``: None when the lease is missing or revoked):
        re-dispatch the call, or give up on it, as needed."""
        ...

    def worker_gone(self, worker: str, revoked: bool, now: float) -> None:
        """``worker``'s alive key was gone; ``revoked``: the edge took the call's lease from
        it, so the call goes back in line."""
        ...

    def save_cursor(self) -> None:
        """Record how far the outbound stream was sent, for an edge taking the call over."""
        ...

    def move_off(self) -> None:
        """The drain ran out of time: close the stream cleanly, so that Twilio takes the call
        to another edge through the TwiML's <Redirect>."""
        ...


class LiveCalls:
    """The live calls of this edge, by call sid."""

    def __init__(self) -> None:
        self._calls: dict[str, LiveCall] = {}

    def add(self, call: LiveCall) -> None:
        """Register ``call``; a call has one stream at a time (KeyError if it has one)."""
        if call.call_sid in self._calls:
            raise KeyError(f"call {call.call_sid} already has a stream on this edge")
        self._calls[call.call_sid] = call

    def remove(self, call: LiveCall) -> None:
        if self._calls.get(call.call_sid) is call:
            del self._calls[call.call_sid]

    def get(self, call_sid: str) -> LiveCall | None:
        return self._calls.get(call_sid)

    def __contains__(self, call_sid: object) -> bool:
        return call_sid in self._calls

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[LiveCall]:
        """A snapshot: calls may come and go while the caller iterates."""
        return iter(list(self._calls.values()))

    def sids(self) -> list[str]:
        return list(self._calls)
