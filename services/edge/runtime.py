"""Everything one edge process holds for its lifetime: Redis, the writer, the fan-in reader,
metrics, the live calls, and the background loops that keep them healthy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.edge.metrics import EdgeMetrics
from services.edge.stream_token import derive_token_key
from shared.config import EdgeSettings
from shared.errors import is_retryable
from shared.keys import CALL_KEY_TTL_S, Keys
from shared.streams import BatchWriter, FanInReader, connect

if TYPE_CHECKING:
    from services.edge.media_stream import EdgeCall

__all__ = ["EdgeRuntime", "edge_runtime"]

logger = logging.getLogger("switchboard.edge")

HEALTH_INTERVAL_S = 1.0
KEY_REFRESH_INTERVAL_S = CALL_KEY_TTL_S / 4


@dataclass
class EdgeRuntime:
    settings: EdgeSettings
    redis: aioredis.Redis
    writer: BatchWriter
    reader: FanInReader
    metrics: EdgeMetrics
    registry: CollectorRegistry
    keys: Keys
    token_keys: list[bytes]
    auth_tokens: list[str]
    calls: dict[str, EdgeCall] = field(default_factory=dict)
    redis_ok: bool = False
    draining: bool = False
    broken: str | None = None  # a background loop died: /healthz reports it

    @property
    def ready(self) -> bool:
        return self.redis_ok and not self.draining and self.broken is None

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.redis.ping()
                ok = self.writer.healthy and self.reader.healthy
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                ok = False
            if ok != self.redis_ok:
                (logger.info if ok else logger.warning)(
                    "redis is %s", "reachable" if ok else "unreachable"
                )
            self.redis_ok = ok
            self.metrics.redis_up.set(1 if ok else 0)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def _refresh_keys_loop(self) -> None:
        # Per-call keys carry a TTL so nothing outlives a crashed process; live calls renew it.
        while True:
            await asyncio.sleep(KEY_REFRESH_INTERVAL_S)
            for call_sid in list(self.calls):
                for key in self.keys.call_keys(call_sid):
                    self.writer.command("EXPIRE", key, CALL_KEY_TTL_S)

    async def _supervise(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.broken = f"{name} stopped: {exc!r}"
            logger.critical("background loop %s died; the edge is unhealthy", name, exc_info=True)


@asynccontextmanager
async def edge_runtime(
    settings: EdgeSettings,
    registry: CollectorRegistry,
    client: aioredis.Redis | None = None,
) -> AsyncIterator[EdgeRuntime]:
    """Open Redis, start the background loops, and stop them all on exit."""
    own_client = client is None
    redis_client = client if client is not None else connect(settings.redis_url)
    reader_client = connect(settings.redis_url, read_timeout_s=5.0) if own_client else redis_client
    keys = Keys(settings.key_prefix)
    writer = BatchWriter(redis_client)
    secrets = [s for s in (settings.twilio_auth_token,) if s]
    token_secret = settings.stream_token_secret or settings.twilio_auth_token or ""
    runtime = EdgeRuntime(
        settings=settings,
        redis=redis_client,
        writer=writer,
        reader=FanInReader(reader_client, writer, keys.wake(settings.edge_id)),
        metrics=EdgeMetrics.create(registry),
        registry=registry,
        keys=keys,
        token_keys=[derive_token_key(token_secret)],
        auth_tokens=secrets,
    )
    loops = {
        "redis-writer": runtime.writer.run(),
        "redis-reader": runtime.reader.run(),
        "health": runtime._health_loop(),
        "key-refresh": runtime._refresh_keys_loop(),
    }
    tasks = [
        asyncio.create_task(runtime._supervise(name, coro), name=name)
        for name, coro in loops.items()
    ]
    try:
        yield runtime
    finally:
        try:
            # What the calls wrote on their way out (end of call, final counters) goes out first.
            await asyncio.wait_for(writer.flush(), timeout=2.0)
        except TimeoutError:
            logger.warning("redis writes still pending at shutdown were dropped")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if own_client:
            await reader_client.aclose()
            await redis_client.aclose()
