"""Redis plumbing shared by the edge and the workers.

- ``BatchWriter``: every write of one event-loop turn, from every call, goes out in one
  pipeline, in the order it was queued. Writers see back-pressure when Redis falls behind.
- ``FanInReader``: one blocking ``XREAD`` over all of a process's call streams (on a Redis
  Cluster, one per slot group: ``shared.keys``), never one connection per call. A subscriber
  whose queue is full is left out of the next reads, so its entries wait in Redis (bounded by
  MAXLEN) rather than in process memory, and other calls are not held up.
- Leases (``shared.leases``, re-exported here): ``acquire_lease`` / ``renew_lease_status`` /
  ``release_lease``, owner-checked; renewal takes back a lease Redis lost (restarted empty) but
  reports one held by another owner or revoked by an edge.
- Both speak to Redis through a ``RespPipe`` (``shared.resp``), a lean connection of their own
  (on a cluster a ``ClusterPipe``, one per primary): the frame path does not pay for redis-py's
  pools and per-command objects. Given a redis-py
  client instead (fakeredis in unit tests), they use its pipeline.
- Fenced writes: ``BatchWriter.fenced_xadd`` appends to a stream only while its lease is not
  held by another owner, checked inside Redis at the moment of the write. A worker that was
  paused past its lease can have writes queued from before the pause; whatever it believes,
  Redis refuses them once another worker holds the call, or an edge revoked it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.backoff import Backoff
from shared.cluster_pipe import ClusterPipe, NodeDown
from shared.errors import is_retryable
from shared.keys import WAKE_MAXLEN, WAKE_TTL_S
from shared.leases import LeaseStatus, acquire_lease, release_lease, renew_lease_status
from shared.messages import ENTRY_FIELD, Message, encode
from shared.resp import FRAME_RETRY_MAX_S, Command, Entry, RespPipe
from shared.tasks import cancel_and_wait

__all__ = [
    "BatchWriter",
    "Entry",
    "FanInReader",
    "LeaseStatus",
    "acquire_lease",
    "connect",
    "ensure_group",
    "frame_pipe",
    "release_lease",
    "renew_lease_status",
]

logger = logging.getLogger(__name__)

#: How often the writer tries an unreachable primary's refused commands again when no newer
#: writes come to carry them (the primary's own backoff decides when an attempt is made).
NODE_DOWN_POLL_S = 0.1


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


def connect(url: str, *, cluster: bool = False) -> aioredis.Redis:
    """A client for ``url`` (hiredis parser when installed). Commands time out after 10 s so a
    silent network failure surfaces as a retryable error.

    After a Redis restart every pooled connection is dead: a connection idle for a couple of
    seconds is pinged before use, and a command that meets a closed connection is sent once
    more on a fresh one, so the first webhook after the restart is not turned away.

    ``cluster``: ``url`` is a seed node of a Redis Cluster, and the client is redis-py's
    cluster client, which routes each command by its slot and follows ``MOVED``/``ASK`` and
    failovers itself. It takes the same commands (every command and script of Switchboard's
    touches one slot), so it is typed as the single-Redis client its callers expect.
    """
    if cluster:
        client = RedisCluster.from_url(
            url,
            socket_timeout=10.0,
            socket_connect_timeout=5.0,
            max_connections=64,
        )
        return cast(aioredis.Redis, client)
    return aioredis.Redis.from_url(
        url,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=2,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        max_connections=64,
    )


def frame_pipe(
    client: aioredis.Redis, url: str, *, reading: bool = False
) -> RespPipe | ClusterPipe:
    """A lean connection for the frame path to the Redis ``client`` speaks to (``connect``'s):
    ``reading``, one for blocking reads (their replies may take the whole block)."""
    options: dict[str, float] = {"timeout_s": 5.0, "min_timeout_s": 2.0} if reading else {}
    if isinstance(client, RedisCluster):
        return ClusterPipe(url, client, **options)
    return RespPipe(url, **options)


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


Pipe = RespPipe | ClusterPipe | _RedisPyPipe
Client = aioredis.Redis | RespPipe | ClusterPipe


def _as_pipe(client: Client) -> Pipe:
    return client if isinstance(client, RespPipe | ClusterPipe) else _RedisPyPipe(client)


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
        client: Client,
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
        """The flush loop; run it as a supervised task for the life of the process.

        Commands that meet a transient failure go back to the head of the queue, in order,
        ahead of newer ones: on one Redis that is the whole batch, sent again after a backoff;
        on a cluster it may be only an unreachable primary's commands, and the others' writes
        go on meanwhile (its commands are refused at once until its next attempt is due)."""
        backoff = Backoff(maximum=FRAME_RETRY_MAX_S)
        while True:
            await self._has_work.wait()
            if self._gather_s:
                await asyncio.sleep(self._gather_s)  # REDIS_BATCH_MS: let more writes join
            self._has_work.clear()
            batch, fenced = self._pending, self._pending_fenced
            self._pending, self._pending_fenced = [], False
            self._has_room.set()
            try:
                again, failure = await self._send(batch, fenced)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                again, failure = batch, exc
            self._written += len(batch) - len(again)
            async with self._progress:
                self._progress.notify_all()
            if failure is None:
                if not self.healthy:
                    logger.info("redis writes flowing again")
                    self._reconnects.inc()
                self.healthy = True
                backoff.reset()
                continue
            self._pending[:0] = again
            self._pending_fenced = self._pending_fenced or fenced
            if isinstance(failure, NodeDown):
                # Only primaries already known down, refused without an attempt: newer writes
                # go out as they come; the refused ones are tried again with them.
                await self._wait_for_work(NODE_DOWN_POLL_S)
                continue
            self.healthy = False
            self._errors.inc()
            if isinstance(self._pipe, ClusterPipe) and self._pipe.reachable:
                # The primaries that failed refuse their commands at once until their next
                # attempt is due (their own backoff): newer writes to the others go on.
                logger.warning(
                    "redis write of %d of %d commands failed (%s); the others' writes go on",
                    len(again),
                    len(batch),
                    failure,
                )
                await self._wait_for_work(NODE_DOWN_POLL_S)
                continue
            delay = backoff.next_delay()
            logger.warning(
                "redis write of %d commands failed (%s); retrying in %.2fs",
                len(again),
                failure,
                delay,
            )
            await asyncio.sleep(delay)  # Redis (every primary) is down or restarting
            self._has_work.set()

    async def _wait_for_work(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._has_work.wait(), timeout_s)
        self._has_work.set()

    async def _send(
        self, batch: list[Command], fenced: bool
    ) -> tuple[list[Command], Exception | None]:
        """Send ``batch``; the commands to send again (those that met a transient failure:
        on a cluster, the commands of one unreachable primary) and the failure to report: an
        attempt that failed rather than a ``NodeDown`` refusal, when there is one."""
        if fenced:
            # Cheap when Redis has it already, and a restarted Redis has forgotten it: loading
            # it ahead of the batch (even a batch resent on a new connection) keeps every
            # fenced write in its place among the batch's other commands.
            results = (await self._pipe.execute([_LOAD_FENCED_XADD, *batch]))[1:]
        else:
            results = await self._pipe.execute(batch)
        again: list[Command] = []
        failure: Exception | None = None
        for args, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                if is_retryable(result):
                    again.append(args)
                    if failure is None or isinstance(failure, NodeDown):
                        failure = result
                    continue
                # A rejected command is a bug or a foreign key in our namespace: report it,
                # never let it stall the writes of every other call.
                logger.error("redis rejected %s %s: %s", args[0], args[1], result)
            elif fenced and result == 0 and args[0] == "EVALSHA":
                self._fenced.inc()
        return again, failure


@dataclass(slots=True)
class _Group:
    """Streams read together in one blocking ``XREAD`` with their wake stream: all of a
    process's streams on one Redis, one slot group's on a cluster."""

    wake_stream: str
    pipe: Pipe
    wake_id: bytes | str = "0-0"
    subs: dict[str, _Subscription] = field(default_factory=dict)


@dataclass(slots=True)
class _Subscription:
    stream: str
    last_id: bytes | str
    sink: Callable[[list[Entry]], bool]
    group: _Group
    paused: bool = False


class FanInReader:
    """One blocking ``XREAD`` over every subscribed stream of this process, or, on a cluster,
    one per slot group the process has streams in (a command's keys must share a slot).

    ``wake_stream``: the stream that interrupts a blocked read when the set of streams
    changes; a function of the subscribed stream on a cluster (``Keys.wake_for``), whose groups
    each read on a connection of their own from ``open_pipe``. The number of reads per loop
    turn is the number of groups, however many calls.

    ``sink(entries)`` is called in the reader's task with each batch for its stream, in order;
    it must not block. It returns False to pause the stream (its queue is full); the subscriber
    calls ``resume(stream)`` once it has drained. Failed reads count in ``errors``, each return
    to health in ``reconnects``. ``gather_s`` > 0: pause that long after each delivery, so the
    next read brings back more entries at once.
    """

    def __init__(
        self,
        client: Client,
        writer: BatchWriter,
        wake_stream: str | Callable[[str], str],
        *,
        open_pipe: Callable[[], Client] | None = None,
        block_ms: int = 1000,
        count: int = 64,
        errors: _Count | None = None,
        reconnects: _Count | None = None,
        gather_s: float = 0.0,
    ) -> None:
        self._pipe: Pipe | None = _as_pipe(client)  # the first group's
        self._open_pipe = open_pipe
        self._opened: list[Client] = []
        self._errors: _Count = errors if errors is not None else _NoCount()
        self._reconnects: _Count = reconnects if reconnects is not None else _NoCount()
        self._gather_s = gather_s
        self._writer = writer
        self._block_ms = block_ms
        self._count = count
        self._subs: dict[str, _Subscription] = {}
        self._groups: dict[str, _Group] = {}
        self._spawn: Callable[[_Group], object] | None = None  # set while ``run`` runs
        if isinstance(wake_stream, str):
            self._group(wake_stream)  # one Redis: its one read runs from the start
            self._wake_of: Callable[[str], str] = lambda _stream: wake_stream
        else:
            self._wake_of = wake_stream
        self.healthy = True

    def subscribe(
        self, stream: str, sink: Callable[[list[Entry]], bool], start_id: bytes | str = "0-0"
    ) -> None:
        """Deliver ``stream``'s entries after ``start_id`` to ``sink``."""
        group = self._group(self._wake_of(stream))
        self._subs[stream] = group.subs[stream] = _Subscription(stream, start_id, sink, group)
        self._wake(group)

    def unsubscribe(self, stream: str) -> None:
        sub = self._subs.pop(stream, None)
        if sub is not None:
            sub.group.subs.pop(stream, None)

    def resume(self, stream: str) -> None:
        sub = self._subs.get(stream)
        if sub is not None and sub.paused:
            sub.paused = False
            self._wake(sub.group)

    def last_id(self, stream: str) -> bytes | str | None:
        sub = self._subs.get(stream)
        return None if sub is None else sub.last_id

    def _group(self, wake_stream: str) -> _Group:
        group = self._groups.get(wake_stream)
        if group is not None:
            return group
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
        elif self._open_pipe is not None:
            opened = self._open_pipe()
            self._opened.append(opened)
            pipe = _as_pipe(opened)
        else:
            raise RuntimeError("a second wake stream needs open_pipe for its reads")
        group = self._groups[wake_stream] = _Group(wake_stream, pipe)
        if self._spawn is not None:
            self._spawn(group)
        return group

    def _wake(self, group: _Group) -> None:
        # Interrupts a blocked XREAD so that it picks up the new set of streams at once.
        stream = group.wake_stream
        self._writer.command("XADD", stream, "MAXLEN", "~", WAKE_MAXLEN, "*", "w", "1")
        self._writer.command("EXPIRE", stream, WAKE_TTL_S)

    async def run(self) -> None:
        """The read loops; run it as a supervised task for the life of the process."""
        running: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as loops:

                def spawn(group: _Group) -> object:
                    task = loops.create_task(self._read(group), name=f"read {group.wake_stream}")
                    running.append(task)
                    return task

                self._spawn = spawn
                for group in self._groups.values():
                    spawn(group)
                try:
                    await asyncio.Event().wait()  # until cancelled, or a loop fails
                except asyncio.CancelledError:
                    # The group would ask its loops to stop only once (Python 3.11): a loop
                    # whose cancellation a timeout swallowed would hold it open for good.
                    await cancel_and_wait(running)
                    raise
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the one read loop that failed
        finally:
            self._spawn = None
            for pipe in self._opened:
                await pipe.aclose()

    async def _read(self, group: _Group) -> None:
        backoff = Backoff(maximum=FRAME_RETRY_MAX_S)
        while True:
            streams: dict[str, bytes | str] = {
                s.stream: s.last_id for s in group.subs.values() if not s.paused
            }
            streams[group.wake_stream] = group.wake_id
            try:
                reply = await group.pipe.xread(streams, count=self._count, block_ms=self._block_ms)
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
            self._deliver(group, reply)
            if self._gather_s and reply:
                await asyncio.sleep(self._gather_s)  # REDIS_BATCH_MS

    def _deliver(self, group: _Group, reply: Iterable[tuple[bytes, list[Entry]]]) -> None:
        for raw_stream, entries in reply:
            stream = raw_stream.decode()
            if stream == group.wake_stream:
                group.wake_id = entries[-1][0]
                continue
            sub = group.subs.get(stream)
            if sub is None or not entries:
                continue
            sub.last_id = entries[-1][0]
            if not sub.sink(entries):
                sub.paused = True
