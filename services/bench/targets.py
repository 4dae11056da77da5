"""The issue's targets, judged from the figures of one run (never across runs: a shared machine
moves every figure by 10–25 % from one run to the next, the three designs together).

Per load and C: the split's bridge CPU per call-minute (edge + workers + Redis) at most the
peer's; the split's p99 at most the peer's + 3 ms (the echo's round trip; each direction of
the conversation); no audio lost or altered. Against the lean relay, the ratios are reported:
the aim is that they fall from one version to the next. With ``--step``: the largest C with
p99 under 20 ms and nothing lost, the split's at least the peer's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from services.bench.loadgen import CONVERSATION
from services.bench.runner import BASELINE, PEER, SPLIT, RunResult

__all__ = [
    "FIRST_AUDIO_LIMIT_MS",
    "P99_LIMIT_MS",
    "P99_MARGIN_MS",
    "RSS_PER_CALL_LIMIT",
    "TARGET_CALLS",
    "judge",
]

P99_LIMIT_MS = 20.0
P99_MARGIN_MS = 3.0
FIRST_AUDIO_LIMIT_MS = 300.0
RSS_PER_CALL_LIMIT = 256 * 1024
TARGET_CALLS = (25, 50, 100)  # where the issue sets the CPU target

Capacity = Mapping[str, Mapping[str, int | None]]  # load → config → largest C


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _ratio(a: float, b: float) -> str:
    return "—" if not b or math.isnan(a) or math.isnan(b) else f"×{a / b:.2f}"


def _latency_lines(calls: int, split: RunResult, peer: RunResult) -> list[str]:
    pairs = [("round trip", split.latency.p99, peer.latency.p99)]
    if split.conversation is not None and peer.conversation is not None:
        s, p = split.conversation, peer.conversation
        pairs = [("caller→model", s.up.p99, p.up.p99), ("model→caller", s.down.p99, p.down.p99)]
    lines = []
    for name, mine, theirs in pairs:
        ok = mine <= theirs + P99_MARGIN_MS
        lines.append(
            f"C={calls}: p99 {name} split {mine:.2f} ms vs peer {theirs:.2f} ms "
            f"(+{P99_MARGIN_MS:.0f} allowed): {_verdict(ok)}"
        )
    return lines


def _pair_lines(calls: int, by: Mapping[str, RunResult]) -> list[str]:
    split, peer, base = by.get(SPLIT), by.get(PEER), by.get(BASELINE)
    lines: list[str] = []
    if split is not None:
        lines.append(
            f"C={calls}: split lost {split.frames_lost}, not exact {split.frames_not_exact}, "
            f"failed calls {split.failed_calls}: {_verdict(split.ok)}"
        )
    if split is not None and peer is not None:
        mine, theirs = split.bridge_cpu_per_call_min, peer.bridge_cpu_per_call_min
        where = "" if calls in TARGET_CALLS else " (not a target C)"
        lines.append(
            f"C={calls}: CPU s/call-min split {mine:.3f} vs peer {theirs:.3f} "
            f"({_ratio(mine, theirs)}){where}: {_verdict(mine <= theirs)}"
        )
        lines += _latency_lines(calls, split, peer)
    if base is not None:
        relay = base.bridge_cpu_per_call_min
        parts = [
            f"{name} {_ratio(run.bridge_cpu_per_call_min, relay)}"
            for name, run in ((SPLIT, split), (PEER, peer))
            if run is not None
        ]
        if parts:
            lines.append(f"C={calls}: CPU against the lean relay: " + ", ".join(parts))
    return lines


def _split_only(results: Sequence[RunResult]) -> list[str]:
    lines: list[str] = []
    for r in results:
        if r.config != SPLIT:
            continue
        fa = r.first_audio_ms
        lines.append(
            f"C={r.calls}: webhook → first audio p95 {fa.p95:.0f} ms, max {fa.max:.0f} ms "
            f"(≤ {FIRST_AUDIO_LIMIT_MS:.0f}): {_verdict(fa.max <= FIRST_AUDIO_LIMIT_MS)}"
        )
        growth = [p for p in r.processes if p.role in ("edge", "worker")]
        worst = max((p.rss_per_call for p in growth), default=math.nan)
        lines.append(
            f"C={r.calls}: RSS growth per call, worst of edge/workers {worst / 1024:.0f} KiB "
            f"(≤ 256): {_verdict(worst <= RSS_PER_CALL_LIMIT)}"
        )
    return lines


def _capacity_line(found: Mapping[str, int | None]) -> str:
    text = ", ".join(f"{k} {v if v is not None else '< start'}" for k, v in found.items())
    if SPLIT not in found or PEER not in found:
        verdict = "no verdict: split and peer were not both searched"
    else:
        mine, theirs = found[SPLIT], found[PEER]
        verdict = _verdict(mine is not None and (theirs is None or mine >= theirs))
    return (
        f"capacity (largest C with p99 < {P99_LIMIT_MS:.0f} ms and nothing lost): {text}: {verdict}"
    )


def judge(results: Sequence[RunResult], capacity: Capacity) -> list[str]:
    """One line per target and C, load by load."""
    lines: list[str] = []
    for load in sorted({r.load for r in results} | set(capacity)):
        runs = [r for r in results if r.load == load]
        lines.append(f"{load} load:")
        for calls in sorted({r.calls for r in runs}):
            by = {r.config: r for r in runs if r.calls == calls}
            lines += ["  " + line for line in _pair_lines(calls, by)]
        if load != CONVERSATION:
            lines += ["  " + line for line in _split_only(runs)]
        if load in capacity:
            lines.append("  " + _capacity_line(capacity[load]))
    return lines
