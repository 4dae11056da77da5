"""What the caller has actually heard of each model reply, sans I/O.

The worker follows the audio it publishes with a mark every ``MARK_EVERY_BYTES`` (and at the
end of each item's audio); Twilio echoes a mark when its playback reaches it. So, per response
item, the bytes published before each mark are known, and an echo says "the caller has heard
this many bytes of the item, now". Between echoes, playback advances in real time (μ-law: 8
bytes per ms) — never past what was published. A mark after every delta would be no more
accurate (playback is real time) and would double the messages of every call at every hop.

Times are ``time.monotonic()`` seconds passed in by the caller; nothing here reads a clock.
Mark names are ``{item_id}:{seq}``: unique, so marks echoed after a ``clear`` (Twilio echoes
every pending mark at once) can be recognised and ignored.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from shared.audio import BYTES_PER_MS, FRAME_BYTES

__all__ = ["MARK_EVERY_BYTES", "ItemPlayback", "PlaybackTracker", "mark_item"]

BYTES_PER_S = BYTES_PER_MS * 1000
#: Audio published between two marks of an item, at most (100 ms).
MARK_EVERY_BYTES = 100 * BYTES_PER_MS
MAX_ITEMS = 16  # items remembered per call: the current reply and a few before it


def mark_item(name: str) -> str:
    """The item id a mark name was issued for (ids may themselves contain ``:``)."""
    return name.rpartition(":")[0]


@dataclass
class ItemPlayback:
    """One assistant item's audio: how much was published, and how much was heard when."""

    item_id: str
    response_id: str
    started_at: float  # when its first byte could start playing
    sent_bytes: int = 0
    marked_bytes: int = 0  # sent_bytes at the item's last mark
    echoed_bytes: int = 0
    echoed_at: float | None = None
    audio_done: bool = False  # the server said the item's audio is complete
    interrupted: bool = False  # barge-in: cleared at the caller, truncated on the server
    marks: dict[str, int] = field(default_factory=dict)  # pending mark → bytes heard at its echo

    def heard_bytes(self, now: float) -> int:
        """Bytes heard by ``now``: the last echo, plus real time since, capped by what was sent."""
        base, since = self.echoed_bytes, self.echoed_at
        if since is None:
            base, since = 0, self.started_at
        played = base + round(max(0.0, now - since) * BYTES_PER_S)
        return min(self.sent_bytes, played)

    def heard_ms(self, now: float) -> int:
        return self.heard_bytes(now) // BYTES_PER_MS

    @property
    def sent_ms(self) -> int:
        return self.sent_bytes // BYTES_PER_MS

    @property
    def all_heard(self) -> bool:
        """All its audio was marked and every mark echoed (or it was cut short)."""
        return self.interrupted or (not self.marks and self.marked_bytes == self.sent_bytes)

    def playing(self, now: float) -> bool:
        """Audio of this item is still queued or playing at the caller's end (as best known)."""
        if self.interrupted or self.sent_bytes == 0:
            return False
        return not self.audio_done or bool(self.marks) or self.heard_bytes(now) < self.sent_bytes


class PlaybackTracker:
    """Playback of a call's recent items; ``current`` is the one published last."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, ItemPlayback] = OrderedDict()
        self._seq = 0
        self._stream_ready_at: float | None = None

    @property
    def current(self) -> ItemPlayback | None:
        return next(reversed(self._items.values()), None)

    def get(self, item_id: str) -> ItemPlayback | None:
        return self._items.get(item_id)

    def interrupted(self, item_id: str) -> bool:
        """The caller cut this item short: its late audio must not be played."""
        item = self._items.get(item_id)
        return item is not None and item.interrupted

    def stream_ready(self, now: float) -> None:
        """The caller's stream is attached: audio published before now starts playing now."""
        self._stream_ready_at = now
        for item in self._items.values():
            if item.echoed_at is None:
                item.started_at = now if math.isinf(item.started_at) else max(item.started_at, now)

    def audio_sent(self, item_id: str, response_id: str, size: int, now: float) -> str | None:
        """Note ``size`` bytes published for the item; the name of the mark to follow it when
        one is due (``MARK_EVERY_BYTES`` since the last), else None."""
        item = self._items.get(item_id)
        if item is None:
            # Before the stream is attached, audio waits in Redis: it has not started playing.
            start = now if self._stream_ready_at is not None else math.inf
            item = self._items[item_id] = ItemPlayback(item_id, response_id, start)
            while len(self._items) > MAX_ITEMS:
                self._items.popitem(last=False)
        item.sent_bytes += size
        if item.sent_bytes - item.marked_bytes < MARK_EVERY_BYTES:
            return None
        return self._mark(item)

    def close_item(self, item_id: str) -> str | None:
        """The item's audio is complete (``audio_done``): the name of a mark for what was
        published since its last mark, or None when there is nothing unmarked (or the item is
        unknown or cut)."""
        item = self._items.get(item_id)
        if item is None:
            return None
        item.audio_done = True
        if item.interrupted or item.sent_bytes == item.marked_bytes:
            return None
        return self._mark(item)

    def close_response(self, response_id: str) -> list[str]:
        """``close_item`` for each item of a response that ended (cancelled ones never get
        their audio.done)."""
        items = [i.item_id for i in self._items.values() if i.response_id == response_id]
        return [mark for mark in map(self.close_item, items) if mark is not None]

    def _mark(self, item: ItemPlayback) -> str:
        self._seq += 1
        name = f"{item.item_id}:{self._seq}"
        item.marked_bytes = item.sent_bytes
        # The edge sends whole 20 ms frames, and a mark after a partial one only behind the
        # frame that completes it (with the next audio, or silence at the item's end): so the
        # echo means the caller has heard up to that frame's end. Items start on a frame.
        item.marks[name] = -(-item.sent_bytes // FRAME_BYTES) * FRAME_BYTES
        return name

    def mark_played(self, name: str, now: float) -> ItemPlayback | None:
        """An echoed mark; the item it advanced, or None when it means nothing (unknown, or
        voided by a clear)."""
        item = self._items.get(mark_item(name))
        if item is None or item.interrupted:
            return None
        position = item.marks.pop(name, None)
        if position is None:
            return None
        # Marks are echoed in order, and pending ones are kept in sending order: any still
        # pending before this one was played too. Popping from the front keeps an echo O(1).
        marks = item.marks
        while marks:
            first = next(iter(marks))
            if marks[first] > position:
                break
            del marks[first]
        item.echoed_bytes, item.echoed_at = position, now
        return item

    def all_heard(self) -> bool:
        """Nothing published is still waiting to be played."""
        return all(item.all_heard for item in self._items.values())
