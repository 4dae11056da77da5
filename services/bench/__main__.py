"""``python -m services.bench``: run the split stack and the direct baseline side by side."""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# The realtime simulator this starts checks events with openai's types (the sim extra):
# without it, fail here rather than halfway through.
import openai  # noqa: F401

from services.bench.report import plot, table, to_json
from services.bench.runner import (
    BASELINE,
    SPLIT,
    RunOptions,
    RunResult,
    estimated_seconds,
    run_config,
)

P99_LIMIT_MS = 20.0
P99_MARGIN_MS = 2.0
FIRST_AUDIO_LIMIT_MS = 300.0
RSS_PER_CALL_LIMIT = 256 * 1024


def _calls(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not values or any(v < 1 or v > 5000 for v in values):
        raise argparse.ArgumentTypeError("each number of calls must be between 1 and 5000")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.bench",
        description=(
            "Load-test the split bridge (edge, workers, Redis) and a direct single-process "
            "relay side by side, on loopback, against the realtime simulator in echo mode. "
            "Prints a table and writes JSON and a PNG under --out."
        ),
    )
    p.add_argument(
        "--calls", type=_calls, default=[100], help="C, or a list: 10,50,100 (default 100)"
    )
    p.add_argument(
        "--duration", type=float, default=30.0, help="measured seconds per run (default 30)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="realtime workers in the split stack (default 1)"
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="capacity search: raise C by --step-size from --step-start until p99 ≥ 20 ms, a "
        "frame is lost or a call fails, for each configuration; bounded by --max-minutes",
    )
    p.add_argument("--step-start", type=int, default=50)
    p.add_argument("--step-size", type=int, default=50)
    p.add_argument("--step-max", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="a short check: C=10 for 5 s")
    p.add_argument(
        "--configs", default=f"{SPLIT},{BASELINE}", help="split, baseline or both (default)"
    )
    p.add_argument(
        "--redis-batch-ms",
        type=int,
        default=0,
        help="REDIS_BATCH_MS of the split bridge's edge and workers (default 0)",
    )
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the last call is up")
    p.add_argument("--ramp-rate", type=float, default=50.0, help="calls placed per second")
    p.add_argument("--redis-url", help="use this Redis instead of a private redis-server per run")
    p.add_argument("--max-minutes", type=float, default=30.0, help="time budget of the whole bench")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    p.add_argument("--log-level", default="INFO", help="log level of the bridge processes")
    return p


def _targets(results: Sequence[RunResult], capacity: dict[str, int | None]) -> list[str]:
    """The issue's targets, judged from the figures of this run."""
    lines: list[str] = []
    by = {(r.config, r.calls): r for r in results}
    for calls in sorted({r.calls for r in results}):
        split, base = by.get((SPLIT, calls)), by.get((BASELINE, calls))
        if split is None or base is None:
            continue
        ok = split.ok and split.latency.p99 <= base.latency.p99 + P99_MARGIN_MS
        lines.append(
            f"C={calls}: p99 split {split.latency.p99:.2f} ms vs baseline {base.latency.p99:.2f} "
            f"ms (+{P99_MARGIN_MS:.0f} ms allowed), lost {split.frames_lost}, not exact "
            f"{split.frames_not_exact}: {'MET' if ok else 'NOT MET'}"
        )
        cpu_ok = split.bridge_cpu_per_call_min <= base.bridge_cpu_per_call_min
        lines.append(
            f"C={calls}: CPU s/call-min edge+worker+Redis {split.bridge_cpu_per_call_min:.4f} vs "
            f"baseline {base.bridge_cpu_per_call_min:.4f} (×"
            f"{split.bridge_cpu_per_call_min / base.bridge_cpu_per_call_min:.2f}): "
            f"{'MET' if cpu_ok else 'NOT MET'}"
        )
    for r in results:
        if r.config != SPLIT:
            continue
        fa = r.first_audio_ms
        lines.append(
            f"C={r.calls}: webhook → first audio p95 {fa.p95:.0f} ms, max {fa.max:.0f} ms "
            f"(≤ {FIRST_AUDIO_LIMIT_MS:.0f}): "
            f"{'MET' if fa.max <= FIRST_AUDIO_LIMIT_MS else 'NOT MET'}"
        )
        growth = [p for p in r.processes if p.role in ("edge", "worker")]
        worst = max((p.rss_per_call for p in growth), default=math.nan)
        lines.append(
            f"C={r.calls}: RSS growth per call, worst of edge/workers {worst / 1024:.0f} KiB "
            f"(≤ 256): {'MET' if worst <= RSS_PER_CALL_LIMIT else 'NOT MET'}"
        )
    if capacity:
        text = ", ".join(f"{k} {v if v is not None else '< start'}" for k, v in capacity.items())
        split_cap, base_cap = capacity.get(SPLIT), capacity.get(BASELINE)
        if SPLIT not in capacity or BASELINE not in capacity:
            verdict = "no verdict: split and baseline were not both searched"
        else:
            met = split_cap is not None and (base_cap is None or split_cap >= base_cap)
            verdict = "MET" if met else "NOT MET"
        lines.append(
            f"capacity (largest C with p99 < {P99_LIMIT_MS:.0f} ms and 0 loss): {text}: "
            f"{verdict} (aim: 400)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or any(c not in (SPLIT, BASELINE) for c in configs):
        print(f"--configs: use {SPLIT}, {BASELINE} or both", file=sys.stderr)
        return 2
    if args.quick:
        args.calls, args.duration = [10], 5.0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    options = RunOptions(
        duration_s=args.duration,
        workers=args.workers,
        redis_batch_ms=args.redis_batch_ms,
        warmup_s=args.warmup,
        ramp_rate=args.ramp_rate,
        redis_url=args.redis_url,
        log_dir=args.out / f"logs-{stamp}",
        log_level=args.log_level,
    )
    deadline = time.monotonic() + args.max_minutes * 60
    results: list[RunResult] = []
    capacity: dict[str, int | None] = {}

    def run(config: str, calls: int) -> RunResult | None:
        if time.monotonic() + estimated_seconds(calls, options) > deadline:
            print(f"skipped {config} at C={calls}: over the --max-minutes budget", flush=True)
            return None
        print(f"running {config} at C={calls} for {options.duration_s:.0f} s …", flush=True)
        result = run_config(config, calls, options)
        results.append(result)
        print(
            f"  p99 {result.latency.p99:.2f} ms, lost {result.frames_lost}, not exact "
            f"{result.frames_not_exact}, failed calls {result.failed_calls}, bridge CPU "
            f"{result.bridge_cpu_per_call_min:.4f} s/call-min",
            flush=True,
        )
        return result

    if args.step:
        live = list(configs)
        capacity = dict.fromkeys(configs)
        calls = args.step_start
        while live and calls <= args.step_max:
            for config in list(live):
                result = run(config, calls)
                if result is None or not result.within(P99_LIMIT_MS):
                    live.remove(config)
                else:
                    capacity[config] = calls
            calls += args.step_size
    else:
        for calls in args.calls:
            for config in configs:
                run(config, calls)
    if not results:
        print("no run fitted in the time budget", file=sys.stderr)
        return 1
    command = "python -m services.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    targets = _targets(results, capacity)
    print()
    print(table(results))
    print()
    print("targets (issue 6):")
    for line in targets:
        print("  " + line)
    json_path = args.out / f"bench-{stamp}.json"
    json_path.write_text(
        to_json(results, command, {"capacity": capacity, "targets": targets}) + "\n"
    )
    png_path = args.out / f"bench-{stamp}.png"
    wrote_png = plot(results, png_path)
    print(
        f"\nwrote {json_path}" + (f" and {png_path}" if wrote_png else " (no matplotlib: no PNG)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
