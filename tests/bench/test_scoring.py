"""The conversation load's figures: the callers' logs joined with the simulator's lines."""

from __future__ import annotations

from array import array
from typing import Any

import pytest

from services.bench.ear import Listener, Playout
from services.bench.scoring import BARGE_JUDGED_S, CallerLog, score, worst_p99
from services.bench.stats import summarize
from services.realtime_sim.stamps import reply_unit

MS = 1_000_000
WINDOW = (100 * MS, 200 * MS)
JUDGED = round(BARGE_JUDGED_S * 1e9)


def _log(call: int) -> CallerLog:
    log = CallerLog(call, Listener(call))
    log.sent_ns = array("q", [t * MS for t in (90, 110, 130, 150, 210)])  # seq 1..5
    return log


def _line(call: int, seqs: list[int], replies: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "call": call,
        "up_seq": seqs,
        "up_us": [1500] * len(seqs),
        "up_not_exact": 0,
        "up_foreign": 0,
        "replies": replies,
    }


def _reply(n: int, sent_ms: list[int], status: str = "completed") -> dict[str, Any]:
    return {
        "n": n,
        "status": status,
        "sent_ns": [t * MS for t in sent_ms],
        "sizes": [800] * len(sent_ms),
        "truncated_ms": None,
    }


def test_a_clean_call_counts_only_the_window() -> None:
    log = _log(0)
    for i, sent in enumerate((120, 140, 220)):
        log.listener.feed(reply_unit(0, 1, i, 800, sent * MS), (sent + 2) * MS)
    figures = score([log], [_line(0, [1, 2, 3, 4, 5], [_reply(1, [120, 140, 220])])], WINDOW)
    assert (figures.up_sent, figures.up_lost, figures.up_not_exact) == (3, 0, 0)
    assert figures.up.count == 3 and figures.up.p50 == pytest.approx(1.5)
    assert (figures.down_deltas, figures.down_lost, figures.down.count) == (2, 0, 2)
    assert figures.down.p50 == pytest.approx(2.0)
    assert figures.ok and figures.replies == 1


def test_loss_repeats_and_missing_lines_are_counted() -> None:
    lost, repeated, missing = _log(0), _log(1), _log(2)
    lost.listener.feed(reply_unit(0, 1, 0, 800, 120 * MS), 121 * MS)  # delta 1 never came
    lines = [
        _line(0, [1, 3, 4], [_reply(1, [120, 130])]),  # frame 2 never heard
        _line(1, [1, 2, 2, 3, 4, 9], []),  # frame 2 twice, a frame 9 never sent
    ]
    figures = score([lost, repeated, missing], lines, WINDOW)
    assert figures.up_lost == 1 + 3  # and every frame of the call with no line
    assert figures.up_not_exact == 2
    assert figures.down_lost == 1
    assert figures.probes_missing == 1 and not figures.ok


def test_a_cleared_reply_loses_nothing_and_its_truncation_is_compared() -> None:
    log, play = _log(0), Playout()
    log.listener.feed(reply_unit(0, 1, 0, 1600, 120 * MS), 121 * MS)
    play.audio(1600, 0.121)
    log.listener.clear(play, 0.171)  # 50 ms of the 200 played
    reply = _reply(1, [120, 130, 140], "cancelled") | {"truncated_ms": 60}
    log.barge_ins, log.clears = [150 * MS], [(150 * MS, 21.0)]
    window = (100 * MS, 151 * MS + JUDGED)  # the barge-in begun just early enough to be judged
    figures = score([log], [_line(0, [2, 3, 4], [reply])], window)
    assert figures.down_deltas == 3 and figures.down_lost == 0
    assert figures.truncate_error_ms.max == pytest.approx(10.0)
    assert figures.barge_ins == 1 and figures.clear_ms.p50 == 21.0 and figures.barges_missed == 0


def test_a_barge_in_begun_as_the_window_closed_is_not_judged() -> None:
    # The callers stop talking when the window closes: one that began to barge in 0.1 s before
    # was cut off before a VAD could hear it, so it got no clear, and is neither a barge-in
    # nor a missed one. One begun earlier and never cleared is missed.
    late, early = _log(0), _log(1)
    end = 1000 * MS
    late.barge_ins = [end - JUDGED // 2]
    early.barge_ins, early.barges_missed = [end - 2 * JUDGED], [end - 2 * JUDGED]
    figures = score([late, early], [_line(0, [], []), _line(1, [], [])], (100 * MS, end))
    assert figures.barge_ins == 1 and figures.barges_missed == 1 and figures.clear_ms.count == 0


def test_worst_p99_ignores_empty_summaries() -> None:
    assert worst_p99(summarize([1.0]), summarize([5.0]), summarize([])) == 5.0
    assert worst_p99(summarize([])) != worst_p99(summarize([]))  # NaN
