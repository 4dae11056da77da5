"""``python -m services.bench``: the split stack, the peer and the lean relay, in one run; with
``--cluster``, the split stack against a Redis Cluster too."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

# The realtime simulator this starts checks events with openai's types (the sim extra):
# without it, fail here rather than halfway through.
import openai  # noqa: F401

from services.bench.loadgen import LOADS
from services.bench.profiling import top
from services.bench.report import plot, table, to_json
from services.bench.runner import (
    CONFIGS,
    DEFAULT_CONFIGS,
    SPLIT,
    SPLIT_CLUSTER,
    RunOptions,
    RunResult,
    estimated_seconds,
    run_config,
)
from services.bench.targets import P99_LIMIT_MS, judge
from services.bench.turns import TurnShape


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


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or any(n not in allowed for n in names):
            raise argparse.ArgumentTypeError(f"use one or more of {', '.join(allowed)}")
        return names

    return parse


def _span_ms(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH in ms") from None
    if not 4 <= low <= high <= 4000:
        raise argparse.ArgumentTypeError("4 ≤ LOW ≤ HIGH ≤ 4000 ms")
    return low, high


def selected_configs(configs: Sequence[str], cluster: bool) -> list[str]:
    """The configurations to run, in order, each once: ``--configs``, and with ``--cluster``
    split-cluster as well, right after split (beside it in the tables) or else last."""
    chosen = list(dict.fromkeys(configs))
    if cluster and SPLIT_CLUSTER not in chosen:
        at = chosen.index(SPLIT) + 1 if SPLIT in chosen else len(chosen)
        chosen.insert(at, SPLIT_CLUSTER)
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.bench",
        description=(
            "Load-test the split bridge (edge, workers, Redis) beside a one-process peer in "
            "the style of Twilio's sample and a lean direct relay, in one run, on loopback, "
            "against the realtime simulator: an echo load and a conversation load. Prints "
            "tables and the targets, and writes JSON and a PNG under --out."
        ),
    )
    p.add_argument(
        "--calls", type=_calls, default=[50], help="C, or a list: 25,50,100 (default 50)"
    )
    p.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds per run (default 20)"
    )
    p.add_argument(
        "--loads",
        type=_names(LOADS),
        default=list(LOADS),
        help="echo, conversation or both (default both)",
    )
    p.add_argument(
        "--configs",
        type=_names(CONFIGS),
        default=list(DEFAULT_CONFIGS),
        help="split, peer, baseline (the lean relay), split-cluster (see --cluster), any of "
        "them (default split,peer,baseline)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="run split-cluster too: the split stack with REDIS_CLUSTER=true against a private "
        "Redis Cluster of 3 primaries with a replica each (every node counted as the bridge's "
        "Redis; the keys and CPU of each primary reported). It adds split-cluster to --configs, "
        "whether given or the default three; --configs split-cluster alone runs it alone. "
        "--redis-url does not apply to it. Needs redis-server and redis-cli",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="realtime workers in the split stack (default 1)"
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="capacity search: raise C by --step-size from --step-start until p99 ≥ 20 ms, "
        "audio is lost or a call fails, for each load and configuration; bounded by "
        "--max-minutes",
    )
    p.add_argument("--step-start", type=int, default=50)
    p.add_argument("--step-size", type=int, default=50)
    p.add_argument("--step-max", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="a short check: C=10 for 6 s per run")
    p.add_argument(
        "--redis-batch-ms",
        type=int,
        default=0,
        help="REDIS_BATCH_MS of the split bridge's edge and workers (default 0)",
    )
    p.add_argument(
        "--delta-ms",
        type=_span_ms,
        help="conversation load: the model's deltas, LOW,HIGH ms (default: the simulator's, "
        "100,500)",
    )
    p.add_argument(
        "--barge-share",
        type=float,
        default=TurnShape().barge_share,
        help="conversation load: the share of replies the caller barges in on (default 0.25)",
    )
    p.add_argument("--seed", type=int, default=0, help="the conversation load's draws")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the last call is up")
    p.add_argument("--ramp-rate", type=float, default=50.0, help="calls placed per second")
    p.add_argument("--redis-url", help="use this Redis instead of a private redis-server per run")
    p.add_argument("--max-minutes", type=float, default=30.0, help="time budget of the whole bench")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    p.add_argument("--log-level", default="INFO", help="log level of the bridge processes")
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the bridge's processes over each window (slows them: read where the "
        "time goes, not how much); the top functions are printed and the .pstats kept",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.calls, args.duration, args.warmup = [10], 6.0, 2.0
    if not 0 <= args.barge_share <= 1:
        print("--barge-share: a fraction, 0..1", file=sys.stderr)
        return 2
    configs = selected_configs(args.configs, args.cluster)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    base = RunOptions(
        duration_s=args.duration,
        workers=args.workers,
        redis_batch_ms=args.redis_batch_ms,
        warmup_s=args.warmup,
        ramp_rate=args.ramp_rate,
        redis_url=args.redis_url,
        log_dir=args.out / f"logs-{stamp}",
        log_level=args.log_level,
        turns=TurnShape(barge_share=args.barge_share),
        delta_bytes=None if args.delta_ms is None else (args.delta_ms[0] * 8, args.delta_ms[1] * 8),
        seed=args.seed,
        profile_dir=args.out / f"profiles-{stamp}" if args.profile else None,
    )
    deadline = time.monotonic() + args.max_minutes * 60
    results: list[RunResult] = []
    capacity: dict[str, dict[str, int | None]] = {}

    def run(load: str, config: str, calls: int) -> RunResult | None:
        options = replace(base, load=load)
        if time.monotonic() + estimated_seconds(calls, options) > deadline:
            print(f"skipped {load} {config} at C={calls}: over the --max-minutes budget")
            return None
        print(f"running {load} load, {config} at C={calls} for {options.duration_s:.0f} s …")
        result = run_config(config, calls, options)
        results.append(result)
        print(
            f"  p99 {result.p99:.2f} ms, lost {result.frames_lost}, not exact "
            f"{result.frames_not_exact}, failed calls {result.failed_calls}, bridge CPU "
            f"{result.bridge_cpu_per_call_min:.4f} s/call-min",
            flush=True,
        )
        return result

    for load in args.loads:
        if args.step:
            live = list(configs)
            capacity[load] = dict.fromkeys(live)
            calls = args.step_start
            while live and calls <= args.step_max:
                for config in list(live):
                    result = run(load, config, calls)
                    if result is None or not result.within(P99_LIMIT_MS):
                        live.remove(config)
                    else:
                        capacity[load][config] = calls
                calls += args.step_size
        else:
            for calls in args.calls:
                for config in configs:
                    run(load, config, calls)
    if not results:
        print("no run fitted in the time budget", file=sys.stderr)
        return 1
    command = "python -m services.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    targets = judge(results, capacity)
    print()
    print(table(results))
    print()
    print("targets:")
    for line in targets:
        print("  " + line)
    if args.profile:
        _print_profiles(results)
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


def _print_profiles(results: Sequence[RunResult]) -> None:
    for r in results:
        for name, path in r.extra.get("profiles", {}).items():
            print(f"\n=== profile: {r.load} load, {r.config} at C={r.calls}, {name} ({path})")
            print(top(Path(path)))


if __name__ == "__main__":
    sys.exit(main())
