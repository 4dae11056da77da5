"""The bench's outputs: a table on stdout, a JSON document and a PNG plot."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.bench.runner import BASELINE, SPLIT, RunResult

__all__ = ["machine", "plot", "table", "to_json"]

KIB = 1024
MIB = 1024 * 1024


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


def table(results: Sequence[RunResult]) -> str:
    """Two plain-text tables: the caller's view, then each process's cost."""
    head = (
        f"{'config':<9}{'C':>5}{'wk':>3} │{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9} ms │"
        f"{'sent':>8}{'lost':>8}{'!=':>4}{'fail':>5} │{'1st audio p50/p95/max ms':>25} │"
        f"{'bridge CPU':>11}"
    )
    lines = [head, "─" * len(head)]
    for r in results:
        lat, fa = r.latency, r.first_audio_ms
        lines.append(
            f"{r.config:<9}{r.calls:>5}{r.workers or '':>3} │{_f(lat.p50, 2):>9}{_f(lat.p95, 2):>9}"
            f"{_f(lat.p99, 2):>9}{_f(lat.max, 1):>9}    │{r.sent_in_window:>8}{r.frames_lost:>8}"
            f"{r.frames_not_exact:>4}{r.failed_calls:>5} │"
            f"{_f(fa.p50, 0) + ' / ' + _f(fa.p95, 0) + ' / ' + _f(fa.max, 0):>25} │"
            f"{_f(r.bridge_cpu_per_call_min, 3):>11}"
        )
    lines += [
        "",
        "latency: round trip caller → bridge → simulator → bridge → caller of the frames sent "
        "in the window;",
        "lost/!=: frames not echoed by the end of the drain / echoed with other bytes;",
        "CPU in seconds per call-minute (bridge: edge+workers+Redis, or the relay)",
        "",
    ]
    head2 = (
        f"{'config':<9}{'C':>5} {'process':<14}{'CPU s':>8}{'s/call-min':>11}"
        f"{'RSS idle':>10}{'RSS end':>10}{'KiB/call':>9}"
    )
    lines += [head2, "─" * len(head2)]
    for r in results:
        for p in r.processes:
            lines.append(
                f"{r.config:<9}{r.calls:>5} {p.name:<14}{_f(p.cpu_s, 2):>8}"
                f"{_f(p.cpu_per_call_min, 4):>11}"
                f"{p.rss_idle / MIB:>8.1f}Mi{p.rss_end / MIB:>8.1f}Mi"
                f"{_f(p.rss_per_call / KIB, 1):>9}"
            )
        if r.config == SPLIT:
            lines.append(
                f"{'':<15}Redis used_memory per live call: "
                f"{_f(r.redis_memory_per_call / KIB, 1)} KiB"
            )
        lines.append(
            f"{'':<15}machine busy {_f(r.machine_busy_cores, 2)} cores in the window, "
            f"{_f(r.other_cores, 2)} of them outside the bench's processes"
        )
        for error in r.errors:
            lines.append(f"{'':<15}error: {error}")
    return "\n".join(lines)


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
    """Latency percentiles and bridge CPU per call against C; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {SPLIT: "tab:blue", BASELINE: "tab:orange"}
    for config, color in styles.items():
        runs = sorted((r for r in results if r.config == config), key=lambda r: r.calls)
        if not runs:
            continue
        calls = [r.calls for r in runs]
        for name, dash in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            values = [getattr(r.latency, name) for r in runs]
            left.plot(calls, values, dash, color=color, marker="o", label=f"{config} {name}")
        right.plot(
            calls,
            [r.bridge_cpu_per_call_min for r in runs],
            "-",
            color=color,
            marker="o",
            label=f"{config} bridge",
        )
        for role, dash in (("loadgen", ":"), ("simulator", "--")):
            values = [
                math.fsum(p.cpu_per_call_min for p in r.processes if p.role == role) for r in runs
            ]
            right.plot(calls, values, dash, color=color, alpha=0.5, label=f"{config} {role}")
    left.axhline(20, color="grey", linewidth=0.8)
    left.set_yscale("log")  # a healthy bridge is a few ms; an overloaded one, seconds
    left.set(xlabel="concurrent calls C", ylabel="round trip (ms)", title="Frame round trip")
    left.legend(fontsize=7)
    right.set(
        xlabel="concurrent calls C",
        ylabel="CPU s per call-minute",
        title="CPU per call (bridge; generator and simulator faded)",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
