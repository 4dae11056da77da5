"""What every call session of a worker shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis

from services.realtime_worker.metrics import WorkerMetrics
from services.realtime_worker.realtime_client import open_realtime
from services.realtime_worker.session_setup import Connector
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.timing import CallTiming
from services.realtime_worker.tools import Tool
from shared.agents import DEFAULT_AGENT, Agent, Agents
from shared.clock import SYSTEM_CLOCK, Clock
from shared.keys import Keys
from shared.streams import BatchWriter, FanInReader

__all__ = ["LeaseClock", "WorkerContext"]


class LeaseClock:
    """When this worker last knew its leases to be its own.

    A worker that was paused (SIGSTOP, a stalled VM) past its alive key's TTL may wake up after
    the edges took its calls from it; until its next heartbeat says otherwise it must not speak
    on them, or the caller would hear both. (Fenced writes refuse such audio anyway; this keeps
    it from being sent at all.) ``ttl_s``: the alive key's TTL; None: always valid (tests).
    """

    __slots__ = ("clock", "confirmed_at", "kept", "ttl_s")

    def __init__(self, ttl_s: float | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.confirmed_at = clock.monotonic()
        #: On a cluster: per slot group, when that group's alive key last vouched for it.
        self.kept: dict[str, float] = {}

    def confirm(self, asked_at: float) -> None:
        """The renewal sent at ``asked_at`` (monotonic) succeeded."""
        self.confirmed_at = max(self.confirmed_at, asked_at)

    def keep_alive(self, asked_at: float, answered_at: float, group: str | None = None) -> None:
        """The alive key (of slot ``group`` on a cluster) was renewed by a SET sent at
        ``asked_at`` and answered at ``answered_at`` (monotonic). It confirms the leases (of
        that group's calls) only if the key cannot have lapsed since they were last
        confirmed; after a longer gap, only a lease renewal can tell."""
        if self.ttl_s is None or answered_at - self._latest(group) >= self.ttl_s:
            return
        if group is None:
            self.confirmed_at = max(self.confirmed_at, asked_at)
        else:
            self.kept[group] = max(self.kept.get(group, asked_at), asked_at)

    def valid(self, group: str | None = None) -> bool:
        """Whether this worker may still speak on its calls (of slot ``group``)."""
        return self.ttl_s is None or self.clock.monotonic() - self._latest(group) < self.ttl_s

    def _latest(self, group: str | None) -> float:
        if group is None:
            return self.confirmed_at
        return max(self.confirmed_at, self.kept.get(group, self.confirmed_at))


@dataclass(frozen=True, slots=True)
class WorkerContext:
    settings: WorkerSettings
    keys: Keys
    redis: aioredis.Redis
    writer: BatchWriter
    reader: FanInReader
    metrics: WorkerMetrics
    tools: tuple[Tool, ...] = ()  # from TOOLS_FILE
    agents: Agents = Agents((Agent(DEFAULT_AGENT),))  # from AGENTS_FILE
    # For the tools and the set-up hook; set whenever there are either.
    http: httpx.AsyncClient | None = None
    lease_clock: LeaseClock = field(default_factory=LeaseClock)
    connect: Connector = open_realtime  # opens a Realtime WebSocket; tests pass a fake
    clock: Clock = SYSTEM_CLOCK
    timing: CallTiming = CallTiming()

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id
