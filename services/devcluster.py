"""A private, throw-away Redis Cluster on loopback, for the tests and the bench.

``start_redis_cluster()`` starts ``primaries * (1 + replicas_per_primary)`` ``redis-server``
nodes in cluster mode, joins them with ``redis-cli --cluster create`` and returns once every
node reports a healthy cluster, knows every other and routes every slot the same way. The
nodes keep nothing on disk but their cluster config and log, in one temporary directory that
``close()`` removes. Roles are the cluster's to say: the handle asks the nodes which are
primaries, so its answers stay right after a failover.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.crc import key_slot

from services import devstack
from services.devstack import LOCALHOST, wait_for

__all__ = ["ClusterNode", "RedisClusterHandle", "redis_cluster", "start_redis_cluster"]

SLOTS = 16384
STARTUP_TIMEOUT_S = 20.0
#: Redis abandons a manual failover that has not completed in 5 s (CLUSTER_MF_TIMEOUT); one
#: still not done after that is asked for again.
MANUAL_FAILOVER_S = 5.0
#: Flags of a node that is not (yet, or no longer) a working member of the cluster.
_UNHEALTHY_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # redis-cli colours its output even into a pipe


@dataclass(eq=False)  # a node is itself, not its fields: nodes go in sets and dict keys
class ClusterNode:
    """One ``redis-server`` of the cluster; whether it is a primary changes with failovers."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _client: redis.Redis | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def alive(self) -> bool:
        return self.process.poll() is None

    def client(self) -> redis.Redis:
        """A plain client of this node alone (no redirections), replies decoded to str."""
        if self._client is None:
            self._client = redis.Redis(
                host=LOCALHOST,
                port=self.port,
                decode_responses=True,
                socket_connect_timeout=1,
                socket_timeout=2,
            )
        return self._client

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --- what the nodes say ------------------------------------------------------------------


@dataclass(frozen=True)
class _Peer:
    """One line of a node's CLUSTER NODES: how it sees one member (``myself`` included)."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a master
    link: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _slot_range(token: str) -> tuple[int, int] | None:
    if token.startswith("["):  # a slot being migrated or imported: not served here yet
        return None
    first, _, last = token.partition("-")
    return int(first), int(last or first)


def _cluster(node: ClusterNode, subcommand: str) -> str:
    """CLUSTER ``subcommand``'s reply as Redis sent it: as two words the command has no reply
    parser in redis-py (its parsed forms differ between versions; the text is the spec's)."""
    reply: str = node.client().execute_command("CLUSTER", subcommand)  # type: ignore[no-untyped-call]
    return reply


def _setslot(node: ClusterNode, slot: int, *state: str) -> None:
    node.client().execute_command("CLUSTER", "SETSLOT", slot, *state)  # type: ignore[no-untyped-call]


def _peers(node: ClusterNode) -> list[_Peer]:
    peers = []
    for line in _cluster(node, "NODES").splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",")[0].split("@")[0]  # ip:port@cport[,hostname]
        ranges = (_slot_range(token) for token in parts[8:])
        peers.append(
            _Peer(
                id=parts[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                master_id=parts[3],
                link=parts[7],
                slots=tuple(r for r in ranges if r is not None),
            )
        )
    return peers


def _myself(node: ClusterNode) -> _Peer:
    """The node's own line: its own word on its role and its slots."""
    return next(peer for peer in _peers(node) if "myself" in peer.flags)


def _cluster_info(node: ClusterNode) -> dict[str, str]:
    lines = _cluster(node, "INFO").splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _replication(node: ClusterNode) -> dict[str, Any]:
    return node.client().info("replication")


class _Member(NamedTuple):
    """A member of the cluster as one node sees it."""

    port: int
    is_master: bool
    master_port: int | None
    slots: tuple[tuple[int, int], ...]


def _topology(node: ClusterNode, ports: set[int]) -> frozenset[_Member] | None:
    """How ``node`` sees the members on ``ports``; None while it sees one of them failing,
    unreachable or not yet introduced."""
    peers = [peer for peer in _peers(node) if peer.port in ports]
    if any(peer.flags & _UNHEALTHY_FLAGS or peer.link != "connected" for peer in peers):
        return None
    port_of = {peer.id: peer.port for peer in peers}
    return frozenset(
        _Member(peer.port, peer.is_master, port_of.get(peer.master_id), peer.slots)
        for peer in peers
    )


def _polled(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check`` for ``wait_for``: a node that does not answer (yet) means "not yet"."""

    def poll() -> bool:
        try:
            return check()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False

    return poll


# --- the cluster -------------------------------------------------------------------------


class RedisClusterHandle:
    """A running cluster: its nodes, whatever their roles now, and the directory they use."""

    def __init__(self, nodes: list[ClusterNode], directory: Path) -> None:
        self.nodes = nodes
        self.directory = directory

    @property
    def url(self) -> str:
        """The seed URL clients start from: the first node's (cluster clients find the rest)."""
        return self.nodes[0].url

    def _reachable(self) -> list[ClusterNode]:
        # A node a test has killed or stopped is nobody's primary or replica.
        nodes = []
        for node in self.nodes:
            if node.alive():
                with contextlib.suppress(
                    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
                ):
                    node.client().ping()
                    nodes.append(node)
        return nodes

    def primaries(self) -> list[ClusterNode]:
        """The nodes that are primaries now, each by its own account, in ``nodes`` order."""
        return [node for node in self._reachable() if _myself(node).is_master]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        """A node replicating ``primary`` now (the first one, in ``nodes`` order)."""
        primary_id = _myself(primary).id
        for node in self._reachable():
            if node is not primary and _myself(node).master_id == primary_id:
                return node
        raise LookupError(f"no node replicates the one on port {primary.port}")

    def node_for_key(self, key: str) -> ClusterNode:
        """The primary that serves ``key``'s hash slot now."""
        slot = key_slot(key.encode())
        for node in self.primaries():
            if _myself(node).serves(slot):
                return node
        raise LookupError(f"no primary serves slot {slot} (key {key!r})")

    def failover(self, primary: ClusterNode, timeout_s: float = 10) -> ClusterNode:
        """Promote ``primary``'s replica with a manual CLUSTER FAILOVER (no data lost: the
        replica first catches up); return it once it is primary, ``primary`` replicates it
        and every node has the new primary serve its slots, in a healthy cluster.

        Redis lets a node stand for election again only 4 x node-timeout (8 s) after its last
        one: failing a shard over and straight back again waits for that."""
        deadline = time.monotonic() + timeout_s
        replica = self.replica_of(primary)
        asked_at: float | None = None

        def remaining() -> float:
            return max(deadline - time.monotonic(), 0.05)

        def done() -> bool:
            nonlocal asked_at
            if _replication(replica)["role"] != "master":
                # Redis drops a manual failover not done in 5 s (one that had to wait for
                # the election timer above): ask again.
                if asked_at is None or time.monotonic() - asked_at >= MANUAL_FAILOVER_S:
                    _cluster(replica, "FAILOVER")
                    asked_at = time.monotonic()
                return False
            demoted = _replication(primary)
            return (
                demoted["role"] == "slave"
                and demoted.get("master_port") == replica.port
                and self._healthy(roles=False)  # the next failover waits for the rest
            )

        what = f"failover from port {primary.port} to port {replica.port}"
        stage = "the cluster settling first"
        try:
            # The primary takes the replica's request only if it knows it as its replica,
            # and the other primaries vote for it only if they do: a new cluster (or one just
            # failed over) may not have gossiped that around yet. And the replica catches up
            # with its primary's replication offset first: its link must be up.
            wait_for(_polled(self._healthy), remaining(), stage)
            stage = "the promotion"
            wait_for(_polled(done), remaining(), stage)
        except TimeoutError:
            raise TimeoutError(
                f"{what}: {stage} not done within {timeout_s:g}s:\n{self.describe()}"
            ) from None
        return replica

    def migrate_slot(self, slot: int, target: ClusterNode, timeout_s: float = 10) -> ClusterNode:
        """Move ``slot`` and its keys to the primary ``target`` while clients go on using them,
        as a resharding does (``redis-cli --cluster reshard``, and the steps of the cluster
        spec): the target imports, the source migrates, the keys go over a batch at a time
        (``MIGRATE``; clients meanwhile follow ``ASK`` to a key already moved, and retry on
        ``TRYAGAIN`` a command whose keys are split), then every primary is told the new owner
        (the target first). Returns the node that served the slot, once every node agrees."""
        source = next(node for node in self.primaries() if _myself(node).serves(slot))
        if source is target:
            raise ValueError(f"slot {slot} is on port {target.port} already")
        source_id, target_id = _myself(source).id, _myself(target).id
        _setslot(target, slot, "IMPORTING", source_id)
        _setslot(source, slot, "MIGRATING", target_id)
        client = source.client()
        # A key created meanwhile goes to the target (ASK), so this ends with the slot empty.
        while keys := client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):  # type: ignore[no-untyped-call]
            client.execute_command(  # type: ignore[no-untyped-call]
                "MIGRATE", LOCALHOST, target.port, "", 0, 5000, "KEYS", *keys
            )
        others = [node for node in self.primaries() if node not in (source, target)]
        for node in (target, source, *others):
            _setslot(node, slot, "NODE", target_id)

        def agreed() -> bool:
            return self._healthy(roles=False) and all(
                _myself(node).serves(slot) == (node is target) for node in self.primaries()
            )

        wait_for(_polled(agreed), timeout_s, f"slot {slot} served by port {target.port}")
        return source

    def _healthy(self, primaries: int | None = None, roles: bool = True) -> bool:
        """Every live node: cluster_state:ok with every slot served, every live member known
        (connected, none failing), the same primary for every slot and, if a replica, its link
        to its primary up; when given, exactly ``primaries`` primaries. ``roles``: and the same
        view of who replicates whom (a node's change of role reaches the others only with its
        next ping, up to node-timeout/2 later, where new slot owners are broadcast at once)."""
        live = [node for node in self.nodes if node.alive()]
        ports = {node.port for node in live}
        views = set()
        masters = 0
        for node in live:
            info = _cluster_info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            view = _topology(node, ports)
            if view is None or len(view) != len(ports):  # not every member known yet
                return False
            views.add(view if roles else frozenset(m for m in view if m.slots))
            replication = _replication(node)
            if replication["role"] == "master":
                masters += 1
            elif replication.get("master_link_status") != "up":
                return False
        return len(views) == 1 and (primaries is None or masters == primaries)

    def keys_by_primary(self, pattern: str) -> dict[int, int]:
        """Port of each primary -> how many of its keys match ``pattern`` (SCAN)."""
        return {
            node.port: sum(1 for _ in node.client().scan_iter(match=pattern, count=1000))
            for node in self.primaries()
        }

    def delete_matching(self, pattern: str) -> None:
        """Delete the keys matching ``pattern`` on every primary, and no others."""
        for node in self.primaries():
            client = node.client()
            # One DEL per key: keys of different slots in one DEL are a CROSSSLOT error, even
            # on a single node.
            with client.pipeline(transaction=False) as pipe:
                for key in client.scan_iter(match=pattern, count=1000):
                    pipe.delete(key)
                pipe.execute()

    def describe(self) -> str:
        """Each node's port, state and the end of its log: for error messages."""
        parts = []
        for node in self.nodes:
            state = "running" if node.alive() else f"exited {node.process.returncode}"
            parts.append(f"--- node {node.port} ({state}):\n{node.log()[-1500:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after 10 s) and remove their directory."""
        for node in self.nodes:
            node.close_client()
            if node.alive():
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (Debian: apt-get install {package})")
    return path


def _distinct_ports(count: int) -> list[int]:
    # Through the module, not imported by name: the test suite swaps devstack.free_port for
    # its per-process allocator (tests/conftest.py). Outside it the kernel may hand out a port
    # it has just handed out, hence the check.
    ports: list[int] = []
    while len(ports) < count:
        port = devstack.free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _start_node(
    server: str, port: int, bus_port: int, directory: Path, full_coverage: bool
) -> ClusterNode:
    log_path = directory / f"node-{port}.log"
    args = [
        server,
        *("--port", str(port), "--bind", LOCALHOST),
        *("--cluster-enabled", "yes"),
        *("--cluster-config-file", str(directory / f"nodes-{port}.conf")),
        # The bus on a port of its own, not port + 10000: that one could be anybody's.
        *("--cluster-port", str(bus_port)),
        *("--cluster-node-timeout", "2000"),
        # A replica may always take over, however long it has been cut off from its primary.
        *("--cluster-replica-validity-factor", "0"),
        *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        # A replica's first sync starts at once, instead of waiting 5 s for other replicas.
        *("--repl-diskless-sync-delay", "0"),
        # yes (Redis's default): while any slot has no primary, every node refuses every
        # command; no: only the commands of the slots without one.
        *("--cluster-require-full-coverage", "yes" if full_coverage else "no"),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    return ClusterNode(port, process, log_path)


def start_redis_cluster(
    primaries: int = 3, replicas_per_primary: int = 1, *, full_coverage: bool = True
) -> RedisClusterHandle:
    """A private Redis Cluster on loopback: every slot served, every node agreeing who
    serves it, every replica linked to its primary. ``full_coverage``: the nodes'
    cluster-require-full-coverage."""
    server = _binary("redis-server", "redis-server")
    cli = _binary("redis-cli", "redis-tools")
    if primaries < 3:
        raise ValueError(f"a Redis Cluster needs at least 3 primaries, not {primaries}")
    if replicas_per_primary < 0:
        raise ValueError(f"replicas_per_primary must be 0 or more, not {replicas_per_primary}")
    count = primaries * (1 + replicas_per_primary)
    ports = _distinct_ports(2 * count)  # each node's own port, then each node's bus port
    handle = RedisClusterHandle([], Path(tempfile.mkdtemp(prefix="switchboard-cluster-")))
    try:
        for port, bus_port in zip(ports[:count], ports[count:], strict=True):
            node = _start_node(server, port, bus_port, handle.directory, full_coverage)
            handle.nodes.append(node)

        def running() -> None:
            if not all(node.alive() for node in handle.nodes):
                raise RuntimeError(f"a Redis Cluster node exited:\n{handle.describe()}")

        def answering() -> bool:
            running()
            return all(node.client().ping() for node in handle.nodes)

        def ready() -> bool:
            running()
            # Who replicates whom is failover's to wait for: it takes about 1 s more to spread.
            return handle._healthy(primaries, roles=False)

        wait_for(_polled(answering), STARTUP_TIMEOUT_S, "Redis Cluster nodes")
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"{LOCALHOST}:{node.port}" for node in handle.nodes)]
            + ["--cluster-replicas", str(replicas_per_primary), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_S,
        )
        if create.returncode != 0:
            output = _ANSI.sub("", create.stdout + create.stderr)
            raise RuntimeError(
                f"redis-cli --cluster create failed (exit {create.returncode}):\n{output}"
            )
        try:
            wait_for(_polled(ready), STARTUP_TIMEOUT_S, "Redis Cluster")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{handle.describe()}") from None
    except BaseException:
        handle.close()
        raise
    return handle


@contextlib.contextmanager
def redis_cluster(
    primaries: int = 3, replicas_per_primary: int = 1, *, full_coverage: bool = True
) -> Iterator[RedisClusterHandle]:
    """``start_redis_cluster`` for a ``with`` block: the cluster is gone after it."""
    handle = start_redis_cluster(primaries, replicas_per_primary, full_coverage=full_coverage)
    try:
        yield handle
    finally:
        handle.close()
