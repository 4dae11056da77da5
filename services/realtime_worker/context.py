"""What every call session of a worker shares."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from services.realtime_worker.metrics import WorkerMetrics
from shared.config import WorkerSettings
from shared.keys import Keys
from shared.streams import BatchWriter, FanInReader

__all__ = ["WorkerContext"]


@dataclass(frozen=True, slots=True)
class WorkerContext:
    settings: WorkerSettings
    keys: Keys
    redis: aioredis.Redis
    writer: BatchWriter
    reader: FanInReader
    metrics: WorkerMetrics

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id
