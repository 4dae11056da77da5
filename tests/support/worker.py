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
import pytest
from fakeredis.aioredis import FakeRedis
from prometheus_client import CollectorRegistry

from services.realtime_worker.call_session import CallSession
from services.realtime_worker.context import WorkerContext
from services.realtime_worker.metrics import WorkerMetrics
from services.realtime_worker.settings import WorkerSettings
from shared.clock import Clock
from shared.keys import CallField, Keys
from shared.messages import Message
from shared.records import create_call
from shared.streams import BatchWriter, FanInReader, acquire_lease
from tests.support.fake_redis import add_message, polling_client, stream_messages, text_hash
from tests.support.realtime import FakeRealtime
from tests.support.waiting import eventually

__all__ = [
    "SID",
    "WORKER",
    "Harness",
    "WatchdogLooks",
    "inbound_handled",
    "running_harness",
    "worker_settings",
]

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
        return [await add_message(self.redis, self.keys.inbound(SID), m) for m in messages]

    async def outbound(self) -> list[Message]:
        return await stream_messages(self.redis, self.keys.outbound(SID))

    async def record(self) -> dict[str, str]:
        return await text_hash(self.redis, self.keys.call(SID))

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


async def inbound_handled(session: CallSession, entry_id: bytes) -> None:
    """Until ``session`` has handled the inbound entry ``entry_id`` (and all before it): its
    caller relay moves its cursor past each entry once it is done with it."""
    wanted = entry_id.decode()
    await eventually(lambda: session.in_cursor == wanted, what=f"inbound entry {wanted} handled")


class WatchdogLooks:
    """Counts the looks a session's watchdog takes. Each look ends by asking the model relay
    whether the call can hang up now (``check_ending``), which nothing else does while no
    mark and no response arrives: the tests that count looks send neither."""

    def __init__(self, session: CallSession, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        check_ending = session.model.check_ending

        def counted() -> None:
            self.count += 1
            check_ending()

        monkeypatch.setattr(session.model, "check_ending", counted)

    async def taken(self, looks: int = 2) -> None:
        """Until ``looks`` more looks have ended; the last of them began after this call (a
        look under way when it was made may end first), so it saw the clock as it is now."""
        wanted = self.count + looks
        await eventually(lambda: self.count >= wanted, what=f"{looks} looks of the watchdog")
