"""Redis plumbing shared by the edge and the workers.

- ``BatchWriter``: every write of one event-loop turn, from every call, goes out in one
  pipeline, in the order it was queued. Writers see back-pressure when Redis falls behind.
- ``FanInReader``: one blocking ``XREAD`` over all of a process's call streams, never one
  connection per call. A subscriber whose queue is full is left out of the next reads, so its
  entries wait in Redis (bounded by MAXLEN) rather than in process memory, and other calls are
  not held up.
- Leases (``shared.leases``, re-exported here): ``acquire_lease`` / ``renew_lease_status`` /
  ``release_lease``, owner-checked; renewal takes back a lease Redis lost (restarted empty) but
  reports one held by another owner or revoked by an edge.
- Both speak to Redis through a ``RespPipe`` (``shared.resp``), a lean connection of their own:
  the frame path does not pay for redis-py's pools and per-command objects. Given a redis-py
  client instead (fakeredis in unit tests), they use its pipeline.
- Fenced writes: ``BatchWriter.fenced_xadd`` appends to a stream only while its lease is not
  held by another owner, checked inside Redis at the moment of the write. A worker that was
  paused past its lease can have writes queued from before the pause; whatever it believes,
  Redis refuses them once another worker holds the call, or an edge revoked it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.backoff import Backoff
from shared.errors import is_retryable
from shared.keys import WAKE_MAXLEN, WAKE_TTL_S
from shared.leases import LeaseStatus, acquire_lease, release_lease, renew_lease_status
from shared.messages import ENTRY_FIELD, Message, encode
from shared.resp import Command, Entry, RespPipe

__all__ = [
    "BatchWriter",
    "Entry",
    "FanInReader",
    "LeaseStatus",
    "acquire_lease",
    "connect",
    "ensure_group",
    "release_lease",
    "renew_lease_status",
]

logger = logging.getLogger(__name__)


# KEYS: lease, stream. ARGV: owner, maxlen, then one encoded message per entry. Refused (0) only
# when another owner holds the lease (or an edge revoked it): a lease that is missing (lapsed,
# or Redis restarted empty) still belongs to the writer until its next renewal says otherwise,
# and nobody else can be writing to the stream meanwhile.
_FENCED_XADD = f"""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', '{ENTRY_FIELD.decode()}', ARGV[i])
end
return 1
"""
_FENCED_XADD_SHA = hashlib.sha1(_FENCED_XADD.encode()).hexdigest()
_LOAD_FENCED_XADD: Command = ("SCRIPT", "LOAD", _FENCED_XADD)


def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` (hiredis parser when installed). Commands time out after 10 s so a
    silent network failure surfaces as a retryable error.

    After a Redis restart every pooled connection is dead: a connection idle for a couple of
    seconds is pinged before use, and a command that meets a closed connection is sent once
    more on a fresh one, so the first webhook after the restart is not turned away.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=2,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        max_connections=64,
    )


class _RedisPyPipe:
    """``RespPipe``'s two calls made with a redis-py client (fakeredis in unit tests)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def execute(self, commands: Iterable[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return await pipe.execute(raise_on_error=False)

    async def xread(
        self, streams: dict[str, bytes | str], *, count: int, block_ms: int
    ) -> list[tuple[bytes, list[Entry]]]:
        reply: Any = await self._client.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        return reply or []


Pipe = RespPipe | _RedisPyPipe


def _as_pipe(client: aioredis.Redis | RespPipe) -> Pipe:
    return client if isinstance(client, RespPipe) else _RedisPyPipe(client)


async def ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create consumer ``group`` on ``stream`` (and the stream), tolerating an existing group."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class _Count(Protocol):
    """A counter child, bound to its labels (``Counter.labels(...)``)."""

    def inc(self, amount: float = 1) -> None: ...


class _NoCount:
    def inc(self, amount: float = 1) -> None:
        pass


class BatchWriter:
    """Queues writes and sends all that accumulated while the previous batch was in flight.

    Commands keep their queue order. ``xadd`` waits when more than ``max_pending`` writes are
    queued (back-pressure); ``command`` never waits, for the few control writes that must not.
    Transient Redis failures are retried with backoff, keeping the batch and its order; each
    failed attempt counts in ``errors``, each return to health in ``reconnects``, each fenced
    write Redis refused in ``fenced``. ``gather_s`` > 0: wait that long after the first write
    of a batch before sending it, trading latency for fewer round trips.
    """

    def __init__(
        self,
        client: aioredis.Redis | RespPipe,
        max_pending: int = 20_000,
        *,
        errors: _Count | None = None,
        reconnects: _Count | None = None,
        fenced: _Count | None = None,
        gather_s: float = 0.0,
    ) -> None:
        self._pipe = _as_pipe(client)
        self._errors: _Count = errors if errors is not None else _NoCount()
        self._reconnects: _Count = reconnects if reconnects is not None else _NoCount()
        self._fenced: _Count = fenced if fenced is not None else _NoCount()
        self._gather_s = gather_s
        self._max_pending = max_pending
        self._pending: list[Command] = []
        self._pending_fenced = False  # a fenced write is queued: the batch needs the script
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._queued = 0
        self._written = 0
        self._progress = asyncio.Condition()
        self.healthy = True

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def xadd(self, stream: str, message: Message, maxlen: int) -> None:
        """Append ``message`` to ``stream`` (trimmed to about ``maxlen`` entries)."""
        if len(self._pending) >= self._max_pending:
            await self._wait_for_room()
        self.xadd_nowait(stream, message, maxlen)

    def xadd_nowait(self, stream: str, message: Message, maxlen: int) -> None:
        """Like ``xadd`` but never waits: for control messages, not audio."""
        self.command("XADD", stream, "MAXLEN", "~", maxlen, "*", ENTRY_FIELD, encode(message))

    async def fenced_xadd(
        self, lease: str, owner: str, stream: str, messages: Iterable[Message], maxlen: int
    ) -> None:
        """Append ``messages`` to ``stream`` in one step, unless another owner holds ``lease``
        when Redis runs it (then nothing is written and ``fenced`` counts it). Waits like
        ``xadd``."""
        if len(self._pending) >= self._max_pending:
            await self._wait_for_room()
        self.fenced_xadd_nowait(lease, owner, stream, messages, maxlen)

    def fenced_xadd_nowait(
        self, lease: str, owner: str, stream: str, messages: Iterable[Message], maxlen: int
    ) -> None:
        """Like ``fenced_xadd`` but never waits: for control messages, not audio."""
        payloads = [encode(m) for m in messages]
        self.command("EVALSHA", _FENCED_XADD_SHA, 2, lease, stream, owner, maxlen, *payloads)
        self._pending_fenced = True

    async def _wait_for_room(self) -> None:
        self._has_room.clear()
        await self._has_room.wait()

    def command(self, *args: object) -> None:
        """Queue any Redis command; its reply is not returned."""
        self._pending.append(args)
        self._queued += 1
        self._has_work.set()

    async def flush(self) -> None:
        """Wait until everything queued before this call has been written."""
        target = self._queued
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    async def run(self) -> None:
        """The flush loop; run it as a supervised task for the life of the process."""
        backoff = Backoff()
        while True:
            await self._has_work.wait()
            if self._gather_s:
                await asyncio.sleep(self._gather_s)  # REDIS_BATCH_MS: let more writes join
            self._has_work.clear()
            batch, fenced = self._pending, self._pending_fenced
            self._pending, self._pending_fenced = [], False
            self._has_room.set()
            while True:
                try:
                    await self._send(batch, fenced)
                except Exception as exc:
                    if not is_retryable(exc):
                        raise
                    self.healthy = False
                    self._errors.inc()
                    delay = backoff.next_delay()
                    logger.warning(
                        "redis write of %d commands failed (%s); retrying in %.2fs",
                        len(batch),
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if not self.healthy:
                    logger.info("redis writes flowing again")
                    self._reconnects.inc()
                self.healthy = True
                backoff.reset()
                break
            self._written += len(batch)
            async with self._progress:
                self._progress.notify_all()

    async def _send(self, batch: list[Command], fenced: bool) -> None:
        if fenced:
            # Cheap when Redis has it already, and a restarted Redis has forgotten it: loading
            # it ahead of the batch (even a batch resent on a new connection) keeps every
            # fenced write in its place among the batch's other commands.
            results = (await self._pipe.execute([_LOAD_FENCED_XADD, *batch]))[1:]
        else:
            results = await self._pipe.execute(batch)
        for args, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                if is_retryable(result):
                    raise result
                # A rejected command is a bug or a foreign key in our namespace: report it,
                # never let it stall the writes of every other call.
                logger.error("redis rejected %s %s: %s", args[0], args[1], result)
            elif fenced and result == 0 and args[0] == "EVALSHA":
                self._fenced.inc()


@dataclass(slots=True)
class _Subscription:
    stream: str
    last_id: bytes | str
    sink: Callable[[list[Entry]], bool]
    paused: bool = False


class FanInReader:
    """One blocking ``XREAD`` over every subscribed stream of this process.

    ``sink(entries)`` is called in the reader's task with each batch for its stream, in order;
    it must not block. It returns False to pause the stream (its queue is full); the subscriber
    calls ``resume(stream)`` once it has drained. Failed reads count in ``errors``, each return
    to health in ``reconnects``. ``gather_s`` > 0: pause that long after each delivery, so the
    next read brings back more entries at once.
    """

    def __init__(
        self,
        client: aioredis.Redis | RespPipe,
        writer: BatchWriter,
        wake_stream: str,
        *,
        block_ms: int = 1000,
        count: int = 64,
        errors: _Count | None = None,
        reconnects: _Count | None = None,
        gather_s: float = 0.0,
    ) -> None:
        self._pipe = _as_pipe(client)
        self._errors: _Count = errors if errors is not None else _NoCount()
        self._reconnects: _Count = reconnects if reconnects is not None else _NoCount()
        self._gather_s = gather_s
        self._writer = writer
        self._wake_stream = wake_stream
        self._wake_id: bytes | str = "0-0"
        self._block_ms = block_ms
        self._count = count
        self._subs: dict[str, _Subscription] = {}
        self.healthy = True

    def subscribe(
        self, stream: str, sink: Callable[[list[Entry]], bool], start_id: bytes | str = "0-0"
    ) -> None:
        """Deliver ``stream``'s entries after ``start_id`` to ``sink``."""
        self._subs[stream] = _Subscription(stream, start_id, sink)
        self._wake()

    def unsubscribe(self, stream: str) -> None:
        self._subs.pop(stream, None)

    def resume(self, stream: str) -> None:
        sub = self._subs.get(stream)
        if sub is not None and sub.paused:
            sub.paused = False
            self._wake()

    def last_id(self, stream: str) -> bytes | str | None:
        sub = self._subs.get(stream)
        return None if sub is None else sub.last_id

    def _wake(self) -> None:
        # Interrupts a blocked XREAD so that it picks up the new set of streams at once.
        self._writer.command("XADD", self._wake_stream, "MAXLEN", "~", WAKE_MAXLEN, "*", "w", "1")
        self._writer.command("EXPIRE", self._wake_stream, WAKE_TTL_S)

    async def run(self) -> None:
        """The read loop; run it as a supervised task for the life of the process."""
        backoff = Backoff()
        while True:
            streams: dict[str, bytes | str] = {
                s.stream: s.last_id for s in self._subs.values() if not s.paused
            }
            streams[self._wake_stream] = self._wake_id
            try:
                reply = await self._pipe.xread(streams, count=self._count, block_ms=self._block_ms)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.healthy = False
                self._errors.inc()
                delay = backoff.next_delay()
                logger.warning("redis read failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if not self.healthy:
                logger.info("redis reads flowing again")
                self._reconnects.inc()
            self.healthy = True
            backoff.reset()
            self._deliver(reply)
            if self._gather_s and reply:
                await asyncio.sleep(self._gather_s)  # REDIS_BATCH_MS

    def _deliver(self, reply: Iterable[tuple[bytes, list[Entry]]]) -> None:
        for raw_stream, entries in reply:
            stream = raw_stream.decode()
            if stream == self._wake_stream:
                self._wake_id = entries[-1][0]
                continue
            sub = self._subs.get(stream)
            if sub is None or not entries:
                continue
            sub.last_id = entries[-1][0]
            if not sub.sink(entries):
                sub.paused = True
