"""The conversation load's listener: Twilio's player as the bench models it, and the byte
stream read back into the model's deltas however the bridge cut and joined them."""

from __future__ import annotations

import pytest

from services.bench.ear import Listener, Playout
from services.realtime_sim.stamps import reply_unit
from shared.audio import FRAME_BYTES

NS = 1_000_000_000


def _units(call: int, response: int, sizes: list[int], sent_ns: int = 5 * NS) -> list[bytes]:
    return [reply_unit(call, response, i, size, sent_ns + i) for i, size in enumerate(sizes)]


def _frames(stream: bytes) -> list[bytes]:
    """As the edge sends them: whole 20 ms frames, the last one padded with silence."""
    padded = stream + b"\xff" * (-len(stream) % FRAME_BYTES)
    return [padded[i : i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES)]


def test_marks_come_back_when_playback_reaches_them_and_all_at_a_clear() -> None:
    play = Playout()
    assert play.mark("idle", 1.0) == ["idle"]  # nothing queued: at once
    play.audio(800, 1.0)  # 100 ms
    assert play.playing(1.05) and play.queued_s(1.05) == pytest.approx(0.05)
    assert play.mark("a", 1.0) == []
    play.audio(800, 1.0)
    assert play.mark("b", 1.0) == []
    assert play.due(1.05) == [] and play.due(1.1) == ["a"]
    assert play.clear(1.15) == ["b"]
    assert not play.playing(1.15) and play.due(5.0) == []


@pytest.mark.parametrize("cut", ["whole deltas", "edge frames", "odd pieces"])
def test_units_read_back_exactly_however_the_stream_is_cut(cut: str) -> None:
    stream = b"".join(_units(3, 1, [801, 2000, 4000, 999]))
    pieces = {
        "whole deltas": _units(3, 1, [801, 2000, 4000, 999]),
        "edge frames": _frames(stream),
        "odd pieces": [stream[i : i + 7] for i in range(0, len(stream), 7)],
    }[cut]
    ear = Listener(3)
    started = [ear.feed(piece, 6 * NS) for piece in pieces]
    assert started.count(1) == 1 and set(started) == {1, None}  # the reply began once
    heard = ear.replies[1]
    assert (heard.units, heard.gaps, heard.cut) == (4, 0, False)
    assert ear.not_exact == ear.garbled == ear.stale == 0
    assert [got - sent for sent, got in ear.latencies] == [NS, NS - 1, NS - 2, NS - 3]


def test_an_altered_byte_a_lost_delta_and_a_repeat_are_counted() -> None:
    units = _units(0, 1, [900, 900, 900, 900])
    bad = bytearray(units[0])
    bad[500] ^= 0x20
    ear = Listener(0)
    for piece in (bytes(bad), units[1], units[3], units[3]):
        ear.feed(piece, 6 * NS)
    assert ear.not_exact == 2  # the altered one and the repeat
    assert ear.replies[1].gaps == 1  # unit 2 never came


def test_a_clear_cuts_the_reply_and_what_follows_of_it_is_stale() -> None:
    units = _units(1, 1, [1600, 1600])
    ear, play = Listener(1), Playout()
    ear.feed(units[0][:1000], 6 * NS)
    play.audio(1000, 6.0)  # 125 ms queued
    ear.clear(play, 6.05)
    heard = ear.replies[1]
    assert heard.cut and heard.played_ms_at_clear == pytest.approx(50.0)
    ear.feed(units[1], 6 * NS)  # the cleared reply's next delta, after the clear
    assert ear.stale == 1600 and ear.not_exact == 0
    ear.feed(reply_unit(1, 2, 0, 800, 0), 6 * NS)
    assert ear.replies[2].units == 1 and not ear.replies[2].cut


def test_garbage_is_skipped_to_the_next_unit() -> None:
    ear = Listener(2)
    unit = reply_unit(2, 1, 0, 800, 0)
    ear.feed(b"\x01\x02\x03" * 20 + unit, 0)
    assert ear.garbled == 60 and ear.replies[1].units == 1
    ear.feed(reply_unit(9, 1, 1, 800, 0), 0)  # another call's audio
    assert ear.garbled > 60 and ear.replies[1].units == 1


def test_a_clear_with_nothing_playing_cuts_nothing() -> None:
    ear, play = Listener(0), Playout()
    ear.feed(reply_unit(0, 1, 0, 800, 0), 0)
    play.audio(800, 1.0)
    ear.clear(play, 9.0)  # long played out
    assert not ear.replies[1].cut
