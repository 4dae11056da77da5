"""Turns in conversation order, whatever order their texts arrive in (transcript.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.realtime_worker.transcript import (
    NOT_TRANSCRIBED,
    Append,
    Rewrite,
    Transcript,
    Write,
)
from shared.keys import TURNS_MAX
from shared.records import Turn


def roles_texts(turns: list[Turn]) -> list[tuple[str, str]]:
    return [(t.role, t.text) for t in turns]


class Store:
    """What Redis holds after applying each write, as the call session does."""

    def __init__(self, turns: list[Turn] | None = None) -> None:
        self.turns = list(turns or [])

    def apply(self, write: Write) -> None:
        if isinstance(write, Append):
            self.turns.append(write.turn)
        elif isinstance(write, Rewrite):
            self.turns = list(write.turns)


def test_in_order_texts_are_appended() -> None:
    t, store = Transcript(), Store()
    t.user_spoke("u1", None, 1)
    store.apply(w := t.fill("u1", "user", "Hello?", 2))
    assert w == Append(Turn("user", "Hello?", 1))
    t.assistant_started("a1", 3)
    store.apply(w := t.fill("a1", "assistant", "Hi there.", 4))
    assert isinstance(w, Append)
    assert roles_texts(store.turns) == [("user", "Hello?"), ("assistant", "Hi there.")]


def test_a_late_caller_transcript_lands_before_the_reply_to_it() -> None:
    t, store = Transcript(), Store()
    t.user_spoke("u1", None, 1)
    t.assistant_started("a1", 2)
    store.apply(t.fill("a1", "assistant", "We open at nine.", 5))
    assert t.pending() == 1
    store.apply(w := t.fill("u1", "user", "When do you open?", 6))
    assert isinstance(w, Rewrite)
    expected = [("user", "When do you open?"), ("assistant", "We open at nine.")]
    assert roles_texts(store.turns) == expected == roles_texts(t.turns())
    assert [turn.at_ms for turn in store.turns] == [1, 2]  # when each entered the conversation


def test_a_caller_interrupting_a_reply_comes_after_it() -> None:
    t, store = Transcript(), Store()
    t.assistant_started("a1", 1)
    t.user_spoke("u2", "a1", 2)  # the barge-in, committed while the reply was in progress
    store.apply(t.fill("u2", "user", "Wait, stop.", 3))
    store.apply(t.fill("a1", "assistant", "Our hours are …", 4))
    assert roles_texts(store.turns) == [("assistant", "Our hours are …"), ("user", "Wait, stop.")]


def test_previous_item_id_places_an_item_after_it() -> None:
    t = Transcript()
    t.user_spoke("u1", None, 1)
    t.assistant_started("a1", 2)
    t.user_spoke("u0", "u1", 3)  # the server inserted it after u1, not at the end
    for item, role, text in (("u1", "user", "one"), ("a1", "assistant", "two")):
        t.fill(item, role, text, 9)
    t.fill("u0", "user", "one and a half", 9)
    assert [turn.text for turn in t.turns()] == ["one", "one and a half", "two"]


def test_a_failed_transcription_keeps_the_callers_place() -> None:
    t, store = Transcript(), Store()
    t.user_spoke("u1", None, 1)
    t.assistant_started("a1", 2)
    store.apply(t.fill("a1", "assistant", "Sorry?", 3))
    store.apply(t.transcription_failed("u1"))
    assert roles_texts(store.turns) == [("user", NOT_TRANSCRIBED), ("assistant", "Sorry?")]
    assert t.transcription_failed("nobody") is None


def test_texts_that_never_come_are_given_up_when_the_session_goes() -> None:
    t, store = Transcript(), Store()
    t.user_spoke("u1", None, 1)
    t.assistant_started("a1", 2)
    store.apply(t.abandon_pending("assistant"))
    assert t.pending() == 1
    store.apply(t.abandon_pending("user"))
    assert t.pending() == 0
    assert roles_texts(store.turns) == [("user", NOT_TRANSCRIBED)]


def test_empty_text_drops_the_slot_and_an_amended_reply_is_rewritten() -> None:
    t, store = Transcript([Turn("user", "Hi", 0)]), Store([Turn("user", "Hi", 0)])
    t.assistant_started("a1", 1)
    assert t.fill("a1", "assistant", "", 2) is None
    assert t.pending() == 0
    t.assistant_started("a2", 3)
    store.apply(t.fill("a2", "assistant", "one two three four", 4))
    store.apply(w := t.amend("a2", "one two …"))
    assert isinstance(w, Rewrite)
    assert [turn.text for turn in store.turns] == ["Hi", "one two …"]
    store.apply(t.amend("a2", ""))
    assert [turn.text for turn in store.turns] == ["Hi"]
    assert t.amend("a9", "x") is None


def test_no_more_than_turns_max_are_kept() -> None:
    t = Transcript()
    for i in range(TURNS_MAX + 5):
        t.fill(None, "user", f"turn {i}", i)
    turns = t.turns()
    assert len(turns) == TURNS_MAX and turns[-1].text == f"turn {TURNS_MAX + 4}"


@given(st.permutations(range(6)))
def test_whatever_order_the_texts_arrive_in_the_store_reads_in_conversation_order(
    order: list[int],
) -> None:
    t, store = Transcript(), Store()
    items = [(f"i{n}", "user" if n % 2 == 0 else "assistant") for n in range(6)]
    for n, (item, role) in enumerate(items):
        if role == "user":
            t.user_spoke(item, items[n - 1][0] if n else None, n)
        else:
            t.assistant_started(item, n)
    for n in order:
        item, role = items[n]
        store.apply(t.fill(item, role, f"text {n}", 100))
    assert [turn.text for turn in store.turns] == [f"text {n}" for n in range(6)]


def test_a_reply_started_twice_keeps_its_one_place() -> None:
    t = Transcript()
    t.assistant_started("a1", 1)
    t.user_spoke("u1", "a1", 2)
    t.assistant_started("a1", 3)  # the item again: not a second reply at the end
    t.fill("u1", "user", "Stop.", 4)
    t.fill("a1", "assistant", "Our hours …", 5)
    assert roles_texts(t.turns()) == [("assistant", "Our hours …"), ("user", "Stop.")]
    assert [turn.at_ms for turn in t.turns()] == [1, 2]
