"""A call's bounded inbox (shared/inbox.py): decode, drop what is not its kind, pause the stream
when full and resume it once drained."""

from __future__ import annotations

import asyncio

import pytest

from shared.inbox import INBOX_PAUSE_AT, INBOX_RESUME_AT, Inbox
from shared.messages import (
    ENTRY_FIELD,
    Hangup,
    InboundAudio,
    InboundMessage,
    MarkPlayed,
    OutboundAudio,
    encode,
)

pytestmark = pytest.mark.anyio

GOOD = encode(InboundAudio(b"\xff", 0, 0.0))


class Reader:
    """The FanInReader's side of the contract: subscribe, unsubscribe, resume."""

    def __init__(self) -> None:
        self.sinks: dict[str, object] = {}
        self.resumed: list[str] = []

    def subscribe(self, stream: str, sink: object, start_id: bytes | str = "0-0") -> None:
        self.sinks[stream] = (sink, start_id)

    def unsubscribe(self, stream: str) -> None:
        self.sinks.pop(stream, None)

    def resume(self, stream: str) -> None:
        self.resumed.append(stream)


def _inbox(faults: list[str]) -> tuple[Inbox[InboundMessage], Reader]:
    reader = Reader()
    inbox: Inbox[InboundMessage] = Inbox(
        reader,  # type: ignore[arg-type]
        "in",
        (InboundAudio, MarkPlayed),
        faults.append,
    )
    return inbox, reader


async def test_bad_entries_are_dropped_and_reported_good_ones_queued_in_order() -> None:
    faults: list[str] = []
    inbox, reader = _inbox(faults)
    inbox.open("5-0")
    assert reader.sinks["in"][1] == "5-0"  # type: ignore[index]
    entries: list[tuple[bytes, dict[bytes, bytes]]] = [
        (b"1-0", {ENTRY_FIELD: b"garbage"}),
        (b"2-0", {b"other": GOOD}),
        (b"3-0", {ENTRY_FIELD: encode(Hangup("wrong stream"))}),
        (b"4-0", {ENTRY_FIELD: GOOD}),
        (b"5-0", {ENTRY_FIELD: encode(MarkPlayed("m1"))}),
    ]
    assert inbox._sink(entries) is True
    assert len(faults) == 3 and faults[0].startswith("entry 1-0")
    assert inbox.entry_ids() == [b"4-0", b"5-0"]
    assert await inbox.get() == (b"4-0", InboundAudio(b"\xff", 0, 0.0))
    assert (await inbox.get())[1] == MarkPlayed("m1")
    inbox.close()
    assert reader.sinks == {}


async def test_a_full_inbox_pauses_its_stream_until_drained_to_the_resume_level() -> None:
    inbox, reader = _inbox([])
    many = [(f"{i}-1".encode(), {ENTRY_FIELD: GOOD}) for i in range(INBOX_PAUSE_AT)]
    assert inbox._sink(many) is False
    assert inbox.paused
    for _ in range(INBOX_PAUSE_AT - INBOX_RESUME_AT - 1):
        await inbox.get()
    assert inbox.paused and reader.resumed == []
    await inbox.get()
    assert not inbox.paused and reader.resumed == ["in"]


async def test_get_waits_for_a_delivery_and_hooks_see_each_one() -> None:
    inbox, _ = _inbox([])
    delivered: list[int] = []
    seen: list[InboundMessage] = []
    inbox.on_delivery = lambda: delivered.append(1)
    inbox.on_message = seen.append
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox._sink([(b"7-0", {ENTRY_FIELD: GOOD})])
    assert (await asyncio.wait_for(waiting, 1.0))[0] == b"7-0"
    assert delivered == [1] and seen == [InboundAudio(b"\xff", 0, 0.0)]


async def test_drop_removes_what_the_predicate_picks() -> None:
    inbox: Inbox[OutboundAudio] = Inbox(Reader(), "out", OutboundAudio, lambda _: None)  # type: ignore[arg-type]
    inbox._sink(
        [
            (b"1-0", {ENTRY_FIELD: encode(OutboundAudio(b"a", "item_1", 0.0))}),
            (b"2-0", {ENTRY_FIELD: encode(OutboundAudio(b"b", "item_2", 0.0))}),
        ]
    )
    assert inbox.drop(lambda m: m.item_id == "item_1") == 1
    assert inbox.entry_ids() == [b"2-0"]
