"""A call's bounded inbox: the entries of one of its streams, decoded, waiting for its relay.

The process's ``FanInReader`` delivers each stream's new entries to the stream's inbox; the
call's relay takes them one by one. Memory stays bounded: when ``pause_at`` messages wait, the
reader stops reading this stream (the rest waits in Redis), and resumes once the relay has
brought the queue down to ``resume_at``. Entries that are not valid messages of the expected
kind are dropped and reported to ``on_fault``, never queued. Used by the edge (a call's
outbound stream) and by the worker (its inbound stream).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from shared.errors import DecodeError
from shared.messages import ENTRY_FIELD, Message, decode
from shared.streams import Entry, FanInReader

__all__ = ["INBOX_PAUSE_AT", "INBOX_RESUME_AT", "Inbox"]

#: Messages held per call before its stream waits in Redis (a few seconds of 20 ms frames)…
INBOX_PAUSE_AT: Final = 256
#: …and the level at which reading it resumes.
INBOX_RESUME_AT: Final = 64

M = TypeVar("M", bound=Message)


class Inbox(Generic[M]):
    """Decoded entries of ``stream`` that are instances of ``kind``, in order."""

    def __init__(
        self,
        reader: FanInReader,
        stream: str,
        kind: type[M] | tuple[type[M], ...],
        on_fault: Callable[[str], None],
        *,
        pause_at: int = INBOX_PAUSE_AT,
        resume_at: int = INBOX_RESUME_AT,
    ) -> None:
        self._reader = reader
        self.stream = stream
        self._kind = kind
        self._on_fault = on_fault
        self._pause_at = pause_at
        self._resume_at = resume_at
        self._queue: deque[tuple[bytes, M]] = deque()
        self._ready = asyncio.Event()
        self.paused = False
        #: Called with each message as it is queued (the edge drops audio a clear voids).
        self.on_message: Callable[[M], None] | None = None
        #: Called once per delivery from the reader, whatever it held.
        self.on_delivery: Callable[[], None] | None = None

    def open(self, start_id: bytes | str) -> None:
        """Start receiving the entries after ``start_id``."""
        self._reader.subscribe(self.stream, self._sink, start_id)

    def close(self) -> None:
        self._reader.unsubscribe(self.stream)

    def __len__(self) -> int:
        return len(self._queue)

    def entry_ids(self) -> list[bytes]:
        return [entry_id for entry_id, _ in self._queue]

    def _sink(self, entries: list[Entry]) -> bool:
        """The reader's delivery; False pauses the stream."""
        if self.on_delivery is not None:
            self.on_delivery()
        on_message = self.on_message
        for entry_id, fields in entries:
            try:
                message = decode(fields[ENTRY_FIELD])
            except (DecodeError, KeyError) as exc:
                self._on_fault(f"entry {entry_id.decode(errors='replace')}: {exc}")
                continue
            if not isinstance(message, self._kind):
                self._on_fault(f"entry {entry_id.decode(errors='replace')}: {message!r}")
                continue
            if on_message is not None:
                on_message(message)
            self._queue.append((entry_id, message))
        self._ready.set()
        self.paused = len(self._queue) >= self._pause_at
        return not self.paused

    async def get(self) -> tuple[bytes, M]:
        """The next entry (its id and message), waiting for one if none is queued."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        item = self._queue.popleft()
        if self.paused and len(self._queue) <= self._resume_at:
            self.paused = False
            self._reader.resume(self.stream)
        return item

    def drop(self, unwanted: Callable[[M], bool]) -> int:
        """Remove the queued messages ``unwanted`` picks; how many."""
        kept = deque(entry for entry in self._queue if not unwanted(entry[1]))
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        return dropped
