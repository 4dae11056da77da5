"""A scripted stand-in for one Realtime WebSocket (the worker's side of it), for tests that
drive a call session without a server: the test pushes the server's events and reads what the
worker sent. End-to-end tests use the realtime simulator instead."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from tests.support.waiting import eventually

__all__ = ["PCM24", "PCMU", "FakeRealtime", "Opener", "session_event"]

PCMU = {"type": "audio/pcmu"}
PCM24 = {"type": "audio/pcm", "rate": 24000}


def session_event(kind: str, fmt: dict[str, Any]) -> str:
    """``session.created`` or ``session.updated`` with ``fmt`` both ways."""
    return json.dumps(
        {
            "type": kind,
            "session": {
                "type": "realtime",
                "id": "sess_1",
                "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
            },
        }
    )


class FakeRealtime:
    """Enough of websockets' ClientConnection for CallSession: send, recv, iterate, close.

    It answers ``session.update`` with ``session.updated`` in ``confirm_format``.
    """

    def __init__(self, confirm_format: dict[str, Any] | None = PCMU) -> None:
        self.sent: list[dict[str, Any]] = []
        self.raw_sent: list[str] = []
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._frames: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        self.confirm_format = confirm_format
        self.dropped: ConnectionClosedError | None = None
        self.receiving = 0  # receivers waiting on an empty queue (see ``handled``)
        self.push(session_event("session.created", PCM24))

    def drop(self, code: int | None = 1011, reason: str = "internal error") -> None:
        """The server side goes away: with a close frame ``code``, or none (``None``: the TCP
        connection broke). Receiving raises from now on, and so does sending."""
        self.dropped = ConnectionClosedError(None if code is None else Close(code, reason), None)
        self.push(self.dropped)

    def push(self, frame: str | BaseException | None) -> None:
        """Queue a server frame; None closes normally, an exception is raised on receive."""
        self._frames.put_nowait(frame)

    def push_event(self, **event: Any) -> None:
        self.push(json.dumps(event))

    async def _next(self) -> str | None:
        self.receiving += 1
        try:
            frame = await self._frames.get()
        finally:
            self.receiving -= 1
        if isinstance(frame, BaseException):
            raise frame
        return frame

    async def handled(self) -> None:
        """Until every frame pushed so far has been received and the receiver is back for the
        next one: the session reads its socket in one loop and handles each event before the
        next receive, so everything pushed before this call has been handled."""
        await eventually(
            lambda: self._frames.empty() and self.receiving > 0, what="the frames handled"
        )

    async def send(self, text: str) -> None:
        if self.dropped is not None:
            raise self.dropped
        self.raw_sent.append(text)
        event = json.loads(text)
        self.sent.append(event)
        if event["type"] == "session.update" and self.confirm_format is not None:
            self.push(session_event("session.updated", self.confirm_format))

    async def recv(self) -> str:
        frame = await self._next()
        if frame is None:
            raise ConnectionClosedError(Close(1000, ""), None)
        return frame

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            frame = await self._next()
            if frame is None:
                self.close_code = 1000
                return
            yield frame

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.push(None)  # like websockets: iterating a closed connection ends

    def appended_audio(self) -> bytes:
        return b"".join(
            base64.b64decode(e["audio"], validate=True)
            for e in self.sent
            if e["type"] == "input_audio_buffer.append"
        )


class Opener:
    """A connector for the worker: hands out the given sockets (or raises the given errors)
    in order, then fresh ones."""

    def __init__(self, *sockets: FakeRealtime | BaseException) -> None:
        self.queue = list(sockets)
        self.opened: list[FakeRealtime] = []

    async def __call__(self) -> FakeRealtime:
        item = self.queue.pop(0) if self.queue else FakeRealtime()
        if isinstance(item, BaseException):
            raise item
        self.opened.append(item)
        return item
