"""The conversation load's figures: what the callers did and heard, joined with what the model
heard and sent (the simulator's ``--probe`` lines). Pure functions over plain data.

Per direction, over the frames and deltas *sent* in the measured window:

- caller → model: each 20 ms frame's one-way latency, from the caller's send to the model's
  receipt; frames the model never heard are lost; a frame whose bytes differ, one heard twice
  or one the caller never sent is not exact;
- model → caller: each delta's one-way latency to its first byte at the caller (the edge
  re-frames deltas into 20 ms frames, so a delta's tail may wait for the next delta; its head
  may not). A delta the model sent and the caller never received is lost, unless a clear cut
  its reply first (the bridge rightly drops what was not yet played); any byte not exactly the
  model's, or of a cleared reply after its clear, is counted.

And the barge-ins: how long from the caller's first word to the clear, how many got none, and
how far the bridge's truncation point was from what the caller had actually heard. Callers
stop talking when the window closes, so a barge-in begun in its last ``BARGE_JUDGED_S`` may be
cut off before any VAD could hear it: only the ones begun earlier are judged.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.bench.ear import Listener
from services.bench.stats import LatencySummary, summarize

__all__ = ["BARGE_CLEAR_LIMIT_S", "CallerLog", "ConversationFigures", "score"]

BARGE_CLEAR_LIMIT_S = 2.0  # a barge-in with no clear within this is missed
#: A barge-in is judged if it began this long before the window closed: five times the
#: simulator's 40 ms VAD onset, with room for frames sent late on a busy machine.
BARGE_JUDGED_S = 0.2


@dataclass
class CallerLog:
    """What one conversation caller did and heard; the load generator fills it."""

    index: int
    listener: Listener
    sent_ns: array[int] = field(default_factory=lambda: array("q"))  # frame seq s at [s - 1]
    turns: int = 0
    unanswered: int = 0
    barge_ins: list[int] = field(default_factory=list)  # ns of each barge-in's first word
    clears: list[tuple[int, float]] = field(default_factory=list)  # (barge-in ns, ms to clear)
    barges_missed: list[int] = field(default_factory=list)  # barge-in ns with no clear
    clears_unasked: int = 0  # clears with no barge-in waiting for one


@dataclass
class ConversationFigures:
    up: LatencySummary
    down: LatencySummary
    up_sent: int
    up_lost: int
    up_not_exact: int
    down_deltas: int
    down_lost: int
    down_not_exact: int
    down_stale_bytes: int  # of cleared replies, after their clear
    down_garbled_bytes: int  # not the start of any unit of the call
    turns: int
    replies: int
    barge_ins: int
    barges_missed: int
    clear_ms: LatencySummary  # barge-in's first word → clear at the caller
    clears_unasked: int
    unanswered: int
    truncate_error_ms: LatencySummary  # truncation point − what had played, |ms|
    probes_missing: int = 0  # calls with no line from the simulator

    @property
    def ok(self) -> bool:
        return (
            self.up_lost == 0
            and self.up_not_exact == 0
            and self.down_lost == 0
            and self.down_not_exact == 0
            and self.down_stale_bytes == 0
            and self.down_garbled_bytes == 0
            and self.probes_missing == 0
        )


def _by_call(probes: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for line in probes:
        out.setdefault(int(line["call"]), []).append(line)
    return out


def _uplink(
    log: CallerLog, lines: Sequence[dict[str, Any]], start: int, end: int
) -> tuple[list[float], int, int, int]:
    """(latencies ms, frames sent in the window, lost, not exact) of one call."""
    latency_us: dict[int, int] = {}
    not_exact = 0
    for line in lines:
        not_exact += int(line["up_not_exact"]) + int(line["up_foreign"])
        for seq, us in zip(line["up_seq"], line["up_us"], strict=True):
            if seq in latency_us or not 1 <= seq <= len(log.sent_ns):
                not_exact += 1  # heard twice, or never sent
            else:
                latency_us[seq] = us
    latencies: list[float] = []
    sent = lost = 0
    for seq, when in enumerate(log.sent_ns, start=1):
        if start <= when < end:
            sent += 1
            us = latency_us.get(seq)
            if us is None:
                lost += 1
            else:
                latencies.append(us / 1000)
    return latencies, sent, lost, not_exact


def _downlink(
    log: CallerLog, lines: Sequence[dict[str, Any]], start: int, end: int
) -> tuple[int, int, list[float]]:
    """(deltas the model sent in the window, lost, truncation errors ms) of one call."""
    sent = lost = 0
    errors: list[float] = []
    heard_by = log.listener.replies
    for line in lines:
        for reply in line["replies"]:
            times: list[int] = reply["sent_ns"]
            heard = heard_by.get(int(reply["n"]))
            received = 0 if heard is None else heard.units + heard.gaps
            cut = heard is not None and heard.cut
            for index, when in enumerate(times):
                if start <= when < end:
                    sent += 1
                    lost += index >= received and not cut
            if heard is not None:
                lost += heard.gaps
            played = None if heard is None else heard.played_ms_at_clear
            if reply["truncated_ms"] is not None and played is not None:
                errors.append(abs(float(reply["truncated_ms"]) - played))
    return sent, lost, errors


def score(
    logs: Sequence[CallerLog], probes: Iterable[dict[str, Any]], window_ns: tuple[int, int]
) -> ConversationFigures:
    """The run's figures, from every caller's log and every session's probe line."""
    start, end = window_ns
    judged_end = end - round(BARGE_JUDGED_S * 1e9)
    by_call = _by_call(probes)
    up_ms: list[float] = []
    down_ms: list[float] = []
    clear_ms: list[float] = []
    truncate_errors: list[float] = []
    totals = dict.fromkeys(("up_sent", "up_lost", "up_ne", "down", "down_lost"), 0)
    missing = barge_ins = missed = 0
    for log in logs:
        lines = by_call.get(log.index, [])
        missing += not lines
        latencies, sent, lost, not_exact = _uplink(log, lines, start, end)
        up_ms += latencies
        totals["up_sent"] += sent
        totals["up_lost"] += lost
        totals["up_ne"] += not_exact
        deltas, lost_deltas, errors = _downlink(log, lines, start, end)
        totals["down"] += deltas
        totals["down_lost"] += lost_deltas
        truncate_errors += errors
        down_ms += [
            (got - sent) / 1e6 for sent, got in log.listener.latencies if start <= sent < end
        ]
        barge_ins += sum(start <= t < judged_end for t in log.barge_ins)
        missed += sum(start <= t < judged_end for t in log.barges_missed)
        clear_ms += [ms for t, ms in log.clears if start <= t < judged_end]
    listeners = [log.listener for log in logs]
    return ConversationFigures(
        up=summarize(up_ms),
        down=summarize(down_ms),
        up_sent=totals["up_sent"],
        up_lost=totals["up_lost"],
        up_not_exact=totals["up_ne"],
        down_deltas=totals["down"],
        down_lost=totals["down_lost"],
        down_not_exact=sum(x.not_exact for x in listeners),
        down_stale_bytes=sum(x.stale for x in listeners),
        down_garbled_bytes=sum(x.garbled for x in listeners),
        turns=sum(log.turns for log in logs),
        replies=sum(len(x.replies) for x in listeners),
        barge_ins=barge_ins,
        barges_missed=missed,
        clear_ms=summarize(clear_ms),
        clears_unasked=sum(log.clears_unasked for log in logs),
        unanswered=sum(log.unanswered for log in logs),
        truncate_error_ms=summarize(truncate_errors),
        probes_missing=missing,
    )


def worst_p99(*summaries: LatencySummary) -> float:
    """The largest p99 of those that have samples; NaN if none has."""
    values = [s.p99 for s in summaries if not math.isnan(s.p99)]
    return max(values, default=math.nan)
