"""A whole ``Worker`` on fakeredis, with fake Realtime sockets: claiming, leases, drain."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fakeredis.aioredis import FakeRedis
from prometheus_client import CollectorRegistry

from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.worker import Worker
from shared.keys import Keys
from tests.support.realtime import FakeRealtime

__all__ = ["KEYS", "WORKER", "RunningWorker", "Sockets", "start_worker", "stop_worker"]

WORKER = "worker-1"
KEYS = Keys("t")


def process_settings(**changes: Any) -> WorkerSettings:
    """A worker with a fast heartbeat (0.1 s) and a short lease (1 s), and ``changes``."""
    settings = WorkerSettings.from_env(
        {
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
            "WORKER_ID": WORKER,
            "KEY_PREFIX": "t",
            "HEARTBEAT_INTERVAL_MS": "100",
            "LEASE_TTL_MS": "1000",
        }
    )
    return dataclasses.replace(settings, **changes)


class Sockets(list[FakeRealtime]):
    """The fake Realtime sockets a worker opened, in order; ``connect`` is its connector."""

    async def connect(self, settings: WorkerSettings) -> Any:
        ws = FakeRealtime()
        self.append(ws)
        return ws


class RunningWorker:
    def __init__(self, worker: Worker, sockets: Sockets) -> None:
        self.worker = worker
        self.sockets = sockets
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


async def start_worker(redis: FakeRedis, sockets: Sockets, **changes: Any) -> RunningWorker:
    worker = Worker(
        process_settings(**changes),
        client=redis,
        registry=CollectorRegistry(),
        realtime_connect=sockets.connect,
    )
    running = RunningWorker(worker, sockets)
    running.task = asyncio.create_task(worker.run(running.stop))
    return running


async def stop_worker(running: RunningWorker) -> None:
    running.stop.set()
    assert running.task is not None
    await asyncio.wait_for(running.task, 5.0)
