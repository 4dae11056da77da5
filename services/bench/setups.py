"""The processes of each configuration, started fresh for one run and stopped after it.

Each set-up yields where the load generator calls (the webhook's base URL and path), the
processes to account for (name, role, pid), and a Redis client when there is a Redis. Every
configuration gets its own realtime simulator: echo mode for the echo load; conversation mode
with ``--probe`` for the conversation load, its figures written to ``probe_path(log_dir)``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from services import devstack
from services.bench import peer
from services.bench.loadgen import CONVERSATION, VOICE_PATH
from services.bench.profiling import profile_env
from services.devstack import ManagedProcess, RedisHandle, Stack, StackConfig, spawn, wait_for

if TYPE_CHECKING:
    from services.bench.runner import RunOptions

__all__ = ["Setup", "probe_path", "start"]

Proc = tuple[str, str, int]  # name, role, pid


@dataclass
class Setup:
    url: str  # http://127.0.0.1:port of the server Twilio's webhook reaches
    voice_path: str
    procs: list[Proc] = field(default_factory=list)
    redis: redis.Redis | None = None


def probe_path(log_dir: Path) -> Path:
    return log_dir / "probe.jsonl"


def _ready(process: ManagedProcess, port: int, what: str) -> None:
    def check() -> bool:
        if not process.alive():
            raise RuntimeError(f"{what} exited:\n{process.log()[-2000:]}")
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    wait_for(check, 20, what)


def _env(options: RunOptions, log_dir: Path, role: str) -> dict[str, str]:
    """The profiling hook's environment when profiling (``{pid}``: filled in by the hook)."""
    if options.profile_dir is None:
        return {}
    options.profile_dir.mkdir(parents=True, exist_ok=True)
    return profile_env(options.profile_dir / f"{log_dir.name}-{role}-{{pid}}.pstats")


def _simulator(options: RunOptions, log_dir: Path) -> ManagedProcess:
    """Spawn the simulator; the caller waits for it with ``_ready`` once it has started the
    other processes, so that their start-ups overlap.

    Started here rather than by Stack.start: its --record would keep and write every
    session's audio, a cost of the test harness that has nothing to do with the bridge.
    """
    port = devstack.free_port()
    args = ["--port", str(port), "--mode", "echo"]
    if options.load == CONVERSATION:
        log_dir.mkdir(parents=True, exist_ok=True)
        probe_path(log_dir).unlink(missing_ok=True)
        args = ["--port", str(port), "--mode", "conversation", "--probe", str(probe_path(log_dir))]
        args += ["--seed", str(options.seed)]
        if options.delta_bytes is not None:
            low, high = options.delta_bytes
            args += ["--min-delta-bytes", str(low), "--max-delta-bytes", str(high)]
    env = {"LOG_LEVEL": options.log_level}
    return spawn("realtime-sim", "services.realtime_sim", args, env, log_dir, port)


@contextlib.contextmanager
def _redis(options: RunOptions) -> Iterator[RedisHandle]:
    if options.redis_url:
        handle = devstack.provide_redis(options.redis_url)
    else:
        handle = devstack.start_redis_server()
    try:
        yield handle
    finally:
        handle.close()


@contextlib.contextmanager
def _split(calls: int, options: RunOptions, log_dir: Path) -> Iterator[Setup]:
    with _redis(options) as handle:
        client = redis.Redis.from_url(handle.url)
        batch = str(options.redis_batch_ms)
        edge_env = {"EDGE_MAX_CALLS": "100000", "DRAIN_TIMEOUT": "2", "REDIS_BATCH_MS": batch}
        worker_env = {
            "MAX_CALLS": str(min(10_000, calls + 10)),
            "DRAIN_MODE": "handoff",
            "REDIS_BATCH_MS": batch,
        }
        stack = Stack(
            StackConfig(
                redis_url=handle.url,
                log_dir=log_dir,
                workers=options.workers,
                log_level=options.log_level,
                edge_env=edge_env | _env(options, log_dir, "edge"),
                worker_env=worker_env | _env(options, log_dir, "worker"),
            )
        )
        try:
            stack.sim = _simulator(options, log_dir)
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
            yield Setup(stack.edge_urls[0], VOICE_PATH, procs, client)
        finally:
            stack.stop()
            client.close()


@contextlib.contextmanager
def _one_process(options: RunOptions, log_dir: Path, role: str) -> Iterator[Setup]:
    """The peer or the lean relay, and their simulator."""
    sim = _simulator(options, log_dir)
    bridge: ManagedProcess | None = None
    module, path = ("services.bench.peer", peer.VOICE_PATH)
    if role == "relay":
        module, path = ("services.bench.baseline", VOICE_PATH)
    try:
        port = devstack.free_port()
        url = f"ws://127.0.0.1:{sim.port}/v1/realtime"
        args = ["--port", str(port), "--realtime-url", url]
        bridge = spawn(role, module, args, _env(options, log_dir, role), log_dir, port)
        _ready(bridge, port, role)
        _ready(sim, sim.port, "realtime simulator")
        procs = [(role, role, bridge.popen.pid), ("realtime-sim", "simulator", sim.popen.pid)]
        yield Setup(f"http://127.0.0.1:{port}", path, procs)
    finally:
        if bridge is not None:
            bridge.stop()
        sim.stop()


def start(
    config: str, calls: int, options: RunOptions, log_dir: Path
) -> contextlib.AbstractContextManager[Setup]:
    """The set-up of ``config`` (split, peer or baseline) for ``calls`` calls."""
    if config == "split":
        return _split(calls, options, log_dir)
    return _one_process(options, log_dir, "peer" if config == "peer" else "relay")
