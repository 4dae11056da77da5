"""A worker's shared machinery around one call, for tests that drive a ``CallSession``: a
fakeredis server, the batch writer and fan-in reader, metrics on a fresh registry, and the
Realtime connector the test chooses (``use``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
from fakeredis.aioredis import FakeRedis
from prometheus_client import CollectorRegistry

from services.realtime_worker.context import WorkerContext
from services.realtime_worker.metrics import WorkerMetrics
from services.realtime_worker.settings import WorkerSettings
from shared.clock import Clock
from shared.keys import CallField, Keys
from shared.messages import ENTRY_FIELD, Message, decode, encode
from shared.records import create_call
from shared.streams import BatchWriter, FanInReader, acquire_lease
from tests.support.fake_redis import polling_client
from tests.support.realtime import FakeRealtime

__all__ = ["SID", "WORKER", "Harness", "running_harness", "worker_settings"]

SID = "CAtest"
WORKER = "worker-1"


def worker_settings(**changes: Any) -> WorkerSettings:
    """The worker's defaults, pointed at a ws:// simulator URL, with ``changes``."""
    settings = WorkerSettings.from_env(
        {"OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime", "WORKER_ID": WORKER}
    )
    return dataclasses.replace(settings, **changes)


class Harness:
    def __init__(self, redis: FakeRedis, settings: WorkerSettings) -> None:
        self.redis = redis
        self.keys = Keys("t")
        self.writer = BatchWriter(redis)
        self.reader = FanInReader(redis, self.writer, self.keys.wake(WORKER), block_ms=20)
        self.registry = CollectorRegistry()
        self.opener: FakeRealtime | Callable[[], Any] | None = None
        self.ctx = WorkerContext(
            settings=settings,
            keys=self.keys,
            redis=redis,
            writer=self.writer,
            reader=self.reader,
            metrics=WorkerMetrics.create(self.registry),
            connect=self._connect,
        )

    def use(self, ws: FakeRealtime | Callable[[], Any]) -> None:
        """Sessions opened from now on get ``ws``, or what calling it returns (each time)."""
        self.opener = ws

    def configure(self, **changes: Any) -> None:
        """Sessions created from now on see these settings (on top of the defaults)."""
        self.ctx = dataclasses.replace(self.ctx, settings=worker_settings(**changes))

    def set_timing(self, **changes: float) -> None:
        """Sessions created from now on run with these durations (``CallTiming``)."""
        self.ctx = dataclasses.replace(
            self.ctx, timing=dataclasses.replace(self.ctx.timing, **changes)
        )

    def set_clock(self, clock: Clock) -> None:
        self.ctx = dataclasses.replace(self.ctx, clock=clock)

    async def _connect(self, settings: WorkerSettings) -> Any:
        opener = self.opener
        assert opener is not None, "the test did not say what the Realtime socket is (use)"
        return opener if isinstance(opener, FakeRealtime) else await opener()

    async def send_inbound(self, *messages: Message) -> list[bytes]:
        return [
            await self.redis.xadd(self.keys.inbound(SID), {ENTRY_FIELD: encode(m)})
            for m in messages
        ]

    async def outbound(self) -> list[Message]:
        entries = await self.redis.xrange(self.keys.outbound(SID))
        return [decode(fields[ENTRY_FIELD]) for _, fields in entries]

    async def record(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.call(SID))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@asynccontextmanager
async def running_harness() -> AsyncIterator[Harness]:
    """A harness whose call (``SID``) exists and is leased to ``WORKER``, its writer and reader
    running."""
    redis = polling_client(fakeredis.FakeServer())
    h = Harness(redis, worker_settings())
    await create_call(redis, h.keys, SID, {CallField.FROM: "+1555"})
    assert await acquire_lease(redis, h.keys.lease(SID), WORKER, 60_000)
    tasks = [asyncio.create_task(h.writer.run()), asyncio.create_task(h.reader.run())]
    try:
        yield h
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
