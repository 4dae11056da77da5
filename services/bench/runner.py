"""Start a configuration's processes, run a load against it, account for every process.

Four configurations, each started fresh for every load and C so that memory and CPU start
from idle, each against its own realtime simulator (echo mode for the echo load, conversation
mode with ``--probe`` for the conversation load):

- ``split``: a private redis-server (or ``--redis-url``), one edge and N workers, through
  ``services.devstack``;
- ``peer``: the one-process bridge in the style of Twilio's sample (``peer.py``);
- ``baseline``: the lean relay (``baseline.py``);
- ``split-cluster`` (not run by default): the split stack with ``REDIS_CLUSTER=true`` against
  a private Redis Cluster of 3 primaries with a replica each (``services.devcluster``); every
  node counts as the bridge's Redis, and the run records how evenly the primaries were loaded
  (``balance.py``).

CPU seconds and RSS come from /proc at the edges of the measured window; the load generator
runs in this process and is accounted the same way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import uvloop

from services.bench import setups
from services.bench.balance import ClusterBalance, balance
from services.bench.loadgen import CONVERSATION, ECHO, LoadConfig, LoadResult, run_load
from services.bench.procstat import ProcSample, machine_cpu, sample
from services.bench.profiling import signal_all
from services.bench.redis_commands import CommandTime, spent, totals
from services.bench.scoring import ConversationFigures, score, worst_p99
from services.bench.stats import LatencySummary, cpu_per_call_minute, summarize
from services.bench.turns import TurnShape
from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL

__all__ = [
    "BASELINE",
    "CONFIGS",
    "DEFAULT_CONFIGS",
    "PEER",
    "SPLIT",
    "SPLIT_CLUSTER",
    "SPLIT_CONFIGS",
    "ProcessFigures",
    "RunOptions",
    "RunResult",
    "run_config",
]

logger = logging.getLogger("switchboard.bench")

SPLIT = "split"
PEER = "peer"
BASELINE = "baseline"
SPLIT_CLUSTER = "split-cluster"
CONFIGS = (SPLIT, PEER, BASELINE, SPLIT_CLUSTER)  # every configuration
DEFAULT_CONFIGS = (SPLIT, PEER, BASELINE)  # what runs unless asked otherwise
SPLIT_CONFIGS = frozenset({SPLIT, SPLIT_CLUSTER})  # the split bridge: edge, workers, Redis
# Roles whose CPU is the bridge's cost; the generator and the simulator stand for Twilio and
# OpenAI and are reported beside it.
BRIDGE_ROLES = frozenset({"edge", "worker", "redis", "relay", "peer"})
PROFILED_ROLES = frozenset({"edge", "worker", "relay", "peer"})


@dataclass(frozen=True, slots=True)
class RunOptions:
    duration_s: float
    workers: int = 1
    warmup_s: float = 3.0
    ramp_rate: float = 50.0
    drain_s: float = 3.0
    redis_url: str | None = None  # None: a private redis-server per run
    log_dir: Path = Path("bench-results/logs")
    log_level: str = "INFO"
    redis_batch_ms: int = 0  # REDIS_BATCH_MS of the split bridge's edge and workers
    load: str = ECHO
    turns: TurnShape = TurnShape()  # the conversation load's callers
    delta_bytes: tuple[int, int] | None = None  # the simulator's reply deltas; None: its own
    seed: int = 0
    profile_dir: Path | None = None  # cProfile the bridge's processes over the window


@dataclass
class ProcessFigures:
    name: str
    role: str  # edge, worker, redis, relay, simulator, loadgen
    pid: int
    cpu_s: float = math.nan  # over the measured window
    cpu_per_call_min: float = math.nan
    rss_idle: int = 0  # before the first call
    rss_end: int = 0  # at the end of the window, all calls live
    rss_per_call: float = math.nan  # (end - idle) / C, bytes


@dataclass
class RunResult:
    config: str
    calls: int
    workers: int
    window_s: float
    latency: LatencySummary
    first_audio_ms: LatencySummary
    webhook_ms: LatencySummary
    frames_sent: int
    frames_lost: int
    frames_not_exact: int
    frames_duplicate: int
    sent_in_window: int
    lost_in_window: int
    failed_calls: int
    errors: list[str]
    processes: list[ProcessFigures]
    redis_memory_per_call: float = math.nan  # bytes of used_memory added per live call
    machine_busy_cores: float = math.nan  # whole machine, over the window
    other_cores: float = math.nan  # of which not the bench's processes (a shared machine)
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    load: str = ECHO
    conversation: ConversationFigures | None = None  # the conversation load's figures
    cluster: ClusterBalance | None = None  # split-cluster: how evenly its primaries were loaded
    redis_commands: list[CommandTime] = field(default_factory=list)  # the window's, costliest first

    @property
    def bridge_cpu_per_call_min(self) -> float:
        return math.fsum(p.cpu_per_call_min for p in self.processes if p.role in BRIDGE_ROLES)

    def cpu_of(self, role: str) -> float:
        """CPU seconds per call-minute of the processes of one role."""
        return math.fsum(p.cpu_per_call_min for p in self.processes if p.role == role)

    @property
    def ok(self) -> bool:
        """No audio lost or altered in either direction, and every call placed."""
        return self.frames_lost == 0 and self.frames_not_exact == 0 and self.failed_calls == 0

    @property
    def p99(self) -> float:
        """The latency the targets judge: the echo's round trip, or the conversation's worse
        direction."""
        if self.conversation is None:
            return self.latency.p99
        return worst_p99(self.conversation.up, self.conversation.down)

    def within(self, p99_limit_ms: float) -> bool:
        return self.ok and self.p99 < p99_limit_ms


def _redis_used_memory(clients: Sequence[redis.Redis]) -> int:
    """used_memory of every Redis server together (a cluster's replicas included)."""
    return sum(int(client.info("memory")["used_memory"]) for client in clients)


def _redis_command_totals(clients: Sequence[redis.Redis]) -> dict[str, tuple[int, int]]:
    return totals([client.info("commandstats") for client in clients])


def run_config(config: str, calls: int, options: RunOptions) -> RunResult:
    """One configuration at ``calls`` concurrent calls under ``options.load``, from start-up
    to teardown."""
    log_dir = options.log_dir / f"{options.load}-{config}-{calls}"
    started = time.monotonic()
    keys_error: list[str] = []
    with (
        setups.start(config, calls, options, log_dir) as setup,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-keys") as counter,
    ):
        procs = [*setup.procs, ("loadgen", "loadgen", os.getpid())]
        client = setup.redis
        cluster = setup.cluster
        counting: list[Future[dict[int, int]]] = []
        profiled = [pid for _, role, pid in procs if role in PROFILED_ROLES]
        time.sleep(0.5)  # let start-up settle before the idle figures
        idle = {pid: sample(pid) for _, _, pid in procs}
        redis_idle = _redis_used_memory(client)
        marks: dict[str, dict[int, ProcSample | None]] = {}
        redis_end: list[int] = []
        commands: list[dict[str, tuple[int, int]]] = []
        machine: list[tuple[float, float]] = []

        def window_start() -> None:
            machine.append(machine_cpu())
            marks["start"] = {pid: sample(pid) for _, _, pid in procs}
            commands.append(_redis_command_totals(client))
            if options.profile_dir is not None:
                signal_all(profiled, start=True)

        def window_end() -> None:
            machine.append(machine_cpu())
            marks["end"] = {pid: sample(pid) for _, _, pid in procs}
            redis_end.append(_redis_used_memory(client))
            commands.append(_redis_command_totals(client))
            if options.profile_dir is not None:
                signal_all(profiled, start=False)
            if cluster is not None:
                # While every call is still live, but off the event loop: a SCAN of each
                # primary would hold up the frames still in flight, at a large C for a while.
                counting.append(counter.submit(cluster.keys_by_primary))

        load = LoadConfig(
            edge_url=setup.url,
            public_url=PUBLIC_URL,
            auth_token=DEMO_AUTH_TOKEN,
            calls=calls,
            duration_s=options.duration_s,
            warmup_s=options.warmup_s,
            ramp_rate=options.ramp_rate,
            drain_s=options.drain_s,
            load=options.load,
            voice_path=setup.voice_path,
            turns=options.turns,
            seed=options.seed,
        )
        result = uvloop.run(run_load(load, window_start, window_end))
        keys = _counted(counting, keys_error)
    run = _figures(
        config, calls, options, result, procs, idle, marks, redis_idle, redis_end, started
    )
    if len(commands) == 2:
        run.redis_commands = spent(*commands)
    if cluster is not None:
        cpu = {p.pid: p.cpu_s for p in run.processes}
        run.cluster = balance(cluster.nodes, cluster.key_pattern, keys, cpu)
        run.errors += keys_error
    if options.load == CONVERSATION:
        _score(run, result, setups.probe_path(log_dir))
    if options.profile_dir is not None:
        run.extra["profiles"] = {
            name: str(options.profile_dir / f"{log_dir.name}-{role}-{pid}.pstats")
            for name, role, pid in procs
            if role in PROFILED_ROLES
        }
    if len(machine) == 2 and run.window_s > 0:
        (busy0, _), (busy1, _) = machine
        run.machine_busy_cores = (busy1 - busy0) / run.window_s
        ours = math.fsum(p.cpu_s for p in run.processes if not math.isnan(p.cpu_s))
        run.other_cores = max(0.0, (busy1 - busy0 - ours) / run.window_s)
    return run


def _counted(counting: list[Future[dict[int, int]]], errors: list[str]) -> dict[int, int] | None:
    """The keys per primary counted at the window's end; None if they were not (the window
    never ended, or the cluster did not answer: said in ``errors``)."""
    if not counting:
        return None
    try:
        return counting[0].result(timeout=60)
    except (redis.exceptions.RedisError, LookupError, TimeoutError) as exc:
        errors.append(f"keys per primary not counted: {exc!r}")
        return None


def _score(run: RunResult, result: LoadResult, probe_file: Path) -> None:
    """The conversation load's figures, once the simulator has written every session's line."""
    lines: list[dict[str, Any]] = []
    if probe_file.exists():
        lines = [json.loads(line) for line in probe_file.read_text().splitlines() if line]
    figures = score(result.callers, lines, result.window_ns)
    run.conversation = figures
    run.frames_sent = figures.up_sent + figures.down_deltas
    run.sent_in_window = figures.up_sent + figures.down_deltas
    run.frames_lost = run.lost_in_window = figures.up_lost + figures.down_lost
    run.frames_not_exact = (
        figures.up_not_exact
        + figures.down_not_exact
        + figures.down_stale_bytes
        + figures.down_garbled_bytes
    )
    if figures.probes_missing:
        run.errors.append(f"{figures.probes_missing} calls have no line from the simulator")


def _figures(
    config: str,
    calls: int,
    options: RunOptions,
    result: LoadResult,
    procs: list[tuple[str, str, int]],
    idle: dict[int, ProcSample | None],
    marks: dict[str, dict[int, ProcSample | None]],
    redis_idle: int,
    redis_end: list[int],
    started: float,
) -> RunResult:
    figures: list[ProcessFigures] = []
    start, end = marks.get("start", {}), marks.get("end", {})
    for name, role, pid in procs:
        fig = ProcessFigures(name, role, pid)
        a, b, i = start.get(pid), end.get(pid), idle.get(pid)
        if a is not None and b is not None:
            fig.cpu_s = b.cpu_s - a.cpu_s
            fig.cpu_per_call_min = cpu_per_call_minute(fig.cpu_s, calls, result.window_s)
            fig.rss_end = b.rss_bytes
        if i is not None:
            fig.rss_idle = i.rss_bytes
            if b is not None:
                fig.rss_per_call = (b.rss_bytes - i.rss_bytes) / calls
        figures.append(fig)
    failed = result.failed_calls
    first_audio = [c.first_audio_s * 1000 for c in result.calls if not math.isnan(c.first_audio_s)]
    webhook = [c.webhook_s * 1000 for c in result.calls if not math.isnan(c.webhook_s)]
    return RunResult(
        config=config,
        calls=calls,
        workers=options.workers if config in SPLIT_CONFIGS else 0,
        window_s=result.window_s,
        latency=summarize(result.latencies_ms),
        first_audio_ms=summarize(first_audio),
        webhook_ms=summarize(webhook),
        frames_sent=result.frames_sent,
        frames_lost=result.frames_lost,
        frames_not_exact=result.frames_corrupt,
        frames_duplicate=sum(c.frames_duplicate for c in result.calls),
        sent_in_window=result.sent_in_window,
        lost_in_window=result.lost_in_window,
        failed_calls=len(failed),
        errors=sorted({c.error for c in failed if c.error})[:5],
        processes=figures,
        redis_memory_per_call=(redis_end[0] - redis_idle) / calls if redis_end else math.nan,
        elapsed_s=time.monotonic() - started,
        load=options.load,
    )


def estimated_seconds(calls: int, options: RunOptions) -> float:
    """A generous guess of one run's wall time, to stay inside the bench's time budget."""
    return calls / options.ramp_rate + options.warmup_s + options.duration_s + options.drain_s + 15


Progress = Callable[[str], None]
