"""The bench's outputs: a table on stdout, a JSON document and a PNG plot."""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.bench.balance import balance_line
from services.bench.loadgen import CONVERSATION, ECHO
from services.bench.redis_commands import commands_line
from services.bench.runner import (
    BASELINE,
    PEER,
    SPLIT,
    SPLIT_CLUSTER,
    SPLIT_CONFIGS,
    RunResult,
)
from services.bench.stats import LatencySummary

__all__ = ["machine", "plot", "table", "to_json"]

KIB = 1024
MIB = 1024 * 1024
CONFIG_W = len(SPLIT_CLUSTER) + 1  # the config column


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _f(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _three(s: LatencySummary, digits: int = 2) -> str:
    return f"{_f(s.p50, digits)} / {_f(s.p99, digits)} / {_f(s.max, 1)}"


def _cpu_parts(r: RunResult) -> str:
    """The bridge's CPU per call-minute, process by process."""
    if r.config in SPLIT_CONFIGS:
        roles = ("edge", "worker", "redis")
        return " + ".join(_f(r.cpu_of(role), 2) for role in roles)
    return ""


def _echo_table(results: Sequence[RunResult]) -> list[str]:
    head = (
        f"{'config':<{CONFIG_W}}{'C':>5}{'wk':>3} │{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8} ms │"
        f"{'sent':>8}{'lost':>6}{'!=':>4}{'fail':>5} │{'1st audio p50/p95/max':>22} │"
        f"{'bridge CPU':>11}{'edge+worker+redis':>20}"
    )
    lines = ["echo load: each 20 ms frame comes straight back", head, "─" * len(head)]
    for r in results:
        lat, fa = r.latency, r.first_audio_ms
        first = f"{_f(fa.p50, 0)} / {_f(fa.p95, 0)} / {_f(fa.max, 0)}"
        lines.append(
            f"{r.config:<{CONFIG_W}}{r.calls:>5}{r.workers or '':>3} │"
            f"{_f(lat.p50, 2):>8}{_f(lat.p95, 2):>8}{_f(lat.p99, 2):>8}{_f(lat.max, 1):>8}    │"
            f"{r.sent_in_window:>8}{r.frames_lost:>6}"
            f"{r.frames_not_exact:>4}{r.failed_calls:>5} │{first:>22} │"
            f"{_f(r.bridge_cpu_per_call_min, 3):>11}{_cpu_parts(r):>20}"
        )
    lines += [
        "latency: round trip caller → bridge → simulator → bridge → caller of the frames sent "
        "in the window;",
        "lost/!=: frames not echoed by the end of the drain / echoed with other bytes",
    ]
    return lines


def _conversation_table(results: Sequence[RunResult]) -> list[str]:
    head = (
        f"{'config':<{CONFIG_W}}{'C':>5} │{'caller→model p50/p99/max':>25} │"
        f"{'model→caller p50/p99/max':>25} │{'frames':>7}{'lost':>5}{'!=':>4} │"
        f"{'deltas':>7}{'lost':>5}{'!=':>4}{'stale':>6} │"
        f"{'barge-ins':>10}{'clear p50/p99':>15}{'missed':>7}{'trunc err':>10} │"
        f"{'bridge CPU':>11}{'edge+worker+redis':>20}"
    )
    lines = [
        "conversation load: turns, replies streamed faster than real time, barge-ins",
        head,
        "─" * len(head),
    ]
    for r in results:
        c = r.conversation
        if c is None:
            continue
        clear = f"{_f(c.clear_ms.p50, 0)} / {_f(c.clear_ms.p99, 0)}"
        trunc = _f(c.truncate_error_ms.p50, 0)
        lines.append(
            f"{r.config:<{CONFIG_W}}{r.calls:>5} │{_three(c.up):>25} │{_three(c.down):>25} │"
            f"{c.up_sent:>7}{c.up_lost:>5}{c.up_not_exact:>4} │{c.down_deltas:>7}{c.down_lost:>5}"
            f"{c.down_not_exact:>4}{c.down_stale_bytes + c.down_garbled_bytes:>6} │"
            f"{c.barge_ins:>10}{clear:>15}{c.barges_missed:>7}{trunc:>10} │"
            f"{_f(r.bridge_cpu_per_call_min, 3):>11}{_cpu_parts(r):>20}"
        )
    lines += [
        "one-way ms: a caller frame from send to the model; a model delta from send to its first "
        "byte at the caller;",
        "frames/deltas sent in the window, lost, not bit-exact; stale: bytes of a cleared reply "
        "after its clear;",
        "clear: ms from a barge-in's first word to the clear; trunc err: |truncate point − "
        "audio played|, ms (p50)",
    ]
    return lines


def table(results: Sequence[RunResult]) -> str:
    """Plain-text tables: each load's caller's view, then each process's cost."""
    lines: list[str] = []
    echo = [r for r in results if r.load == ECHO]
    talk = [r for r in results if r.load == CONVERSATION]
    if echo:
        lines += [*_echo_table(echo), ""]
    if talk:
        lines += [*_conversation_table(talk), ""]
    lines += [
        "CPU in seconds per call-minute; bridge: edge+workers+Redis (split; split-cluster: "
        "every node, replicas included), the peer, or the lean relay (baseline)",
        "",
    ]
    indent = " " * (13 + CONFIG_W + 5)
    head2 = (
        f"{'load':<13}{'config':<{CONFIG_W}}{'C':>5} {'process':<14}{'CPU s':>8}{'s/call-min':>11}"
        f"{'RSS idle':>10}{'RSS end':>10}{'KiB/call':>9}"
    )
    lines += [head2, "─" * len(head2)]
    for r in results:
        for p in r.processes:
            lines.append(
                f"{r.load:<13}{r.config:<{CONFIG_W}}{r.calls:>5} {p.name:<14}{_f(p.cpu_s, 2):>8}"
                f"{_f(p.cpu_per_call_min, 4):>11}"
                f"{p.rss_idle / MIB:>8.1f}Mi{p.rss_end / MIB:>8.1f}Mi"
                f"{_f(p.rss_per_call / KIB, 1):>9}"
            )
        if r.config in SPLIT_CONFIGS:
            nodes = " (all its nodes together)" if r.config == SPLIT_CLUSTER else ""
            lines.append(
                f"{indent}Redis used_memory per live call{nodes}: "
                f"{_f(r.redis_memory_per_call / KIB, 1)} KiB"
            )
            lines.append(
                f"{indent}Redis commands{nodes}: {commands_line(r.redis_commands, r.window_s)}"
            )
        lines.append(
            f"{indent}machine busy {_f(r.machine_busy_cores, 2)} cores in the window, "
            f"{_f(r.other_cores, 2)} of them outside the bench's processes"
        )
        for error in r.errors:
            lines.append(f"{indent}error: {error}")
    return "\n".join(lines + _balance_table(results))


def _balance_table(results: Sequence[RunResult]) -> list[str]:
    """One line per split-cluster run: how evenly its primaries were loaded."""
    runs = [r for r in results if r.cluster is not None]
    if not runs:
        return []
    lines = [
        "",
        "Redis Cluster balance (split-cluster): the run's keys on each primary while every call "
        "was live, CPU s in the window",
    ]
    for r in runs:
        assert r.cluster is not None
        lines.append(f"{r.load:<13}C={r.calls:<5} {balance_line(r.cluster)}")
    return lines


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(results: Sequence[RunResult], command: str, extra: dict[str, Any]) -> str:
    runs = []
    for r in results:
        run = asdict(r)
        run["bridge_cpu_per_call_min"] = r.bridge_cpu_per_call_min
        run["ok"] = r.ok
        runs.append(run)
    document = {"machine": machine(), "command": command, **extra, "runs": runs}
    return json.dumps(_clean(document), indent=2, allow_nan=False)


def plot(results: Sequence[RunResult], path: Path) -> bool:
    """p99 latency and bridge CPU per call against C, per load and configuration; False if
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {
        SPLIT: "tab:blue",
        SPLIT_CLUSTER: "tab:purple",
        PEER: "tab:green",
        BASELINE: "tab:orange",
    }
    dashes = {ECHO: "-", CONVERSATION: "--"}
    for (config, color), (load, dash) in itertools.product(colors.items(), dashes.items()):
        runs = sorted(
            (r for r in results if r.config == config and r.load == load), key=lambda r: r.calls
        )
        if not runs:
            continue
        calls = [r.calls for r in runs]
        label = f"{config}, {load}"
        left.plot(calls, [r.p99 for r in runs], dash, color=color, marker="o", label=label)
        cpu = [r.bridge_cpu_per_call_min for r in runs]
        right.plot(calls, cpu, dash, color=color, marker="o", label=label)
    left.axhline(20, color="grey", linewidth=0.8)
    left.set_yscale("log")  # a healthy bridge is a few ms; an overloaded one, seconds
    left.set(
        xlabel="concurrent calls C",
        ylabel="p99 (ms)",
        title="p99: echo round trip; conversation, worse direction",
    )
    left.legend(fontsize=7)
    right.set(xlabel="concurrent calls C", ylabel="CPU s per call-minute", title="Bridge CPU")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
