"""A call's conversation turns in conversation order, sans I/O.

Turns are what a new Realtime session is seeded with (after a rollover, a reconnect or a
takeover), and what the call record and the read API show. They must read in the order the
conversation happened, not in the order their text arrived: the caller's transcript is
produced asynchronously and may arrive after the model's reply to it (docs/protocols.md §3.5).

So each turn gets its place when its item enters the conversation — the caller's audio when it
is committed (after the item it follows), a reply when the response adds its item — and its text
when the text is known. Until then the place is held (a *pending* slot) and nothing is stored
for it. Filling a slot after later turns were already stored asks for the stored list to be
rewritten; filling the last one only for an append.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.keys import TURNS_MAX
from shared.records import Turn

__all__ = ["NOT_TRANSCRIBED", "Append", "Rewrite", "Transcript", "Write"]

#: The text kept for a caller turn whose transcription failed: the seeding and the record still
#: show that the caller spoke there.
NOT_TRANSCRIBED = "[the caller's words could not be transcribed]"


@dataclass(frozen=True, slots=True)
class Append:
    """Store ``turn`` after the turns already stored."""

    turn: Turn


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Replace the stored turns with ``turns`` (a turn landed before stored ones, or changed)."""

    turns: list[Turn]


Write = Append | Rewrite | None


@dataclass
class _Slot:
    role: str
    item_id: str | None  # None: a turn carried over from an earlier session or worker
    at_ms: int
    text: str | None = None  # None while the text is pending
    stored: bool = False


class Transcript:
    """The turns of one call; at most ``TURNS_MAX`` slots are kept (the oldest drop out)."""

    def __init__(self, turns: Iterable[Turn] = ()) -> None:
        self._slots = [_Slot(t.role, None, t.at_ms, t.text, stored=True) for t in turns]
        self._trim()

    def turns(self) -> list[Turn]:
        """The turns whose text is known, in conversation order."""
        return [Turn(s.role, s.text, s.at_ms) for s in self._slots if s.text is not None]

    def pending(self) -> int:
        return sum(1 for s in self._slots if s.text is None)

    def text_of(self, item_id: str) -> str | None:
        """The known text of item ``item_id``'s turn, if it has one."""
        index = self._index(item_id)
        return None if index is None else self._slots[index].text

    # --- places -----------------------------------------------------------------------------

    def user_spoke(self, item_id: str, previous_item_id: str | None, at_ms: int) -> None:
        """The caller's audio became item ``item_id``, placed after ``previous_item_id``."""
        slot = _Slot("user", item_id, at_ms)
        index = self._index(previous_item_id) if previous_item_id else None
        if index is None:
            self._slots.append(slot)
        else:
            self._slots.insert(index + 1, slot)
        self._trim()

    def assistant_started(self, item_id: str, at_ms: int) -> None:
        """A response added reply item ``item_id`` (at the end of the conversation)."""
        if self._index(item_id) is None:
            self._slots.append(_Slot("assistant", item_id, at_ms))
            self._trim()

    # --- texts --------------------------------------------------------------------------------

    def fill(self, item_id: str | None, role: str, text: str, at_ms: int) -> Write:
        """The text of a turn: in its slot when ``item_id`` has one, else as a new last turn.
        Empty text removes the slot. Returns what to store."""
        index = self._index(item_id) if item_id else None
        if index is None:
            if not text:
                return None
            self._slots.append(_Slot(role, item_id, at_ms, text))
            self._trim()
            index = len(self._slots) - 1
        else:
            slot = self._slots[index]
            if not text:
                del self._slots[index]
                return self._rewrite() if slot.stored else None
            was_stored = slot.stored
            slot.text = text
            if was_stored:
                return self._rewrite()
        return self._store(index)

    def transcription_failed(self, item_id: str) -> Write:
        """The caller's words of ``item_id`` could not be transcribed."""
        if self._index(item_id) is None:
            return None
        return self.fill(item_id, "user", NOT_TRANSCRIBED, 0)

    def abandon_pending(self, role: str) -> Write:
        """Slots of ``role`` still pending when their session is gone: their text will never
        come. Caller turns keep their place, marked as not transcribed; replies are dropped."""
        changed = False
        for slot in list(self._slots):
            if slot.role != role or slot.text is not None:
                continue
            if role == "user":
                slot.text = NOT_TRANSCRIBED
                changed = True
            else:
                self._slots.remove(slot)
        return self._rewrite() if changed else None

    def amend(self, item_id: str, text: str) -> Write:
        """A stored reply the caller cut short: keep only what was heard (empty: drop it)."""
        index = self._index(item_id)
        if index is None or self._slots[index].text is None:
            return None
        return self.fill(item_id, self._slots[index].role, text, self._slots[index].at_ms)

    # --- storing ------------------------------------------------------------------------------

    def _store(self, index: int) -> Write:
        """The slot at ``index`` just got its text: append it, or rewrite when a turn after it
        is stored already."""
        later_stored = any(s.stored for s in self._slots[index + 1 :])
        self._slots[index].stored = True
        if later_stored:
            return self._rewrite()
        slot = self._slots[index]
        assert slot.text is not None
        return Append(Turn(slot.role, slot.text, slot.at_ms))

    def _rewrite(self) -> Rewrite:
        for slot in self._slots:
            slot.stored = slot.text is not None
        return Rewrite(self.turns())

    def _index(self, item_id: str | None) -> int | None:
        for index in range(len(self._slots) - 1, -1, -1):
            if self._slots[index].item_id == item_id:
                return index
        return None

    def _trim(self) -> None:
        if len(self._slots) > TURNS_MAX:
            del self._slots[: len(self._slots) - TURNS_MAX]
