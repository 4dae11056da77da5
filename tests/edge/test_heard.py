"""What the caller said and heard, placed in time (services/edge/heard.py): pure, on a clock
the tests set. The last tests play Twilio's side with the simulator's buffer model and known
delays, and compare."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest

from services.edge.heard import (
    COMMIT_DELAY_MS,
    LAG_TOLERANCE_MS,
    MAX_SKEW_MS,
    Piece,
    StreamHeard,
    Taken,
)
from shared.playout import Playback, Played

FRAME = bytes(range(160))  # 20 ms
T0 = 1000.0  # the caller's clock (ms) when the stream attached


def joined(pieces: list[Piece]) -> bytes:
    return b"".join(piece.audio for piece in pieces)


def take_all(heard: StreamHeard, now_ms: float) -> Taken:
    return heard.take(now_ms, final=True)


# --- the caller's channel -------------------------------------------------------------------


def test_caller_frames_are_placed_at_their_timestamps_and_contiguous_ones_merged() -> None:
    heard = StreamHeard(T0)
    for index in range(3):
        assert heard.caller_audio(index * 20, FRAME, T0 + index * 20 + 3)
    heard.caller_audio(100, b"\x01" * 160, T0 + 104)  # a gap: two frames never came
    taken = heard.take(T0 + 120)
    assert taken.left == [Piece(0, FRAME * 3), Piece(800, b"\x01" * 160)]
    assert heard.take(T0 + 140).left == []  # handed over once
    assert heard.stats.left_bytes == 640


def test_a_late_frame_goes_where_its_timestamp_says() -> None:
    heard = StreamHeard(T0)
    heard.caller_audio(0, FRAME, T0)
    heard.caller_audio(40, b"\x02" * 160, T0 + 40)
    heard.caller_audio(20, b"\x01" * 160, T0 + 61)  # out of order
    assert heard.take(T0 + 70).left == [
        Piece(0, FRAME),
        Piece(320, b"\x02" * 160),
        Piece(160, b"\x01" * 160),
    ]


def test_the_stream_origin_is_the_smallest_arrival_minus_timestamp() -> None:
    heard = StreamHeard(T0)
    assert heard.origin_ms == T0  # before any frame: the attach
    heard.caller_audio(0, FRAME, T0 + 30)  # the first frame waited behind the attach
    heard.caller_audio(20, FRAME, T0 + 35)
    heard.caller_audio(40, FRAME, T0 + 45)
    heard.caller_audio(60, FRAME, T0 + 62)  # the smallest delay: 2 ms
    heard.caller_audio(80, FRAME, T0 + 90)
    assert heard.origin_ms == pytest.approx(T0 + 2)
    heard = StreamHeard(T0)
    heard.caller_audio(100, FRAME, T0 + 40)  # the edge attached 60 ms after timestamp 0
    assert heard.origin_ms == pytest.approx(T0 - 60)


def test_frames_with_implausible_timestamps_are_left_out_so_gaps_stay_bounded() -> None:
    heard = StreamHeard(T0)
    heard.caller_audio(0, FRAME, T0)
    assert not heard.caller_audio(int(MAX_SKEW_MS) + 10_000, FRAME, T0 + 20)  # far ahead
    assert not heard.caller_audio(999_999_999_999_999, FRAME, T0 + 40)
    heard.caller_audio(int(MAX_SKEW_MS) + 40, FRAME, T0 + MAX_SKEW_MS + 40)
    assert not heard.caller_audio(0, FRAME, T0 + 2 * MAX_SKEW_MS + 100)  # far behind
    taken = heard.take(T0 + 2 * MAX_SKEW_MS + 120)
    assert [piece.at for piece in taken.left] == [0, int(MAX_SKEW_MS + 40) * 8]
    assert heard.stats.skewed_frames == 3
    assert heard.origin_ms == pytest.approx(T0)  # the bogus ones moved nothing


# --- the heard channel ----------------------------------------------------------------------


def test_audio_plays_from_when_it_is_sent_and_is_handed_over_after_the_commit_delay() -> None:
    heard = StreamHeard(T0)
    heard.sent_audio(FRAME, T0 + 100)
    heard.sent_audio(FRAME, T0 + 101)  # queued behind the first
    assert heard.take(T0 + 130).right == []  # played, but a clear could still come first
    taken = heard.take(T0 + 140 + COMMIT_DELAY_MS)
    assert taken.right == [Piece(100 * 8, FRAME * 2)]
    assert heard.stats.right_bytes == 320


def test_a_gap_in_what_was_sent_is_a_gap_in_what_was_heard() -> None:
    heard = StreamHeard(T0)
    heard.sent_audio(FRAME, T0)
    heard.sent_audio(b"\x01" * 160, T0 + 50)  # the buffer ran dry at 20 ms
    assert take_all(heard, T0 + 100).right == [Piece(0, FRAME), Piece(400, b"\x01" * 160)]


def test_mark_echoes_measure_the_lag_and_the_smallest_recent_one_places_the_audio() -> None:
    heard = StreamHeard(T0)
    for index in range(5):
        heard.sent_audio(FRAME, T0)
        heard.sent_mark(f"m{index}", T0)  # reached after (index + 1) × 20 ms
    heard.mark_echoed("m0", T0 + 20 + 45)  # late: a busy loop
    heard.mark_echoed("m1", T0 + 40 + 30)  # Twilio plays 30 ms after the mirror
    heard.mark_echoed("m2", T0 + 60 + 38)
    taken = take_all(heard, T0 + 200)
    assert taken.right == [Piece(30 * 8, FRAME * 5)]
    assert heard.stats.lag_ms == 30 and heard.stats.echoes == 3


def test_an_unknown_mark_or_one_voided_by_a_clear_measures_nothing() -> None:
    heard = StreamHeard(T0)
    heard.sent_audio(FRAME * 10, T0)
    heard.sent_mark("end", T0)
    heard.mark_echoed("never-sent", T0 + 5)
    assert heard.cleared(T0 + 50) == 1600 - 50 * 8
    heard.mark_echoed("end", T0 + 52)  # Twilio echoes pending marks at once after a clear
    assert heard.stats.echoes == 0
    assert take_all(heard, T0 + 100).right == [Piece(0, (FRAME * 10)[:400])]


def test_a_lost_echo_is_passed_by_the_next_one() -> None:
    heard = StreamHeard(T0)
    for name in ("a", "b", "c"):
        heard.sent_audio(FRAME, T0)
        heard.sent_mark(name, T0)
    heard.mark_echoed("b", T0 + 50)  # a's echo never came
    heard.mark_echoed("a", T0 + 51)  # a straggler: already passed
    heard.mark_echoed("c", T0 + 70)
    assert heard.stats.echoes == 2 and heard.stats.lag_ms == 0  # not placed yet
    take_all(heard, T0 + 100)
    assert heard.stats.lag_ms == 10


def test_clear_cuts_at_the_mirror_position_when_it_was_sent_and_nothing_after_plays() -> None:
    heard = StreamHeard(T0)
    reply = bytes(range(256)) * 10  # 320 ms
    heard.sent_audio(reply, T0)
    assert heard.cleared(T0 + 123.5) == len(reply) - 988
    heard.sent_audio(b"\x07" * 160, T0 + 400)  # the next reply
    taken = take_all(heard, T0 + 1000)
    assert taken.right == [Piece(0, reply[:988]), Piece(400 * 8, b"\x07" * 160)]
    assert heard.stats.unplayed_bytes == len(reply) - 988 and heard.stats.clears == 1


def test_echo_jitter_puts_no_gap_into_continuous_playback() -> None:
    heard = StreamHeard(T0)
    for index in range(10):  # 2 s sent at once, a mark every 200 ms
        heard.sent_audio(FRAME * 10, T0)
        heard.sent_mark(f"m{index}", T0)
    pieces: list[Piece] = []
    heard.mark_echoed("m0", T0 + 200 + 18)
    pieces += heard.take(T0 + 700).right  # placed with 18 ms
    heard.mark_echoed("m1", T0 + 400 + 12)
    heard.mark_echoed("m2", T0 + 600 + 25)
    pieces += heard.take(T0 + 1100).right  # 12 ms now: within the tolerance of 18
    heard.mark_echoed("m3", T0 + 800 + 5)
    pieces += take_all(heard, T0 + 3000).right
    assert joined(pieces) == FRAME * 100
    assert pieces[0].at == 18 * 8
    assert all(a.end == b.at for a, b in itertools.pairwise(pieces))  # one stretch, no holes
    assert heard.stats.lag_ms == 18


def test_a_lag_change_beyond_the_tolerance_moves_the_rest_of_the_stretch() -> None:
    heard = StreamHeard(T0)
    heard.sent_audio(FRAME * 100, T0)  # 2 s, sent at once
    first = heard.take(T0 + COMMIT_DELAY_MS + 500).right  # 500 ms played, lag 0 so far
    assert first == [Piece(0, (FRAME * 100)[:4000])]
    for step in range(8):  # Twilio fell behind: every echo now says 200 ms
        heard.sent_mark(f"m{step}", T0 + 2000 + step)
        heard.mark_echoed(f"m{step}", T0 + 2200 + step)
    rest = take_all(heard, T0 + 3000).right
    assert rest == [Piece(4000 + 200 * 8, (FRAME * 100)[4000:])]
    assert 200 > LAG_TOLERANCE_MS


def test_nothing_is_placed_over_what_is_already_placed() -> None:
    heard = StreamHeard(T0)
    heard.sent_audio(FRAME, T0)
    heard.sent_mark("a", T0)
    heard.sent_audio(b"\x01" * 160, T0 + 30)  # another stretch, 10 ms after the first
    heard.mark_echoed("a", T0 + 120)  # 100 ms of lag
    assert heard.take(T0 + 525).right == [Piece(800, FRAME)]
    for index in range(8):  # then the lag is gone
        heard.sent_mark(f"idle{index}", T0 + 530 + index)
        heard.mark_echoed(f"idle{index}", T0 + 530 + index)
    # At 30 ms + 0 lag it would overlap the first stretch: it follows it instead.
    assert take_all(heard, T0 + 600).right == [Piece(960, b"\x01" * 160)]


def test_the_end_hands_over_what_played_and_counts_what_never_did() -> None:
    heard = StreamHeard(T0)
    heard.caller_audio(0, FRAME, T0)
    heard.sent_audio(FRAME * 5, T0)
    taken = take_all(heard, T0 + 50)
    assert taken.left == [Piece(0, FRAME)]
    assert taken.right == [Piece(0, (FRAME * 5)[:400])]
    assert heard.stats.unplayed_bytes == 400
    assert heard.take(T0 + 500, final=True).empty


# --- against Twilio's buffer, with known delays ---------------------------------------------


@dataclass
class Line:
    """Twilio (the simulator's buffer, on stream time) and the edge: media and marks reach
    Twilio ``d_out`` ms after the edge sent them, caller frames reach the edge ``d_in`` ms after
    their timestamp and echoes ``d_echo`` ms after Twilio played their mark (default
    ``d_in``). The edge attached ``attach`` ms after timestamp 0 and takes every 500 ms."""

    d_out: float
    d_in: float
    d_echo: float | None = None
    attach: float = 5.0
    twilio: Playback = field(default_factory=lambda: Playback(0.0))
    events: list[tuple[float, int, Callable[[], object]]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    taken: list[Taken] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.heard = StreamHeard(T0 + self.attach)

    def at(self, when: float, action: Callable[[], object]) -> None:
        heapq.heappush(self.events, (when, next(self.counter), action))

    def echo(self, names: list[str], when: float) -> None:
        arrival = when + (self.d_in if self.d_echo is None else self.d_echo)
        for name in names:
            self.at(arrival, partial(self.heard.mark_echoed, name, T0 + arrival))

    def send(self, when: float, audio: bytes, mark: str | None = None) -> None:
        """The edge sends a frame (and a mark after it) at ``when``."""

        def edge() -> None:
            self.heard.sent_audio(audio, T0 + when)
            if mark:
                self.heard.sent_mark(mark, T0 + when)

        def twilio(arrival: float = when + self.d_out) -> None:
            self.echo(self.twilio.add_audio(audio, arrival), arrival)
            if mark:
                self.echo(self.twilio.add_mark(mark, arrival), arrival)

        self.at(when, edge)
        self.at(when + self.d_out, twilio)

    def clear(self, when: float) -> None:
        self.at(when, lambda: self.heard.cleared(T0 + when))
        arrival = when + self.d_out
        self.at(arrival, lambda: self.echo(self.twilio.clear(arrival), arrival))

    def caller(self, until_ms: float) -> None:
        for ts in range(0, int(until_ms), 20):
            arrival = max(ts + self.d_in, self.attach)  # handled once the stream attached
            self.at(arrival, partial(self.heard.caller_audio, ts, FRAME, T0 + arrival))

    def _take(self, now_ms: float) -> None:
        self.taken.append(self.heard.take(now_ms))

    def run(self, until_ms: float) -> tuple[list[Piece], list[Piece]]:
        """Play it all out; the pieces each channel was handed over, in order."""
        for every in range(500, int(until_ms), 500):
            self.at(every, partial(self._take, T0 + every))
        while self.events:
            due = self.twilio.next_mark_due()
            if due is not None and due < self.events[0][0]:
                self.echo(self.twilio.advance(due), due)
                continue
            when, _, action = heapq.heappop(self.events)
            if when > until_ms:
                break
            action()
        self.twilio.advance(until_ms)
        self.taken.append(take_all(self.heard, T0 + until_ms))
        return (
            [piece for taken in self.taken for piece in taken.left],
            [piece for taken in self.taken for piece in taken.right],
        )


def reply(line: Line, start_ms: float, frames: int, tag: int, pace_ms: float = 0.0) -> bytes:
    """A reply of ``frames`` frames, a mark every five, sent from ``start_ms`` (``pace_ms``
    apart: 0 is a burst, as the model sends)."""
    audio = b""
    for index in range(frames):
        frame = bytes([tag, index % 256]) * 80
        mark = f"r{tag}:{index}" if index % 5 == 4 or index == frames - 1 else None
        line.send(start_ms + index * pace_ms, frame, mark)
        audio += frame
    return audio


def placed(pieces: list[Piece]) -> dict[int, int]:
    return {piece.at + i: byte for piece in pieces for i, byte in enumerate(piece.audio)}


def played_at(log: list[Played], shift_ms: float = 0.0) -> dict[int, int]:
    return {
        round((start + shift_ms) * 8) + i: byte
        for start, audio in log
        for i, byte in enumerate(audio)
    }


@pytest.mark.parametrize(("d_out", "d_in"), [(0.0, 0.0), (15.0, 15.0), (40.0, 40.0)])
def test_what_twilio_played_is_recorded_where_it_played_with_the_cut_exact(
    d_out: float, d_in: float
) -> None:
    line = Line(d_out, d_in)
    line.caller(3900)
    first = reply(line, 300, 100, 1)  # 2 s in a burst
    line.clear(1234.5)  # a barge-in 0.9 s into it
    second = reply(line, 1800, 40, 2, pace_ms=15)  # faster than real time, but paced
    left, right = line.run(4000)

    played = line.twilio.log
    heard_by_twilio = b"".join(audio for _, audio in played)
    assert joined(right) == heard_by_twilio  # the same bytes: the cut is exact
    assert heard_by_twilio.endswith(second)
    assert first.startswith(heard_by_twilio[: -len(second)])
    assert len(heard_by_twilio) - len(second) == round((1234.5 - 300) * 8)
    assert placed(right) == played_at(played)  # each byte where Twilio played it
    assert joined(left) == FRAME * 195 and left[0].at == 0


def test_each_stretch_is_placed_by_the_echoes_of_its_own_marks() -> None:
    line = Line(d_out=10.0, d_in=10.0)
    line.caller(3000)
    reply(line, 200, 30, 4)
    line.d_out = 70.0  # the second reply's frames reach Twilio 60 ms later (a stall)
    reply(line, 1500, 30, 5)
    _, right = line.run(3000)
    played = line.twilio.log
    assert [round(start) for start, _ in played] == [210, 1570]
    assert placed(right) == played_at(played)


def test_echoes_slower_than_the_media_shift_the_placement_by_the_difference_only() -> None:
    line = Line(d_out=20.0, d_in=10.0, d_echo=25.0)
    line.caller(3000)
    reply(line, 200, 50, 3)
    line.clear(900.0)
    _, right = line.run(3000)
    played = line.twilio.log
    assert joined(right) == b"".join(audio for _, audio in played)  # the cut is still exact
    assert placed(right) == played_at(played, shift_ms=25.0 - 10.0)
