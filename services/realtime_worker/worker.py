"""The realtime worker: claims calls up to its capacity and runs one ``CallSession`` each.

Loops, all in one task group for the life of the process:

- claim: ``XREADGROUP`` on the dispatch stream, asking only for as many calls as there is room
  for; each call is taken with its lease (free, or revoked by an edge) so two workers never
  hold one call;
- reclaim: ``XAUTOCLAIM`` of dispatch entries another worker received but never acknowledged
  (it froze with a read in flight, or died between reading and acknowledging);
- alive: one SET of the worker's alive key every WORKER_ALIVE_INTERVAL_MS, whatever the number
  of calls; when it lapses (the worker died, froze, or its loop is stuck) edges revoke its
  leases and put its calls back in line (``shared.leases``);
- heartbeat: renews every lease in one script call, and notices leases that were lost; a lease
  Redis lost (restarted empty) is taken back and the call's worker-owned state written again;
- the fan-in reader and the batch writer shared by all calls.

A call whose record shows its stream live on an edge is a takeover (its worker died, or handed
it off): its session does not wait for a StreamStarted and seeds the conversation so far.

On stop (SIGTERM) the worker stops claiming at once and drains: DRAIN_MODE=handoff hands every
call back to the dispatch stream (lease released, inbound cursor saved) for another worker to
take over; DRAIN_MODE=finish lets calls run until they end or DRAIN_TIMEOUT, then hands off
the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import httpx
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.realtime_worker.call_profile import CallParty
from services.realtime_worker.call_session import CallSession
from services.realtime_worker.context import LeaseClock, WorkerContext
from services.realtime_worker.metrics import WorkerMetrics
from services.realtime_worker.realtime_client import open_realtime
from services.realtime_worker.session_setup import Connector
from services.realtime_worker.settings import WorkerSettings
from shared.agents import DEFAULT_AGENT, Agent
from shared.backoff import Backoff
from shared.errors import DecodeError, is_retryable
from shared.keys import WORKER_GROUP, CallField, CallState, Keys
from shared.leases import lease_holder, set_alive
from shared.messages import ENTRY_FIELD, CallDispatch, decode
from shared.outbound_records import placed_variables
from shared.records import load_call, set_fields_command, worker_fields_commands
from shared.streams import (
    BatchWriter,
    Entry,
    FanInReader,
    LeaseStatus,
    acquire_lease,
    connect,
    ensure_group,
    frame_pipe,
    renew_lease_status,
)
from shared.tasks import cancel_and_wait

__all__ = ["Worker"]

logger = logging.getLogger("switchboard.worker")

#: Shorter than an edge takes to find a frozen worker's alive key gone (WORKER_ALIVE_TTL_MS
#: less one renewal), so that the read a worker had in flight when it froze has ended before its
#: calls are dispatched again: Redis would hand them to that read otherwise.
CLAIM_BLOCK_MS = 500
#: A dispatch entry delivered to a worker and not acknowledged this long after is another
#: worker's to take: the first worker froze, or died, before it could claim the call.
RECLAIM_IDLE_MS = 500
RECLAIM_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 5.0
#: How long a stopping worker tries to delete its alive keys before leaving them to lapse.
FORGET_ALIVE_TIMEOUT_S = 2.0


class Worker:
    """Run with ``await worker.run(stop)``; set ``stop`` to shut down cleanly."""

    def __init__(
        self,
        settings: WorkerSettings,
        client: aioredis.Redis | None = None,
        registry: CollectorRegistry | None = None,
        realtime_connect: Connector = open_realtime,
    ) -> None:
        """``client``: a Redis client for everything (tests: fakeredis), instead of the process's
        own connections; ``realtime_connect`` opens each Realtime WebSocket."""
        self.settings = settings
        url, clustered = settings.redis_url, settings.redis_cluster
        self.keys = Keys(settings.key_prefix, clustered=clustered)
        self._own_clients = client is None
        self.redis = client if client is not None else connect(url, cluster=clustered)
        # The frame path (every audio frame's write and read) has its own lean connections.
        self._write_pipe = frame_pipe(self.redis, url) if client is None else client
        self._read_pipe = frame_pipe(self.redis, url, reading=True) if client is None else client
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = WorkerMetrics.create(self.registry)
        self.metrics.capacity.set(settings.max_calls)
        metrics = self.metrics
        writer = BatchWriter(
            self._write_pipe,
            errors=metrics.redis_errors.labels("worker", "write"),
            reconnects=metrics.redis_reconnects.labels("worker", "write"),
            fenced=metrics.fenced_writes,
            gather_s=settings.redis_batch_ms / 1000,
        )
        # Checked by WorkerSettings already; one HTTP client (its connection pool) per worker.
        tools = settings.tools
        needs_http = bool(tools) or settings.call_setup_url is not None
        self._http = httpx.AsyncClient(follow_redirects=False) if needs_http else None
        self.ctx = WorkerContext(
            settings=settings,
            keys=self.keys,
            redis=self.redis,
            writer=writer,
            reader=FanInReader(
                self._read_pipe,
                writer,
                self.keys.reader_wake(settings.worker_id),
                open_pipe=functools.partial(frame_pipe, self.redis, url, reading=True),
                errors=metrics.redis_errors.labels("worker", "read"),
                reconnects=metrics.redis_reconnects.labels("worker", "read"),
                gather_s=settings.redis_batch_ms / 1000,
            ),
            metrics=self.metrics,
            # A worker's calls can be taken from it once its alive key lapses.
            lease_clock=LeaseClock(settings.alive_ttl_ms / 1000),
            tools=tools,
            agents=settings.agents,
            http=self._http,
            connect=realtime_connect,
        )
        self.sessions: dict[str, CallSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._room.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and serve calls until ``stop`` is set."""
        log = logger
        log.info(
            "worker %s up: up to %d calls, realtime %s, model %s",
            self.settings.worker_id,
            self.settings.max_calls,
            self.settings.realtime_url,
            self.settings.realtime_model,
        )
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self.ctx.writer.run(), name="redis-writer"),
                    group.create_task(self.ctx.reader.run(), name="redis-reader"),
                    group.create_task(self._heartbeat_loop(), name="heartbeat"),
                    # Each alive key's renewal is a task of its own here, not of a nested
                    # group: on Python 3.11 a group asks its tasks to stop only once, and a
                    # cancellation a redis-py timeout swallowed would keep the worker from
                    # exiting; cancel_and_wait asks each task again until it has stopped.
                    *(
                        group.create_task(self._renew_alive(g), name="alive")
                        for g in self.keys.alive_groups()
                    ),
                ]
                claimers = [
                    group.create_task(self._claim_loop(group), name="claim"),
                    group.create_task(self._reclaim_loop(group), name="reclaim"),
                ]
                await stop.wait()
                await cancel_and_wait(claimers)
                log.info(
                    "worker %s draining (DRAIN_MODE=%s): stopped claiming calls; %d calls held",
                    self.settings.worker_id,
                    self.settings.drain_mode,
                    len(self.sessions),
                )
                await self._drain()
                await cancel_and_wait(background)
                await self._forget_alive()
        finally:
            if self._http is not None:
                await self._http.aclose()
            if self._own_clients:
                await self._read_pipe.aclose()
                await self._write_pipe.aclose()
                await self.redis.aclose()
        log.info("worker %s stopped", self.settings.worker_id)

    async def _drain(self) -> None:
        """Let calls finish (DRAIN_MODE=finish, up to DRAIN_TIMEOUT), then hand off the rest."""
        settings = self.settings
        if settings.drain_mode == "finish" and self._tasks:
            logger.info(
                "letting %d calls finish, for up to %.0fs",
                len(self._tasks),
                settings.drain_timeout_s,
            )
            await asyncio.wait(list(self._tasks.values()), timeout=settings.drain_timeout_s)
        if self.sessions:
            logger.info("handing off %d calls to other workers", len(self.sessions))
        await self._stop_sessions()
        logger.info("drained: every call ended or was handed off")

    async def _stop_sessions(self) -> None:
        for session in list(self.sessions.values()):
            session.hand_off()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks.values()), timeout=STOP_TIMEOUT_S)
            await cancel_and_wait(late)
        try:
            await asyncio.wait_for(self.ctx.writer.flush(), 2.0)
        except TimeoutError:
            logger.warning("redis writes still pending at shutdown were dropped")

    # --- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self, group: asyncio.TaskGroup) -> None:
        dispatch = self.keys.dispatch
        backoff = Backoff()
        group_ready = False
        while True:
            free = self.settings.max_calls - len(self.sessions)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                if not group_ready:
                    await ensure_group(self.redis, dispatch, WORKER_GROUP)
                    group_ready = True
                reply: Any = await self.redis.xreadgroup(
                    WORKER_GROUP,
                    self.settings.worker_id,
                    {dispatch: ">"},
                    count=free,
                    block=CLAIM_BLOCK_MS,
                )
                for _stream, entries in reply or []:
                    await self._claim_entries(group, dispatch, entries)
                backoff.reset()
            except Exception as exc:
                # NOGROUP: Redis restarted empty and lost the group; re-create it. Anything else
                # unexpected is logged and retried too: a worker that exits here would only be
                # restarted into the same state, dropping its live calls on the way.
                group_ready = False
                delay = backoff.next_delay()
                if is_retryable(exc) or "NOGROUP" in str(exc):
                    logger.warning("claiming calls failed (%s); retrying in %.2fs", exc, delay)
                else:
                    logger.error("claiming calls failed; retrying in %.2fs", delay, exc_info=exc)
                await asyncio.sleep(delay)

    async def _reclaim_loop(self, group: asyncio.TaskGroup) -> None:
        """Claim the calls of dispatch entries that another worker received and left
        unacknowledged for RECLAIM_IDLE_MS: it froze with a read in flight, its loop is stuck,
        or it died before claiming them. (Claiming twice is harmless: the lease decides.)"""
        dispatch, worker_id = self.keys.dispatch, self.settings.worker_id
        while True:
            await asyncio.sleep(RECLAIM_INTERVAL_S)
            free = self.settings.max_calls - len(self.sessions)
            if free <= 0:
                continue
            try:
                reply: Any = await self.redis.xautoclaim(
                    dispatch, WORKER_GROUP, worker_id, RECLAIM_IDLE_MS, count=free
                )
                entries = []
                for entry_id, fields in reply[1]:
                    if fields:
                        entries.append((entry_id, fields))
                    else:  # trimmed from the stream meanwhile (Redis 6.2 leaves it pending)
                        self.ctx.writer.command("XACK", dispatch, WORKER_GROUP, entry_id)
                if entries:
                    logger.warning(
                        "took over %d dispatched calls that another worker received but "
                        "never claimed",
                        len(entries),
                    )
                    await self._claim_entries(group, dispatch, entries)
            except Exception as exc:
                # The claim loop reports Redis failures (and re-creates a lost group).
                if not (is_retryable(exc) or "NOGROUP" in str(exc)):
                    logger.error("taking over unclaimed calls failed", exc_info=exc)

    async def _claim_entries(
        self, group: asyncio.TaskGroup, dispatch: str, entries: list[Entry]
    ) -> None:
        """Claim a batch of dispatched calls side by side, then acknowledge the ones handled.

        One at a time, a burst of calls on a busy worker waits in line for four round trips
        each (webhook → first audio at C=100 in ``make bench``); side by side, the batch costs
        about two. The first failure is raised once every claim has finished; its entry stays
        pending and unacknowledged.
        """
        results = await asyncio.gather(
            *(self._claim_entry(group, fields) for _, fields in entries), return_exceptions=True
        )
        failure: BaseException | None = None
        for (entry_id, _), result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                self.ctx.writer.command("XACK", dispatch, WORKER_GROUP, entry_id)
        if failure is not None:
            raise failure

    async def _claim_entry(self, group: asyncio.TaskGroup, fields: dict[bytes, bytes]) -> None:
        try:
            message = decode(fields[ENTRY_FIELD])
        except (DecodeError, KeyError) as exc:
            self.metrics.malformed.labels("bad_redis_message").inc()
            logger.error("dropped a dispatch entry: %s", exc)
            return
        if not isinstance(message, CallDispatch):
            self.metrics.malformed.labels("bad_redis_message").inc()
            logger.error("dropped a dispatch entry that is not a call: %r", message)
            return
        sid = message.call_sid
        if sid in self.sessions and not await self._end_stale_session(sid):
            return  # this worker serves the call still: a repeated dispatch
        record = await load_call(self.redis, self.keys, sid)
        if record is None or not record.with_ai:
            logger.info(
                "skipped dispatched call %s: %s",
                sid,
                "unknown" if record is None else record.get(CallField.STATE),
            )
            return
        agent_name = record.get(CallField.AGENT) or DEFAULT_AGENT
        agent = self.ctx.agents.named(agent_name)
        if not await acquire_lease(
            self.redis, self.keys.lease(sid), self.settings.worker_id, self.settings.lease_ttl_ms
        ):
            return  # another worker holds it
        for command in worker_fields_commands(self.keys, sid, self.settings.worker_id):
            self.ctx.writer.command(*command)
        # The stream is attached on an edge already: the previous worker died or froze (its
        # lease lapsed, or an edge revoked it) or handed the call off. No StreamStarted will
        # come again.
        takeover = record.state is CallState.LIVE and bool(record.get(CallField.EDGE_ID))
        created = record.get(CallField.CREATED_MS) or ""
        party = CallParty(
            sid,
            caller=record.get(CallField.FROM) or "",
            called=record.get(CallField.TO) or "",
            direction=record.get(CallField.DIRECTION) or "inbound",
            placed_with=placed_variables(record),
        )
        session = CallSession(
            self.ctx,
            sid,
            record.get(CallField.IN_CURSOR) or "0-0",
            agent=agent or Agent(agent_name),
            party=party,
            setup=record.get(CallField.SETUP),
            takeover=takeover,
            resumed=message.reason == CallDispatch.TRANSFER_FAILED,
            started_ms=int(created) if created.isdigit() else None,
            # A new call reads its inbound stream from the start, where a verdict that came
            # first waits for it; a takeover waits only if its predecessor had none.
            awaiting_answer=record.get(CallField.MACHINE_DETECTION) == "1"
            and not (takeover and record.get(CallField.ANSWERED_BY)),
            ring_timeout_s=float(ring) if (ring := record.get(CallField.RING_TIMEOUT)) else 0.0,
        )
        if agent is None:
            # The edge read another AGENTS_FILE (a deployment half rolled out): no agent
            # here is better than the wrong one, and the caller hears why the call ends.
            session.io.fail(
                "unknown_agent",
                f"the call is for agent {agent_name!r}, which this worker's AGENTS_FILE does "
                "not define: edges and workers must read the same file",
            )
        self.sessions[sid] = session
        self.metrics.active_calls.inc()
        session.log.info(
            "claimed (%s) by worker %s%s",
            message.reason,
            self.settings.worker_id,
            ", taking over its live stream" if takeover else "",
        )
        self._tasks[sid] = group.create_task(self._serve(session), name=f"call-{sid}")

    async def _end_stale_session(self, sid: str) -> bool:
        """A dispatch for a call this worker serves: True once its session here has ended,
        when the lease is no longer this worker's (an edge, finding the worker's alive key
        lapsed while it was held up, took the call back and put it in line). Dropping that
        dispatch would leave the call to nobody. False: the lease is this worker's still."""
        raw = await self.redis.get(self.keys.lease(sid))
        if lease_holder(raw) == self.settings.worker_id:
            return False
        session = self.sessions[sid]
        session.log.warning("the call was dispatched again: ending the session here, claiming anew")
        session.stop("lease_lost", lease_lost=True)
        if (task := self._tasks.get(sid)) is not None:
            await asyncio.wait({task})  # its end removes it from this worker's sessions
        return True

    async def _serve(self, session: CallSession) -> None:
        try:
            await session.run()
        finally:
            self.sessions.pop(session.call_sid, None)
            self._tasks.pop(session.call_sid, None)
            self.metrics.active_calls.dec()
            self._room.set()

    # --- leases -----------------------------------------------------------------------------

    async def _renew_alive(self, group: str | None) -> None:
        """Renew this worker's alive key of ``group``: one SET per interval, however many calls
        it holds. On a cluster there is one key per slot group, each renewed by a task of its
        own, so that a primary that cannot be reached holds up only the key of its own group.

        Run by the event loop like everything else, so a loop that is stuck lets the key lapse
        and the edges move its calls to other workers.
        """
        settings, clock = self.settings, self.ctx.clock
        key = self.keys.alive(settings.worker_id, group)
        failing = False
        while True:
            asked_at = clock.monotonic()
            try:
                await set_alive(self.redis, key, settings.alive_ttl_ms)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                if not failing:  # the heartbeat reports Redis being down; once is enough here
                    logger.warning("could not renew this worker's alive key %s: %s", key, exc)
                failing = True
            else:
                failing = False
                self.ctx.lease_clock.keep_alive(asked_at, clock.monotonic(), group)
            await asyncio.sleep(settings.alive_interval_ms / 1000)

    async def _forget_alive(self) -> None:
        """On the way out: edges take any call still leased to this worker at once."""
        keys = [self.keys.alive(self.settings.worker_id, g) for g in self.keys.alive_groups()]
        try:
            # Bounded: the keys lapse anyway, and a primary slow to answer (a failover under
            # way) must not hold the worker past its grace period.
            async with asyncio.timeout(FORGET_ALIVE_TIMEOUT_S):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in keys:  # one DEL each: on a cluster they are in different slots
                        pipe.delete(key)
                    await pipe.execute()
        except TimeoutError:
            logger.warning(
                "could not delete this worker's alive keys within %.0f s (they lapse)",
                FORGET_ALIVE_TIMEOUT_S,
            )
        except Exception as exc:
            if not is_retryable(exc):
                raise
            logger.warning("could not delete this worker's alive keys (they lapse): %s", exc)

    async def _heartbeat_loop(self) -> None:
        settings = self.settings
        interval = settings.heartbeat_interval_ms / 1000
        # On one Redis the alive key goes in the heartbeat's round trip (see renew_lease_status);
        # on a cluster the per-group renewals set theirs within an alive interval.
        alive_key = None if self.keys.clustered else self.keys.alive(settings.worker_id)
        while True:
            await asyncio.sleep(interval)
            # Ended sessions are releasing their leases: renewing would take them back.
            sessions = [s for s in self.sessions.values() if s.end_reason is None]
            asked_at = self.ctx.clock.monotonic()
            try:
                statuses = await renew_lease_status(
                    self.redis,
                    [s.lease_key for s in sessions],
                    settings.worker_id,
                    settings.lease_ttl_ms,
                    alive_key=alive_key,
                    alive_ttl_ms=settings.alive_ttl_ms,
                )
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.metrics.redis_up.set(0)
                logger.warning("lease renewal failed: %s", exc)
                continue
            self.ctx.lease_clock.confirm(asked_at)
            # The reader polls Redis all the time, so this holds with no call to renew as well.
            self.metrics.redis_up.set(
                1 if self.ctx.writer.healthy and self.ctx.reader.healthy else 0
            )
            for session, status in zip(sessions, statuses, strict=True):
                if status is LeaseStatus.LOST:
                    if session.end_reason is None:
                        session.log.warning("lease lost: another worker holds the call now")
                        session.stop("lease_lost", lease_lost=True)
                    continue
                if status is LeaseStatus.REACQUIRED:
                    # Redis restarted empty (or the lease lapsed unclaimed): the record went
                    # with it, so write this worker's part of it again.
                    session.log.warning("lease was missing; took it back and restored the call")
                    self.metrics.leases_restored.inc()
                    session.restore_record()
                    session.saved_in_cursor = session.in_cursor
                elif session.in_cursor != session.saved_in_cursor:
                    # Where a worker taking over this call would resume reading the caller.
                    session.saved_in_cursor = session.in_cursor
                    self.ctx.writer.command(
                        *set_fields_command(
                            self.keys, session.call_sid, {CallField.IN_CURSOR: session.in_cursor}
                        )
                    )
