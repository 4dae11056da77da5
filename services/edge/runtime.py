"""Everything one edge process holds for its lifetime: Redis, the writer, the fan-in reader,
metrics, the live calls, and the background loops that keep them healthy."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import httpx
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.edge.live_calls import LiveCall, LiveCalls
from services.edge.metrics import EdgeMetrics
from services.edge.recording_store import RecordingStore
from services.edge.settings import EdgeSettings
from services.edge.signature import SigningKeys
from services.edge.stream_token import derive_token_key
from services.edge.twilio_rest import twilio_client
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import is_retryable
from shared.keys import CALL_KEY_TTL_S, CallField, Keys
from shared.leases import lease_holder, revoke_leases, workers_alive
from shared.records import refresh_commands
from shared.streams import BatchWriter, FanInReader, connect, frame_pipe
from shared.tasks import cancel_and_wait

if TYPE_CHECKING:
    from twilio.rest import Client

__all__ = ["EdgeRuntime", "EdgeState", "RuntimeSlot", "edge_runtime", "runtime_of"]

logger = logging.getLogger("switchboard.edge")

HEALTH_INTERVAL_S = 1.0
KEY_REFRESH_INTERVAL_S = CALL_KEY_TTL_S / 4
#: How often each call's outbound read position is saved. An edge that dies loses at most this
#: much: the edge that takes the call over re-sends up to this much audio from the saved point.
CURSOR_SAVE_INTERVAL_S = 0.2
#: After Redis failed the edge, how long missing alive keys are not taken for dead workers: a
#: Redis restarted (or failed over) may come back without them, and each worker sets its own
#: again within one WORKER_ALIVE_INTERVAL_MS of reaching it.
REDIS_BACK_GRACE_S = 1.0


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
    signing_keys: SigningKeys
    calls: LiveCalls = field(default_factory=LiveCalls)
    clock: Clock = SYSTEM_CLOCK
    redis_ok: bool = False
    draining: bool = False
    closing: int = 0  # streams closed by this edge still waiting for the caller's side to reply
    broken: str | None = None  # a background loop died: /healthz reports it
    recordings: RecordingStore | None = None  # the calls' own recordings (RECORDINGS_DIR)
    twilio: Client | None = None  # Twilio's REST API, when the edge places calls (API_TOKEN)

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
            for call_sid in self.calls.sids():
                for command in refresh_commands(self.keys, call_sid):
                    self.writer.command(*command)

    async def _save_cursors_loop(self) -> None:
        while True:
            await asyncio.sleep(CURSOR_SAVE_INTERVAL_S)
            for call in self.calls:
                call.save_cursor()

    async def _lease_watch_loop(self) -> None:
        """Check every call's worker lease in one round trip per interval (lease_watch.py)."""
        interval_s = self.settings.lease_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            calls = list(self.calls)
            if not calls:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call in calls:
                        pipe.get(call.lease_key)
                        pipe.hget(call.record_key, CallField.STATE)
                    results = await pipe.execute()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                continue  # Redis is down: the health loop says so; judge leases when it is back
            now = self.clock.monotonic()
            for call, lease, state in zip(calls, results[0::2], results[1::2], strict=True):
                call.check_worker(lease_holder(lease), state.decode() if state else None, now)

    async def _worker_watch_loop(self) -> None:
        """Check the alive keys of the workers serving this edge's calls (lease_watch.py): the
        calls of a worker whose key is gone go back in line. Not for REDIS_BACK_GRACE_S after
        Redis failed, while the workers set their keys again."""
        interval_s = self.settings.worker_check_interval_ms / 1000
        back_at: float | None = float("-inf")  # when Redis last answered again; None: failing
        while True:
            await asyncio.sleep(interval_s)
            try:
                gone = await self._calls_of_gone_workers()
                now = self.clock.monotonic()
                back_at = now if back_at is None else back_at
                if gone and now - back_at >= REDIS_BACK_GRACE_S:
                    await self._take_calls(gone)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                back_at = None  # Redis is down: the health loop says so

    async def _calls_of_gone_workers(self) -> list[tuple[LiveCall, str]]:
        """Each call served by a worker whose alive key is gone, with that worker: one EXISTS
        per worker serving calls here (per worker and slot group on a cluster), all in one
        round trip."""
        by_key: dict[tuple[str, str], list[LiveCall]] = {}
        for call in self.calls:
            if (worker := call.worker) is not None:
                key = self.keys.alive_for(worker, call.call_sid)  # per slot group on a cluster
                by_key.setdefault((worker, key), []).append(call)
        if not by_key:
            return []
        pairs = list(by_key)
        alive = await workers_alive(self.redis, [key for _, key in pairs])
        return [
            (call, worker)
            for (worker, key), up in zip(pairs, alive, strict=True)
            if not up
            for call in by_key[(worker, key)]
        ]

    async def _take_calls(self, gone: list[tuple[LiveCall, str]]) -> None:
        """Revoke each call's lease from its gone worker (one round trip) and put the call back
        in line. Only a lease that worker still holds is revoked: a call another worker took
        meanwhile is left alone."""
        hold_ms = round(self.settings.dispatch_timeout_s * 1000)  # while the call waits
        revoked = await revoke_leases(self.redis, [(c.lease_key, w) for c, w in gone], hold_ms)
        now = self.clock.monotonic()
        for (call, worker), taken in zip(gone, revoked, strict=True):
            call.worker_gone(worker, taken, now)

    async def _supervise(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.broken = f"{name} stopped: {exc!r}"
            logger.critical("background loop %s died; the edge is unhealthy", name, exc_info=True)


class EdgeState(TypedDict):
    """The state the app's lifespan hands every request and WebSocket."""

    runtime: EdgeRuntime


def runtime_of(connection: HTTPConnection) -> EdgeRuntime:
    """The edge runtime, from a request's or a WebSocket's lifespan state."""
    runtime = connection.state.runtime
    assert isinstance(runtime, EdgeRuntime), "the app runs without its lifespan"
    return runtime


@dataclass
class RuntimeSlot:
    """Where the running runtime is, for what lives outside requests: the server's drain and
    tests. Filled while the app's lifespan runs, empty otherwise."""

    runtime: EdgeRuntime | None = None


def _present(*secrets: str | None) -> tuple[str, ...]:
    return tuple(secret for secret in secrets if secret)


@asynccontextmanager
async def edge_runtime(
    settings: EdgeSettings,
    registry: CollectorRegistry,
    client: aioredis.Redis | None = None,
    http: httpx.AsyncClient | None = None,
) -> AsyncIterator[EdgeRuntime]:
    """Open Redis (and, when the edge places calls, an HTTP client for Twilio's API: ``http``
    if given), start the background loops, and stop them all on exit."""
    own_client = client is None
    url, clustered = settings.redis_url, settings.redis_cluster
    redis_client = client if client is not None else connect(url, cluster=clustered)
    # The frame path (every audio frame's write and read) has its own lean connections.
    write_pipe = frame_pipe(redis_client, url) if own_client else redis_client
    read_pipe = frame_pipe(redis_client, url, reading=True) if own_client else redis_client
    keys = Keys(settings.key_prefix, clustered=clustered)
    metrics = EdgeMetrics.create(registry)
    gather_s = settings.redis_batch_ms / 1000
    writer = BatchWriter(
        write_pipe,
        errors=metrics.redis_errors.labels("edge", "write"),
        reconnects=metrics.redis_reconnects.labels("edge", "write"),
        gather_s=gather_s,
    )
    # The current secrets first: they sign nearly every request, so they are tried first.
    signing_keys = SigningKeys(
        auth_tokens=_present(settings.twilio_auth_token, settings.twilio_auth_token_previous),
        shared_keys=_present(
            settings.twilio_webhook_shared_key, settings.twilio_webhook_shared_key_previous
        ),
    )
    token_secret = settings.stream_token_secret or settings.twilio_auth_token or ""
    runtime = EdgeRuntime(
        settings=settings,
        redis=redis_client,
        writer=writer,
        reader=FanInReader(
            read_pipe,
            writer,
            keys.reader_wake(settings.edge_id),
            open_pipe=functools.partial(frame_pipe, redis_client, url, reading=True),
            errors=metrics.redis_errors.labels("edge", "read"),
            reconnects=metrics.redis_reconnects.labels("edge", "read"),
            gather_s=gather_s,
        ),
        metrics=metrics,
        registry=registry,
        keys=keys,
        token_keys=[derive_token_key(token_secret)],
        signing_keys=signing_keys,
    )
    own_http = http is None and settings.places_calls
    twilio_http = httpx.AsyncClient() if own_http else http
    if settings.places_calls and twilio_http is not None:
        api_key = None
        if settings.twilio_api_key_sid and settings.twilio_api_key_secret:
            api_key = (settings.twilio_api_key_sid, settings.twilio_api_key_secret)
        runtime.twilio = twilio_client(
            twilio_http,
            settings.twilio_api_base_url,
            settings.twilio_account_sid or "",
            settings.twilio_auth_token,
            api_key,
        )
    loops = {
        "redis-writer": runtime.writer.run(),
        "redis-reader": runtime.reader.run(),
        "health": runtime._health_loop(),
        "key-refresh": runtime._refresh_keys_loop(),
        "lease-watch": runtime._lease_watch_loop(),
        "worker-watch": runtime._worker_watch_loop(),
        "save-cursors": runtime._save_cursors_loop(),
    }
    if settings.recordings_dir is not None:
        store = runtime.recordings = RecordingStore(
            settings.recordings_dir, settings.call_record_retention_s, metrics, runtime.clock
        )
        loops |= {
            "recordings-writer": store.run_writer(),
            "recordings-flusher": store.run_flusher(),
            "recordings-sweeper": store.run_sweeper(),
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
        if runtime.recordings is not None:
            await runtime.recordings.drain(timeout_s=5.0)
        await cancel_and_wait(tasks)
        if own_http and twilio_http is not None:
            await twilio_http.aclose()
        if own_client:
            await read_pipe.aclose()
            await write_pipe.aclose()
            await redis_client.aclose()
