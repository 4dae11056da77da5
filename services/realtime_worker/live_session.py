"""The call's current Realtime session, and the one lock around sending on it or replacing it.

A call may go through several sessions (rollover, reconnect). Events are handled with the
session they came from, and anything sent goes to the *current* one: whoever sends holds the
lock, and a switch holds it while the new session is opened, so nothing is sent on a session
that is being replaced, and caller audio waits (bounded, in the call's queue and in Redis)
until the new one is there. A send that finds its session dead waits for the replacement and
goes there instead.
"""

from __future__ import annotations

import asyncio

import websockets.exceptions
from websockets.asyncio.client import ClientConnection

__all__ = ["LiveSession", "SessionHolder"]


class LiveSession:
    """One Realtime socket of a call, and what only that session knows."""

    __slots__ = ("call_ids", "items", "number", "server_error_seen", "ws")

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number  # 1 for the call's first session on this worker
        # Function calls this session's conversation holds: an output for any other call_id
        # would be refused (invalid_tool_call_id), so the call is recreated first.
        self.call_ids: set[str] = set()
        self.items: set[str] = set()  # reply items it produced: only it can truncate them
        self.server_error_seen = False  # a server_error event came; a close may follow

    async def send(self, event: str) -> None:
        await self.ws.send(event)


class SessionHolder:
    """Holds the current ``LiveSession``; ``lock`` guards sending on it and replacing it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._current: LiveSession | None = None
        self._switched = asyncio.Event()
        self._count = 0

    @property
    def current(self) -> LiveSession:
        if self._current is None:
            raise RuntimeError("no Realtime session")
        return self._current

    @property
    def opened(self) -> bool:
        return self._current is not None

    def is_current(self, session: LiveSession) -> bool:
        return session is self._current

    def install(self, ws: ClientConnection) -> LiveSession:
        """Make ``ws`` the current session (hold ``lock``, except for the first); the sessions
        replaced are the caller's to close."""
        self._count += 1
        self._current = LiveSession(ws, self._count)
        self._switched.set()
        self._switched = asyncio.Event()
        return self._current

    async def replaced(self, session: LiveSession) -> None:
        """Return once ``session`` is no longer the current one."""
        while self._current is session:
            await self._switched.wait()

    async def send(self, *events: str) -> None:
        """Send ``events`` in order on the current session; if it dies under them, wait for its
        replacement and send the rest there. Waits forever if none comes: the call's end
        cancels the waiting task."""
        remaining = list(events)
        while remaining:
            async with self.lock:
                session = self.current
                try:
                    while remaining:
                        await session.send(remaining[0])
                        del remaining[0]
                    return
                except websockets.exceptions.ConnectionClosed:
                    pass
            await self.replaced(session)
