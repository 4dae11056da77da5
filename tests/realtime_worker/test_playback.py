"""Playback bookkeeping and the conversation decisions: pure, no I/O, the clock passed in."""

from __future__ import annotations

import math

import pytest

from services.realtime_worker.playback import (
    MARK_EVERY_BYTES,
    MAX_ITEMS,
    ItemPlayback,
    PlaybackTracker,
    mark_item,
)
from services.realtime_worker.turn_state import (
    Ending,
    EndReason,
    cap_reached,
    decide_barge_in,
    heard_text,
)


def _tracker(ready_at: float = 0.0) -> PlaybackTracker:
    tracker = PlaybackTracker()
    tracker.stream_ready(ready_at)
    return tracker


def _marked(tracker: PlaybackTracker, item_id: str, size: int, now: float) -> str:
    """Publish ``size`` bytes that are due a mark (``MARK_EVERY_BYTES`` or more); its name."""
    mark = tracker.audio_sent(item_id, "resp_1", size, now)
    assert mark is not None
    return mark


def test_mark_names_are_unique_and_name_their_item() -> None:
    tracker = _tracker()
    first = _marked(tracker, "item:a", 800, 0.0)
    second = _marked(tracker, "item:a", 800, 0.0)
    assert first != second
    assert mark_item(first) == mark_item(second) == "item:a"


def test_small_deltas_get_a_mark_every_100_ms_and_one_at_the_end() -> None:
    tracker = _tracker()
    marks = [tracker.audio_sent("item_1", "resp_1", 160, 0.0) for _ in range(12)]  # 12 × 20 ms
    assert MARK_EVERY_BYTES == 800
    assert [i for i, m in enumerate(marks) if m is not None] == [4, 9]  # after 100 and 200 ms
    item = tracker.get("item_1")
    assert item is not None
    assert list(item.marks.values()) == [800, 1600]
    last = tracker.close_item("item_1")  # audio.done: the last 40 ms get their own mark
    assert last is not None and item.marks[last] == 1920
    assert tracker.close_item("item_1") is None  # nothing unmarked any more
    assert tracker.close_item("unknown") is None


def test_an_item_is_not_all_heard_while_audio_is_unmarked() -> None:
    tracker = _tracker()
    mark = _marked(tracker, "item_1", 800, 0.0)
    tracker.audio_sent("item_1", "resp_1", 160, 0.0)
    tracker.mark_played(mark, 0.1)
    assert not tracker.all_heard()  # 20 ms published after the last mark
    # The response was cancelled: no audio.done, but response.done closes its items.
    (closing,) = tracker.close_response("resp_1")
    assert tracker.close_response("resp_1") == []
    tracker.mark_played(closing, 0.2)
    assert tracker.all_heard()


def test_heard_is_interpolated_from_the_first_byte_before_any_echo() -> None:
    tracker = _tracker()
    tracker.audio_sent("item_1", "resp_1", 8000, 10.0)  # 1 s published at t=10
    item = tracker.get("item_1")
    assert item is not None
    assert item.heard_ms(10.0) == 0
    assert item.heard_ms(10.25) == 250
    assert item.heard_ms(12.0) == 1000  # capped by what was sent
    assert item.sent_ms == 1000


def test_an_echo_resets_the_clock_and_marks_are_consumed_in_order() -> None:
    tracker = _tracker()
    marks = [_marked(tracker, "item_1", 1600, 0.0) for _ in range(3)]  # 3 × 200 ms
    item = tracker.get("item_1")
    assert item is not None
    # Playback started late (Twilio was still playing something): the echo says where it is.
    assert tracker.mark_played(marks[0], 0.5) is item
    assert item.heard_ms(0.5) == 200
    assert item.heard_ms(0.6) == 300
    # An echo of the third mark also consumes the second (echoes come in order).
    tracker.mark_played(marks[2], 0.9)
    assert item.marks == {}
    assert item.heard_ms(5.0) == 600
    assert tracker.mark_played(marks[1], 1.0) is None  # already consumed
    assert tracker.mark_played("unknown_item:7", 1.0) is None


def test_a_mark_after_a_partial_frame_is_heard_to_that_frames_end() -> None:
    # 900 bytes: five whole frames and 100 bytes of a sixth. The edge holds those 100 bytes, and
    # the mark behind them, until the next delta completes the frame: the echo comes when the
    # caller has heard 960 bytes, not 900.
    tracker = _tracker()
    mark = _marked(tracker, "item_1", 900, 0.0)
    assert tracker.audio_sent("item_1", "resp_1", 500, 0.0) is None  # not due a mark yet
    item = tracker.get("item_1")
    assert item is not None
    tracker.mark_played(mark, 1.0)
    assert item.heard_bytes(1.0) == 960
    assert item.heard_bytes(1.01) == 1040
    # At the item's end the edge pads the partial frame with silence: heard stops at the audio.
    last = tracker.close_item("item_1")
    assert last is not None
    tracker.mark_played(last, 2.0)
    assert item.heard_bytes(2.0) == item.heard_bytes(3.0) == 1400
    assert tracker.all_heard()


def test_audio_before_the_stream_attaches_starts_playing_when_it_does() -> None:
    tracker = PlaybackTracker()
    tracker.audio_sent("greeting", "resp_1", 8000, 1.0)
    item = tracker.get("greeting")
    assert item is not None
    assert math.isinf(item.started_at)
    assert item.heard_ms(3.0) == 0
    tracker.stream_ready(3.0)
    assert item.heard_ms(3.5) == 500


def test_marks_echoed_after_a_clear_mean_nothing() -> None:
    tracker = _tracker()
    mark = _marked(tracker, "item_1", 1600, 0.0)
    item = tracker.get("item_1")
    assert item is not None
    item.interrupted = True
    assert tracker.mark_played(mark, 0.1) is None
    assert item.all_heard and tracker.all_heard()


def test_all_heard_waits_for_every_mark() -> None:
    tracker = _tracker()
    last = ""
    for _ in range(2):
        last = _marked(tracker, "item_1", 800, 0.0)
    assert not tracker.all_heard()
    tracker.mark_played(last, 0.2)
    assert tracker.all_heard()


def test_playing_until_done_and_heard() -> None:
    item = ItemPlayback("item_1", "resp_1", started_at=0.0)
    assert not item.playing(0.0)  # nothing sent yet
    item.sent_bytes = 800
    assert item.playing(0.05)  # more audio may come
    item.audio_done = True
    assert item.playing(0.05)
    assert not item.playing(0.2)  # all 100 ms played
    item.marks["item_1:1"] = 800
    assert item.playing(0.2)  # its echo has not come back yet


def test_tracker_remembers_a_bounded_number_of_items() -> None:
    tracker = _tracker()
    for i in range(MAX_ITEMS + 5):
        tracker.audio_sent(f"item_{i}", f"resp_{i}", 160, 0.0)
    assert tracker.get("item_0") is None
    current = tracker.current
    assert current is not None and current.item_id == f"item_{MAX_ITEMS + 4}"


# --- barge-in decision ------------------------------------------------------------------------


def _playing(sent_bytes: int = 16_000) -> ItemPlayback:
    return ItemPlayback("item_1", "resp_1", started_at=0.0, sent_bytes=sent_bytes)


def test_barge_in_truncates_at_what_was_heard() -> None:
    decision = decide_barge_in(_playing(), 0.75, enabled=True, min_heard_ms=300)
    assert decision is not None
    assert (decision.item_id, decision.response_id) == ("item_1", "resp_1")
    assert decision.audio_end_ms == 750
    assert decision.generated_ms == 2000


def test_barge_in_needs_the_minimum_heard_time() -> None:
    assert decide_barge_in(_playing(), 0.2, enabled=True, min_heard_ms=300) is None
    assert decide_barge_in(_playing(), 0.3, enabled=True, min_heard_ms=300) is not None


def test_barge_in_off_or_nothing_playing() -> None:
    assert decide_barge_in(_playing(), 1.0, enabled=False, min_heard_ms=0) is None
    assert decide_barge_in(None, 1.0, enabled=True, min_heard_ms=0) is None
    done = _playing(800)
    done.audio_done = True
    assert decide_barge_in(done, 5.0, enabled=True, min_heard_ms=0) is None  # long over
    cut = _playing()
    cut.interrupted = True
    assert decide_barge_in(cut, 0.5, enabled=True, min_heard_ms=0) is None


def test_truncate_point_never_exceeds_the_audio_sent() -> None:
    item = _playing(8_004)  # 1000.5 ms
    item.audio_done, item.marks = False, {"item_1:9": 8_004}
    decision = decide_barge_in(item, 60.0, enabled=True, min_heard_ms=0)
    assert decision is not None
    assert decision.audio_end_ms == 1000
    assert decision.audio_end_ms * 8 <= item.sent_bytes


@pytest.mark.parametrize(
    ("heard", "generated", "expected"),
    [
        (1000, 1000, "one two three four"),
        (500, 1000, "one two …"),
        (0, 1000, ""),
        (100, 0, "one two three four"),
    ],
)
def test_heard_text(heard: int, generated: int, expected: str) -> None:
    assert heard_text("one two three four", heard, generated) == expected


# --- caps and the ending ----------------------------------------------------------------------


def test_caps() -> None:
    assert cap_reached(100.0, 10**6, max_duration_s=0, max_tokens=0) is None
    assert cap_reached(20.0, 0, max_duration_s=20, max_tokens=0) is EndReason.MAX_DURATION
    assert cap_reached(19.9, 0, max_duration_s=20, max_tokens=0) is None
    assert cap_reached(1.0, 500, max_duration_s=20, max_tokens=500) is EndReason.MAX_TOKENS
    assert cap_reached(1.0, 499, max_duration_s=20, max_tokens=500) is None


def test_ending_waits_for_the_goodbye_to_be_done_and_heard_or_the_deadline() -> None:
    ending = Ending(EndReason.MODEL, deadline=30.0, goodbye_pending=True)
    assert not ending.ready(response_active=False, all_heard=True, now=1.0)
    ending.goodbye_pending = False
    assert not ending.ready(response_active=True, all_heard=True, now=1.0)
    assert not ending.ready(response_active=False, all_heard=False, now=1.0)
    assert ending.ready(response_active=False, all_heard=True, now=1.0)
    assert Ending(EndReason.MAX_TOKENS, 30.0, True).ready(
        response_active=True, all_heard=False, now=30.0
    )


def test_a_stream_attached_again_restarts_only_the_items_no_echo_has_placed() -> None:
    tracker = _tracker()
    mark = _marked(tracker, "item_1", 800, 0.0)  # 100 ms, then its mark…
    tracker.audio_sent("item_1", "resp_1", 8000, 0.0)  # … and 1 s more
    tracker.audio_sent("item_2", "resp_2", 8000, 0.0)  # 1 s, no echo yet
    item_1, item_2 = tracker.get("item_1"), tracker.get("item_2")
    assert item_1 is not None and item_2 is not None
    tracker.mark_played(mark, 0.5)
    tracker.stream_ready(2.0)  # the stream came back (another edge)
    assert item_2.heard_ms(2.25) == 250  # played from the new stream's start
    assert item_1.heard_ms(1.0) == 100 + 500  # still placed by its echo at 0.5 s
