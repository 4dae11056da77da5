"""How evenly a ``split-cluster`` run loaded its Redis Cluster's primaries: the run's keys on
each primary while every call was live, and each node's CPU seconds over the measured window.

Pure functions over plain numbers; the runner gathers them (``runner.run_config``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ClusterBalance",
    "NodeRole",
    "PrimaryLoad",
    "ReplicaLoad",
    "balance",
    "balance_line",
    "spread",
]


@dataclass(frozen=True, slots=True)
class NodeRole:
    """A node of the run's cluster, as it was when the run started."""

    port: int
    pid: int
    primary_port: int | None = None  # a replica's primary; None for a primary

    @property
    def name(self) -> str:
        """Its name in the bench's process table: ``redis-p-PORT`` or ``redis-r-PORT``."""
        return f"redis-{'p' if self.primary_port is None else 'r'}-{self.port}"


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    port: int
    pid: int
    cpu_s: float  # over the measured window; NaN if it was not sampled


@dataclass(frozen=True, slots=True)
class PrimaryLoad:
    port: int
    pid: int
    keys: int | None  # the run's keys on it while every call was live; None: not counted
    cpu_s: float  # over the measured window; NaN if it was not sampled
    replicas: list[ReplicaLoad] = field(default_factory=list)

    @property
    def replicas_cpu_s(self) -> float:
        return math.fsum(r.cpu_s for r in self.replicas)


@dataclass(frozen=True, slots=True)
class ClusterBalance:
    key_pattern: str  # what was counted: the stack's KEY_PREFIX, then ":*"
    primaries: list[PrimaryLoad]
    keys_spread: float  # the most keys on one primary over the mean (1: even); NaN: unknown
    cpu_spread: float  # the same for the primaries' CPU seconds


def spread(values: Sequence[float | None]) -> float:
    """The largest value over the mean: 1.0 when even, the number of values when one holds
    everything; NaN when a value is missing or the mean is not positive."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return math.nan
    numbers = [float(v) for v in values if v is not None]
    mean = math.fsum(numbers) / len(numbers)
    return max(numbers) / mean if mean > 0 else math.nan


def balance(
    nodes: Sequence[NodeRole],
    key_pattern: str,
    keys_by_primary: Mapping[int, int] | None,
    cpu_s_by_pid: Mapping[int, float],
) -> ClusterBalance:
    """Each primary (in ``nodes`` order) with its keys, its CPU seconds and its replicas'.

    ``keys_by_primary``: port → keys, None when they could not be counted; ``cpu_s_by_pid``:
    the window's CPU seconds of each process sampled."""
    primaries = []
    for node in nodes:
        if node.primary_port is not None:
            continue
        replicas = [
            ReplicaLoad(r.port, r.pid, cpu_s_by_pid.get(r.pid, math.nan))
            for r in nodes
            if r.primary_port == node.port
        ]
        keys = None if keys_by_primary is None else keys_by_primary.get(node.port)
        cpu = cpu_s_by_pid.get(node.pid, math.nan)
        primaries.append(PrimaryLoad(node.port, node.pid, keys, cpu, replicas))
    return ClusterBalance(
        key_pattern=key_pattern,
        primaries=primaries,
        keys_spread=spread([p.keys for p in primaries]),
        cpu_spread=spread([p.cpu_s for p in primaries]),
    )


def _f(value: float, digits: int) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _each(values: Sequence[str]) -> str:
    return " / ".join(values)


def balance_line(b: ClusterBalance) -> str:
    """One line: the primaries' keys and CPU, how far the busiest is above the mean, and
    their replicas' CPU, primary by primary."""
    ps = b.primaries
    keys = _each(["—" if p.keys is None else str(p.keys) for p in ps])
    return (
        f"primaries {_each([str(p.port) for p in ps])}: keys {keys} "
        f"(max ×{_f(b.keys_spread, 2)} the mean), CPU s {_each([_f(p.cpu_s, 2) for p in ps])} "
        f"(×{_f(b.cpu_spread, 2)}); their replicas' CPU s "
        f"{_each([_f(p.replicas_cpu_s, 2) for p in ps])}"
    )
