"""Twilio's playout buffer (shared/playout.py), on an injected clock (ms)."""

from __future__ import annotations

import pytest

from shared.playout import Playback, Played

FRAME = bytes(range(160))  # 20 ms


def test_audio_plays_at_8_bytes_per_ms_and_marks_echo_when_reached() -> None:
    playback = Playback(0.0)
    assert playback.add_audio(FRAME, 0.0) == []
    assert playback.add_mark("a", 0.0) == []
    assert playback.add_audio(FRAME, 1.0) == []
    assert playback.add_mark("b", 1.0) == []
    assert playback.next_mark_due() == pytest.approx(20.0)
    assert playback.advance(19.875) == []  # one byte short of the first frame
    assert playback.heard == FRAME[:159]
    assert playback.advance(20.0) == ["a"]
    assert playback.next_mark_due() == pytest.approx(40.0)
    assert playback.advance(39.9) == []
    assert playback.advance(40.0) == ["b"]
    assert playback.heard == FRAME + FRAME
    assert playback.queued_bytes == 0


def test_a_mark_with_nothing_queued_is_echoed_at_once() -> None:
    playback = Playback(0.0)
    assert playback.add_mark("now", 5.0) == ["now"]
    assert playback.next_mark_due() is None


def test_gaps_are_not_filled_and_idle_time_is_not_banked() -> None:
    playback = Playback(0.0)
    playback.add_audio(FRAME, 0.0)
    playback.advance(1000.0)  # long idle after the frame played
    playback.add_audio(b"\x01" * 80, 1000.0)
    playback.add_mark("m", 1000.0)
    # The new audio starts when it arrives: 10 ms later, not at once.
    assert playback.advance(1005.0) == []
    assert playback.heard == FRAME + b"\x01" * 40
    assert playback.advance(1010.0) == ["m"]
    assert playback.heard == FRAME + b"\x01" * 80


def test_clear_drops_queued_audio_and_echoes_pending_marks_in_order() -> None:
    playback = Playback(0.0)
    for name in ("x", "y"):
        playback.add_audio(FRAME, 0.0)
        playback.add_mark(name, 0.0)
    assert playback.advance(10.0) == []
    assert playback.clear(10.0) == ["x", "y"]
    assert playback.heard == FRAME[:80]
    assert playback.queued_bytes == 0 and playback.pending_marks == []
    # After a clear, new audio plays from scratch.
    playback.add_audio(b"\x02" * 8, 10.0)
    assert playback.add_mark("z", 10.0) == []
    assert playback.advance(11.0) == ["z"]
    assert playback.heard == FRAME[:80] + b"\x02" * 8


def test_marks_reached_inside_one_advance_come_out_together_in_order() -> None:
    playback = Playback(0.0)
    for index in range(3):
        playback.add_audio(FRAME, 0.0)
        playback.add_mark(f"m{index}", 0.0)
    assert playback.drained_at() == pytest.approx(60.0)
    assert playback.advance(100.0) == ["m0", "m1", "m2"]


def test_the_clock_cannot_go_back() -> None:
    playback = Playback(10.0)
    with pytest.raises(ValueError, match="went back"):
        playback.advance(9.0)


def test_take_played_hands_over_what_finished_playing_and_forgets_it() -> None:
    playback = Playback(0.0)
    playback.add_audio(FRAME, 0.0)
    playback.advance(10.0)  # half the frame played
    assert playback.take_played(5.0) == [Played(0.0, FRAME[:40])]
    assert playback.heard == FRAME[40:80]  # played, not yet handed over
    assert playback.take_played(100.0) == [Played(5.0, FRAME[40:80])]  # no further than now
    assert playback.heard == b""
    playback.advance(30.0)
    # The segment still playing went on; the rest of the frame is logged where it played.
    assert playback.log == [Played(10.0, FRAME[80:])]
    assert playback.take_played(30.0) == [Played(10.0, FRAME[80:])]
    assert playback.take_played(30.0) == []


def test_take_played_splits_across_segments_and_keeps_the_order() -> None:
    playback = Playback(0.0)
    playback.add_audio(FRAME, 0.0)
    playback.advance(50.0)  # played by 20, then idle
    playback.add_audio(b"\x01" * 80, 50.0)
    playback.advance(60.0)
    assert playback.take_played(55.0) == [Played(0.0, FRAME), Played(50.0, b"\x01" * 40)]
    assert playback.clear(60.0) == []
    assert playback.take_played(60.0) == [Played(55.0, b"\x01" * 40)]
    # After everything was handed over and cleared, new audio is a new segment.
    playback.add_audio(b"\x02" * 8, 70.0)
    playback.advance(71.0)
    assert playback.log == [Played(70.0, b"\x02" * 8)]
