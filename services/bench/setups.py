"""The processes of each configuration, started fresh for one run and stopped after it.

Each set-up yields where the load generator calls (the webhook's base URL and path), the
processes to account for (name, role, pid), a client of each Redis server when there is Redis,
and, for ``split-cluster``, its cluster. Every configuration gets its own realtime simulator:
echo mode for the echo load; conversation mode with ``--probe`` for the conversation load, its
figures written to ``probe_path(log_dir)``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from services import devcluster, devstack
from services.bench import peer
from services.bench.balance import NodeRole
from services.bench.loadgen import CONVERSATION, VOICE_PATH
from services.bench.profiling import profile_env
from services.devcluster import RedisClusterHandle
from services.devstack import ManagedProcess, RedisHandle, Stack, StackConfig, spawn, wait_for

if TYPE_CHECKING:
    from services.bench.runner import RunOptions

__all__ = ["CLUSTER_PRIMARIES", "CLUSTER_REPLICAS", "ClusterView", "Setup", "probe_path", "start"]

Proc = tuple[str, str, int]  # name, role, pid

#: split-cluster's Redis Cluster: the smallest a Redis Cluster can be, each primary with a
#: replica, as a production cluster would run.
CLUSTER_PRIMARIES = 3
CLUSTER_REPLICAS = 1


@dataclass(frozen=True)
class ClusterView:
    """split-cluster's Redis Cluster, as the runner reads it: its nodes as they were when the
    run started, and the run's keys on each primary."""

    handle: RedisClusterHandle
    key_prefix: str  # the stack's KEY_PREFIX: every key of the run starts with it and ":"
    nodes: list[NodeRole]

    @property
    def key_pattern(self) -> str:
        return f"{self.key_prefix}:*"

    def keys_by_primary(self) -> dict[int, int]:
        """Port of each primary -> the run's keys on it now (a SCAN of each)."""
        return self.handle.keys_by_primary(self.key_pattern)


@dataclass
class Setup:
    url: str  # http://127.0.0.1:port of the server Twilio's webhook reaches
    voice_path: str
    procs: list[Proc] = field(default_factory=list)
    # A plain client of each Redis server, for INFO, which is per server: the split's one
    # Redis, or every node of split-cluster's cluster (primaries and replicas); none without.
    redis: list[redis.Redis] = field(default_factory=list)
    cluster: ClusterView | None = None  # split-cluster only


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
def _split_stack(
    calls: int, options: RunOptions, log_dir: Path, redis_url: str, redis_cluster: bool
) -> Iterator[Stack]:
    """The split's edge and workers against the Redis at ``redis_url`` (a node of a Redis
    Cluster if ``redis_cluster``), and their simulator, all ready; stopped after."""
    batch = str(options.redis_batch_ms)
    edge_env = {"EDGE_MAX_CALLS": "100000", "DRAIN_TIMEOUT": "2", "REDIS_BATCH_MS": batch}
    worker_env = {
        "MAX_CALLS": str(min(10_000, calls + 10)),
        "DRAIN_MODE": "handoff",
        "REDIS_BATCH_MS": batch,
    }
    stack = Stack(
        StackConfig(
            redis_url=redis_url,
            redis_cluster=redis_cluster,
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
        yield stack
    finally:
        stack.stop()


def _split_setup(
    stack: Stack,
    redis_procs: list[Proc],
    clients: list[redis.Redis],
    cluster: ClusterView | None = None,
) -> Setup:
    """The edges, the workers, the Redis servers, then the simulator: the process table's
    order."""
    assert stack.sim is not None
    procs = [(e.name, "edge", e.popen.pid) for e in stack.edges]
    procs += [(w.name, "worker", w.popen.pid) for w in stack.workers]
    procs += [*redis_procs, ("realtime-sim", "simulator", stack.sim.popen.pid)]
    return Setup(stack.edge_urls[0], VOICE_PATH, procs, clients, cluster)


@contextlib.contextmanager
def _split(calls: int, options: RunOptions, log_dir: Path) -> Iterator[Setup]:
    with _redis(options) as handle:
        client = redis.Redis.from_url(handle.url)
        try:
            redis_pid = int(client.info("server")["process_id"])
            with _split_stack(calls, options, log_dir, handle.url, redis_cluster=False) as stack:
                yield _split_setup(stack, [("redis", "redis", redis_pid)], [client])
        finally:
            client.close()


def _cluster_nodes(handle: RedisClusterHandle) -> list[NodeRole]:
    """The cluster's nodes shard by shard: each primary, then the nodes replicating it."""
    primaries = handle.primaries()
    ports = {node.port for node in primaries}
    replicas = [node for node in handle.nodes if node.port not in ports]
    primary_of = {node: int(node.client().info("replication")["master_port"]) for node in replicas}
    nodes = []
    for primary in primaries:
        nodes.append(NodeRole(primary.port, primary.process.pid))
        nodes += [
            NodeRole(node.port, node.process.pid, primary.port)
            for node in replicas
            if primary_of[node] == primary.port
        ]
    return nodes


@contextlib.contextmanager
def _split_cluster(calls: int, options: RunOptions, log_dir: Path) -> Iterator[Setup]:
    """The split stack against a private Redis Cluster (never ``--redis-url``), every node
    of which is accounted as role redis: replication is part of what a cluster costs."""
    with devcluster.redis_cluster(CLUSTER_PRIMARIES, CLUSTER_REPLICAS) as handle:
        nodes = _cluster_nodes(handle)
        with _split_stack(calls, options, log_dir, handle.url, redis_cluster=True) as stack:
            view = ClusterView(handle, stack.config.key_prefix, nodes)
            procs = [(node.name, "redis", node.pid) for node in nodes]
            yield _split_setup(stack, procs, [node.client() for node in handle.nodes], view)


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
    """The set-up of ``config`` (split, split-cluster, peer or baseline) for ``calls`` calls."""
    if config == "split":
        return _split(calls, options, log_dir)
    if config == "split-cluster":
        return _split_cluster(calls, options, log_dir)
    return _one_process(options, log_dir, "peer" if config == "peer" else "relay")
