"""Start a configuration's processes, run the load against it, account for every process.

Two configurations, each started fresh for every C so that memory and CPU start from idle:

- ``split``: a private redis-server (or ``--redis-url``), the realtime simulator in echo mode,
  one edge and N workers, through ``services.devstack``;
- ``baseline``: the simulator and the direct relay of ``services.bench.baseline``.

CPU seconds and RSS come from /proc at the edges of the measured window; the load generator
runs in this process and is accounted the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import uvloop

from services.bench.loadgen import LoadConfig, LoadResult, run_load
from services.bench.procstat import ProcSample, machine_cpu, sample
from services.bench.stats import LatencySummary, cpu_per_call_minute, summarize
from services.devstack import (
    DEMO_AUTH_TOKEN,
    PUBLIC_URL,
    ManagedProcess,
    RedisHandle,
    Stack,
    StackConfig,
    free_port,
    provide_redis,
    spawn,
    start_redis_server,
    wait_for,
)

__all__ = ["BASELINE", "SPLIT", "ProcessFigures", "RunOptions", "RunResult", "run_config"]

logger = logging.getLogger("switchboard.bench")

SPLIT = "split"
BASELINE = "baseline"
# Roles whose CPU is the bridge's cost; the generator and the simulator stand for Twilio and
# OpenAI and are reported beside it.
BRIDGE_ROLES = frozenset({"edge", "worker", "redis", "relay"})


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

    @property
    def bridge_cpu_per_call_min(self) -> float:
        return math.fsum(p.cpu_per_call_min for p in self.processes if p.role in BRIDGE_ROLES)

    @property
    def ok(self) -> bool:
        """No frame lost or altered, and every call placed."""
        return self.frames_lost == 0 and self.frames_not_exact == 0 and self.failed_calls == 0

    def within(self, p99_limit_ms: float) -> bool:
        return self.ok and self.latency.p99 < p99_limit_ms


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _ready(process: ManagedProcess, port: int, what: str) -> None:
    def check() -> bool:
        if not process.alive():
            raise RuntimeError(f"{what} exited:\n{process.log()[-2000:]}")
        return _port_open(port)

    wait_for(check, 20, what)


def _simulator(log_dir: Path, log_level: str) -> ManagedProcess:
    """Spawn the simulator in echo mode; the caller waits for it with ``_ready`` once it has
    started the other processes, so that their start-ups overlap.

    Started here rather than by Stack.start: its --record would keep and write every
    session's audio, a cost of the test harness that has nothing to do with the bridge.
    """
    port = free_port()
    return spawn(
        "realtime-sim",
        "services.realtime_sim",
        ["--port", str(port), "--mode", "echo"],
        {"LOG_LEVEL": log_level},
        log_dir,
        port,
    )


@contextlib.contextmanager
def _redis(options: RunOptions) -> Iterator[RedisHandle]:
    handle = provide_redis(options.redis_url) if options.redis_url else start_redis_server()
    try:
        yield handle
    finally:
        handle.close()


@contextlib.contextmanager
def _split(
    calls: int, options: RunOptions, log_dir: Path
) -> Iterator[tuple[str, list[tuple[str, str, int]], redis.Redis]]:
    with _redis(options) as handle:
        client = redis.Redis.from_url(handle.url)
        stack = Stack(
            StackConfig(
                redis_url=handle.url,
                log_dir=log_dir,
                workers=options.workers,
                sim_mode="echo",
                log_level=options.log_level,
                edge_env={
                    "EDGE_MAX_CALLS": "100000",
                    "DRAIN_TIMEOUT": "2",
                    "REDIS_BATCH_MS": str(options.redis_batch_ms),
                },
                worker_env={
                    "MAX_CALLS": str(min(10_000, calls + 10)),
                    "DRAIN_MODE": "handoff",
                    "REDIS_BATCH_MS": str(options.redis_batch_ms),
                },
            )
        )
        try:
            stack.sim = _simulator(log_dir, options.log_level)
            stack.add_edge()
            for _ in range(options.workers):
                stack.add_worker()  # connects to the simulator only when it takes a call
            _ready(stack.sim, stack.sim.port, "realtime simulator")
            redis_pid = int(client.info("server")["process_id"])
            procs = [(e.name, "edge", e.popen.pid) for e in stack.edges]
            procs += [(w.name, "worker", w.popen.pid) for w in stack.workers]
            procs += [
                ("redis", "redis", redis_pid),
                ("realtime-sim", "simulator", stack.sim.popen.pid),
            ]
            yield stack.edge_urls[0], procs, client
        finally:
            stack.stop()
            client.close()


@contextlib.contextmanager
def _baseline(
    options: RunOptions, log_dir: Path
) -> Iterator[tuple[str, list[tuple[str, str, int]], None]]:
    sim = _simulator(log_dir, options.log_level)
    relay: ManagedProcess | None = None
    try:
        port = free_port()
        url = f"ws://127.0.0.1:{sim.port}/v1/realtime"
        relay = spawn(
            "relay",
            "services.bench.baseline",
            ["--port", str(port), "--realtime-url", url],
            {},
            log_dir,
            port,
        )
        _ready(relay, port, "baseline relay")
        _ready(sim, sim.port, "realtime simulator")
        procs = [("relay", "relay", relay.popen.pid), ("realtime-sim", "simulator", sim.popen.pid)]
        yield f"http://127.0.0.1:{port}", procs, None
    finally:
        if relay is not None:
            relay.stop()
        sim.stop()


def _redis_used_memory(client: redis.Redis | None) -> int:
    if client is None:
        return 0
    return int(client.info("memory")["used_memory"])


def run_config(config: str, calls: int, options: RunOptions) -> RunResult:
    """One configuration at ``calls`` concurrent calls, from start-up to teardown."""
    log_dir = options.log_dir / f"{config}-{calls}"
    setup: contextlib.AbstractContextManager[
        tuple[str, list[tuple[str, str, int]], redis.Redis | None]
    ] = _split(calls, options, log_dir) if config == SPLIT else _baseline(options, log_dir)
    started = time.monotonic()
    with setup as (url, procs, client):
        procs = [*procs, ("loadgen", "loadgen", os.getpid())]
        time.sleep(0.5)  # let start-up settle before the idle figures
        idle = {pid: sample(pid) for _, _, pid in procs}
        redis_idle = _redis_used_memory(client)
        marks: dict[str, dict[int, ProcSample | None]] = {}
        redis_end: list[int] = []
        machine: list[tuple[float, float]] = []

        def window_start() -> None:
            machine.append(machine_cpu())
            marks["start"] = {pid: sample(pid) for _, _, pid in procs}

        def window_end() -> None:
            machine.append(machine_cpu())
            marks["end"] = {pid: sample(pid) for _, _, pid in procs}
            redis_end.append(_redis_used_memory(client))

        load = LoadConfig(
            edge_url=url,
            public_url=PUBLIC_URL,
            auth_token=DEMO_AUTH_TOKEN,
            calls=calls,
            duration_s=options.duration_s,
            warmup_s=options.warmup_s,
            ramp_rate=options.ramp_rate,
            drain_s=options.drain_s,
        )
        result = uvloop.run(run_load(load, window_start, window_end))
    run = _figures(
        config, calls, options, result, procs, idle, marks, redis_idle, redis_end, started
    )
    if len(machine) == 2 and run.window_s > 0:
        (busy0, _), (busy1, _) = machine
        run.machine_busy_cores = (busy1 - busy0) / run.window_s
        ours = math.fsum(p.cpu_s for p in run.processes if not math.isnan(p.cpu_s))
        run.other_cores = max(0.0, (busy1 - busy0 - ours) / run.window_s)
    return run


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
        workers=options.workers if config == SPLIT else 0,
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
    )


def estimated_seconds(calls: int, options: RunOptions) -> float:
    """A generous guess of one run's wall time, to stay inside the bench's time budget."""
    return calls / options.ramp_rate + options.warmup_s + options.duration_s + options.drain_s + 15


Progress = Callable[[str], None]
