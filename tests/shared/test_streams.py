"""Leases, BatchWriter and FanInReader against fakeredis (with Lua, so EVAL runs)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import pytest
import redis.exceptions
from fakeredis.aioredis import FakeRedis
from prometheus_client import CollectorRegistry, Counter

from shared import metrics
from shared import streams as streams_module
from shared.cluster_pipe import ClusterPipe, NodeDown
from shared.messages import ENTRY_FIELD, InboundAudio, MarkPlayed, decode, encode
from shared.streams import (
    BatchWriter,
    Entry,
    FanInReader,
    LeaseStatus,
    acquire_lease,
    connect,
    ensure_group,
    release_lease,
    renew_lease_status,
)
from shared.tasks import cancel_and_wait
from tests.support.fake_redis import (
    add_message,
    polling_client,
    stream_entries,
    stream_messages,
)
from tests.support.stubborn import StubbornCall
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        done, stuck = await asyncio.wait(tasks, timeout=2.0)
        assert not stuck, f"tasks did not stop: {stuck}"
        assert all(task.cancelled() for task in done)


async def _names(redis: FakeRedis, stream: str) -> list[str]:
    names = []
    for message in await stream_messages(redis, stream):
        assert isinstance(message, MarkPlayed)
        names.append(message.name)
    return names


# --- leases ---------------------------------------------------------------------------------


async def test_lease_is_exclusive(redis: FakeRedis) -> None:
    assert await acquire_lease(redis, "lease", "w1", 5000)
    assert not await acquire_lease(redis, "lease", "w2", 5000)
    assert not await acquire_lease(redis, "lease", "w1", 5000)  # not re-entrant either
    assert await redis.get("lease") == b"w1"
    assert 0 < await redis.pttl("lease") <= 5000


async def test_renew_extends_own_leases_and_retakes_missing_ones(redis: FakeRedis) -> None:
    await acquire_lease(redis, "a", "w1", 1000)
    await acquire_lease(redis, "b", "w2", 1000)
    assert await renew_lease_status(redis, ["a", "b", "missing"], "w1", 60_000) == [
        LeaseStatus.RENEWED,
        LeaseStatus.LOST,
        LeaseStatus.REACQUIRED,
    ]
    assert await redis.pttl("a") > 1000
    assert await redis.pttl("b") <= 1000
    assert await redis.get("b") == b"w2"
    assert await redis.get("missing") == b"w1"  # Redis restarted empty: taken back
    assert 1000 < await redis.pttl("missing") <= 60_000
    assert await renew_lease_status(redis, [], "w1", 1000) == []
    assert await renew_lease_status(redis, ["a", "b"], "w1", 1000) == [
        LeaseStatus.RENEWED,
        LeaseStatus.LOST,
    ]


async def test_renewal_runs_one_script_per_slot_group_and_answers_in_key_order(
    redis: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a cluster a script's keys must share a slot: leases of two slot groups, interleaved.
    keys = ["sb:{g1}:call:A:lease", "sb:{g2}:call:B:lease", "sb:{g1}:call:C:lease"]
    await acquire_lease(redis, keys[1], "w2", 1000)
    scripts: list[tuple[object, ...]] = []
    pipeline = redis.pipeline

    def recording_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        evaluate = pipe.eval

        def eval_(script: str, numkeys: int, *rest: Any) -> Any:
            scripts.append(rest[:numkeys])
            return evaluate(script, numkeys, *rest)

        pipe.eval = eval_  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(redis, "pipeline", recording_pipeline)
    assert await renew_lease_status(redis, keys, "w1", 60_000) == [
        LeaseStatus.REACQUIRED,
        LeaseStatus.LOST,
        LeaseStatus.REACQUIRED,
    ]
    assert scripts == [(keys[0], keys[2]), (keys[1],)]


async def lapsed(redis: FakeRedis, key: str) -> bool:
    return not await redis.exists(key)


async def test_lease_taken_by_another_worker_is_reported_lost(redis: FakeRedis) -> None:
    await acquire_lease(redis, "lease", "w1", 30)
    await eventually(lambda: lapsed(redis, "lease"))
    assert await acquire_lease(redis, "lease", "w2", 1000)  # lapsed, and w2 took it
    assert await renew_lease_status(redis, ["lease"], "w1", 1000) == [LeaseStatus.LOST]
    assert await redis.get("lease") == b"w2"
    assert await renew_lease_status(redis, ["lease"], "w2", 1000) == [LeaseStatus.RENEWED]


async def test_lapsed_unclaimed_lease_is_taken_back(redis: FakeRedis) -> None:
    await acquire_lease(redis, "lease", "w1", 30)
    await eventually(lambda: lapsed(redis, "lease"))
    assert await renew_lease_status(redis, ["lease"], "w1", 1000) == [LeaseStatus.REACQUIRED]
    assert not await acquire_lease(redis, "lease", "w2", 1000)


async def test_release_only_by_owner(redis: FakeRedis) -> None:
    await acquire_lease(redis, "lease", "w1", 5000)
    await release_lease(redis, "lease", "w2")
    assert await redis.get("lease") == b"w1"
    await release_lease(redis, "lease", "w1")
    assert not await redis.exists("lease")
    await release_lease(redis, "lease", "w1")  # releasing twice is harmless
    assert await acquire_lease(redis, "lease", "w2", 5000)


async def test_ensure_group_is_idempotent(redis: FakeRedis) -> None:
    await ensure_group(redis, "dispatch", "workers")
    await ensure_group(redis, "dispatch", "workers")
    groups = await redis.xinfo_groups("dispatch")
    assert [g["name"] for g in groups] == [b"workers"]


async def test_ensure_group_reports_other_errors(redis: FakeRedis) -> None:
    await redis.set("dispatch", "not a stream")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await ensure_group(redis, "dispatch", "workers")


async def test_connect_sets_timeouts() -> None:
    client = connect("redis://localhost:6399/3")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 10.0
        assert kwargs["socket_connect_timeout"] == 5.0
        assert kwargs["db"] == 3
    finally:
        await client.aclose()


# --- BatchWriter ----------------------------------------------------------------------------


async def test_writer_writes_in_queue_order_and_flushes(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    async with running(writer.run()):
        for i in range(50):
            await writer.xadd("s1", MarkPlayed(f"a{i}"), 1000)
            writer.xadd_nowait("s2", MarkPlayed(f"b{i}"), 1000)
            writer.command("SET", "last", str(i))
        await writer.flush()
        assert writer.pending == 0
        assert await _names(redis, "s1") == [f"a{i}" for i in range(50)]
        assert await _names(redis, "s2") == [f"b{i}" for i in range(50)]
        assert await redis.get("last") == b"49"
        await writer.flush()  # nothing queued: returns at once


async def test_writer_stores_raw_audio(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    audio = bytes(range(256))
    async with running(writer.run()):
        await writer.xadd("in", InboundAudio(audio, 40, 1.0), 100)
        await writer.flush()
    ((_, fields),) = await stream_entries(redis, "in")
    assert fields == {ENTRY_FIELD: encode(InboundAudio(audio, 40, 1.0))}


async def test_writer_flush_waits_for_writes_queued_before_it(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    writer.command("SET", "k", "1")
    flushed = asyncio.create_task(writer.flush())
    await waiting(flushed)
    assert not flushed.done()  # the writer is not running yet
    async with running(writer.run()):
        await asyncio.wait_for(flushed, 1.0)
        assert await redis.get("k") == b"1"


async def test_writer_retries_while_redis_is_down_and_keeps_order(
    redis: FakeRedis, redis_server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    writer = BatchWriter(redis)
    redis_server.connected = False
    async with running(writer.run()):
        for i in range(5):
            await writer.xadd("s", MarkPlayed(str(i)), 1000)
        await eventually(lambda: not writer.healthy)
        for i in range(5, 10):
            await writer.xadd("s", MarkPlayed(str(i)), 1000)
        redis_server.connected = True
        await asyncio.wait_for(writer.flush(), 2.0)
        assert writer.healthy
        assert await _names(redis, "s") == [str(i) for i in range(10)]
    assert "retrying" in caplog.text


async def test_writer_skips_a_rejected_command_and_writes_the_rest(
    redis: FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    await redis.set("not-a-stream", "x")
    writer = BatchWriter(redis)
    async with running(writer.run()):
        with caplog.at_level(logging.ERROR, logger="shared.streams"):
            await writer.xadd("s", MarkPlayed("before"), 1000)
            await writer.xadd("not-a-stream", MarkPlayed("rejected"), 1000)
            await writer.xadd("s", MarkPlayed("after"), 1000)
            await writer.flush()
        assert await _names(redis, "s") == ["before", "after"]
        assert writer.healthy
    assert "redis rejected XADD not-a-stream" in caplog.text


class Tally:
    def __init__(self) -> None:
        self.count = 0.0

    def inc(self, amount: float = 1) -> None:
        self.count += amount


async def test_fenced_write_lands_for_the_holder_or_a_missing_lease(redis: FakeRedis) -> None:
    fenced = Tally()
    writer = BatchWriter(redis, fenced=fenced)
    await acquire_lease(redis, "lease:a", "w1", 10_000)
    async with running(writer.run()):
        await writer.fenced_xadd("lease:a", "w1", "out:a", [MarkPlayed("1"), MarkPlayed("2")], 100)
        # Missing (lapsed, or Redis restarted empty): still the writer's until a renewal says.
        writer.fenced_xadd_nowait("lease:b", "w1", "out:b", [MarkPlayed("3")], 100)
        await writer.flush()
    assert await _names(redis, "out:a") == ["1", "2"]
    assert await _names(redis, "out:b") == ["3"]
    assert fenced.count == 0


async def test_fenced_write_is_refused_once_another_worker_holds_the_lease(
    redis: FakeRedis,
) -> None:
    fenced = Tally()
    writer = BatchWriter(redis, fenced=fenced)
    await acquire_lease(redis, "lease:a", "w2", 10_000)
    # Queued by a worker paused before it could write; another worker took the call meanwhile.
    await writer.fenced_xadd("lease:a", "w1", "out:a", [MarkPlayed("stale")], 100)
    writer.xadd_nowait("out:a", MarkPlayed("w2 speaking"), 100)
    async with running(writer.run()):
        await writer.flush()
    assert await _names(redis, "out:a") == ["w2 speaking"]
    assert fenced.count == 1


async def test_fenced_writes_survive_a_redis_that_forgot_the_script(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    async with running(writer.run()):
        writer.fenced_xadd_nowait("lease:a", "w1", "out:a", [MarkPlayed("1")], 100)
        await writer.flush()
        await redis.script_flush()  # what a restarted Redis looks like to the writer
        for i in range(2, 5):
            writer.fenced_xadd_nowait("lease:a", "w1", "out:a", [MarkPlayed(str(i))], 100)
        writer.command("SET", "other", "x")
        await writer.flush()
    assert await _names(redis, "out:a") == ["1", "2", "3", "4"]
    assert await redis.get("other") == b"x"


async def test_writer_applies_back_pressure(redis: FakeRedis) -> None:
    writer = BatchWriter(redis, max_pending=3)
    for i in range(3):
        await writer.xadd("s", MarkPlayed(str(i)), 1000)
    blocked = asyncio.create_task(writer.xadd("s", MarkPlayed("3"), 1000))
    await waiting(blocked)
    assert not blocked.done()
    writer.xadd_nowait("s", MarkPlayed("control"), 1000)  # never waits
    assert writer.pending == 4
    async with running(writer.run()):
        await asyncio.wait_for(blocked, 1.0)
        await writer.flush()
        assert await _names(redis, "s") == ["0", "1", "2", "control", "3"]


@pytest.mark.parametrize(("gather_s", "most_round_trips"), [(0.0, 10), (0.2, 2)])
async def test_writer_gathers_writes_for_redis_batch_ms(
    redis: FakeRedis, gather_s: float, most_round_trips: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = BatchWriter(redis, gather_s=gather_s)
    pipelines = 0
    make_pipeline = redis.pipeline

    def counting_pipeline(transaction: bool = False) -> Any:
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(transaction=transaction)

    monkeypatch.setattr(redis, "pipeline", counting_pipeline)
    async with running(writer.run()):
        for i in range(10):  # one frame every 10 ms
            await writer.xadd("s", MarkPlayed(str(i)), 1000)
            await asyncio.sleep(0.01)
        await writer.flush()
    assert await _names(redis, "s") == [str(i) for i in range(10)]
    assert pipelines <= most_round_trips
    if not gather_s:
        assert pipelines >= 5  # without gathering, nearly one round trip per frame


async def test_writer_stops_on_a_non_retryable_failure(
    redis: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(Exception):
        pass

    def pipeline(transaction: bool = False) -> Any:
        raise Broken("bug")

    writer = BatchWriter(redis)
    monkeypatch.setattr(redis, "pipeline", pipeline)
    writer.command("SET", "k", "1")
    with pytest.raises(Broken):
        await asyncio.wait_for(writer.run(), 1.0)


# --- FanInReader ----------------------------------------------------------------------------


class Sink:
    """Collects the entries of one stream; can be told to pause."""

    def __init__(self, accept: bool = True) -> None:
        self.entries: list[Entry] = []
        self.calls = 0
        self.accept = accept

    def __call__(self, entries: list[Entry]) -> bool:
        self.calls += 1
        self.entries.extend(entries)
        return self.accept

    def names(self) -> list[str]:
        result = []
        for _, fields in self.entries:
            message = decode(fields[ENTRY_FIELD])
            assert isinstance(message, MarkPlayed)
            result.append(message.name)
        return result


async def waiting(task: asyncio.Task[Any]) -> None:
    """Until ``task`` has started and is suspended, waiting for something (or has ended)."""
    coroutine: Any = task.get_coro()
    await eventually(
        lambda: task.done() or inspect.getcoroutinestate(coroutine) == inspect.CORO_SUSPENDED
    )


async def _add(redis: FakeRedis, stream: str, *names: str) -> list[bytes]:
    return [await add_message(redis, stream, MarkPlayed(name)) for name in names]


def _reader(redis: FakeRedis, writer: BatchWriter, **kwargs: Any) -> FanInReader:
    return FanInReader(redis, writer, "wake", **kwargs)


async def test_reader_delivers_each_stream_in_order(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=50, count=4)
    a, b = Sink(), Sink()
    reader.subscribe("a", a)
    reader.subscribe("b", b)
    await _add(redis, "a", *(f"a{i}" for i in range(10)))
    await _add(redis, "b", "b0")
    async with running(writer.run(), reader.run()):
        await eventually(lambda: len(a.entries) == 10 and len(b.entries) == 1)
        last = await _add(redis, "a", "a10", "a11")
        await eventually(lambda: len(a.entries) == 12)
    assert a.names() == [f"a{i}" for i in range(12)]
    assert b.names() == ["b0"]
    assert a.calls >= 3  # count=4 per read: batches, each in order
    assert reader.last_id("a") == last[-1]
    assert reader.healthy


async def test_a_reader_stops_although_a_read_swallows_its_first_cancellation(
    redis: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11: a cancellation that meets a library timeout's deadline can be swallowed;
    # the read loop then reads again, and only a second request stops it.
    stuck_xread = StubbornCall(returns=[])
    monkeypatch.setattr(streams_module._RedisPyPipe, "xread", stuck_xread)
    reader = _reader(redis, BatchWriter(redis), block_ms=50)
    reader.subscribe("a", Sink())
    task = asyncio.create_task(reader.run())
    await asyncio.sleep(0.05)  # the read is under way, stuck
    stopping = asyncio.create_task(cancel_and_wait([task]))
    stopped, _ = await asyncio.wait({stopping}, timeout=5)  # the 3.11 group alone: never
    assert stopped, "the reader is still stopping"
    assert len(stuck_xread.swallowed) == 1 and task.cancelled()


async def test_reader_gathers_entries_for_redis_batch_ms(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=50, gather_s=0.3)
    sink = Sink()
    reader.subscribe("a", sink)
    async with running(writer.run(), reader.run()):
        await _add(redis, "a", "0")
        await eventually(lambda: sink.calls == 1)
        for i in range(1, 6):  # arrive while the reader waits after its delivery
            await _add(redis, "a", str(i))
            await asyncio.sleep(0.01)
        await eventually(lambda: len(sink.entries) == 6)
    assert sink.calls == 2  # the five later entries came back in one read
    assert sink.names() == [str(i) for i in range(6)]


async def test_reader_starts_after_start_id(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=50)
    ids = await _add(redis, "a", "old1", "old2", "new1")
    sink = Sink()
    reader.subscribe("a", sink, start_id=ids[1])
    async with running(writer.run(), reader.run()):
        await eventually(lambda: len(sink.entries) == 1)
        await _add(redis, "a", "new2")  # read after the first: nothing older comes with it
        await eventually(lambda: len(sink.entries) == 2)
    assert sink.names() == ["new1", "new2"]


async def test_subscribe_wakes_a_blocked_read(
    redis_server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Really blocks in XREAD (not the polling client); see tests/support/fake_redis.py.
    redis = FakeRedis(server=redis_server, socket_timeout=None)
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=30_000)
    reads: list[dict[str, Any]] = []  # the streams of each XREAD, as asked
    in_flight = 0
    xread = redis.xread

    async def counted_xread(streams: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight
        reads.append(dict(streams))
        in_flight += 1
        try:
            return await xread(streams, *args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(redis, "xread", counted_xread)
    first = Sink()
    reader.subscribe("first", first)
    async with running(writer.run(), reader.run()):
        await writer.flush()  # the subscription's wake-up is in the wake stream
        newest: Any = await redis.xrevrange("wake", count=1)
        ((woken_at, _),) = newest
        # The reader now blocks (30 s) on "first" and the wake stream, past that wake-up.
        await eventually(lambda: in_flight == 1 and reads[-1].get("wake") == woken_at)
        await _add(redis, "late", "x")
        late = Sink()
        reader.subscribe("late", late)
        await eventually(lambda: late.names() == ["x"], within_s=1.0)
    assert first.entries == []
    await redis.aclose()


async def test_paused_stream_waits_in_redis_until_resumed(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=20)
    sink = Sink(accept=False)
    other = Sink()
    reader.subscribe("a", sink)
    reader.subscribe("b", other)
    await _add(redis, "a", "1", "2")
    async with running(writer.run(), reader.run()):
        await eventually(lambda: len(sink.entries) == 2)
        await _add(redis, "a", "3", "4")
        await _add(redis, "b", "other")
        await eventually(lambda: len(other.entries) == 1)
        # Another read after that one: "a" stays out of every read while paused.
        await _add(redis, "b", "other2")
        await eventually(lambda: len(other.entries) == 2)
        assert sink.names() == ["1", "2"]  # paused: nothing more delivered
        assert sink.calls == 1
        sink.accept = True
        reader.resume("a")
        await eventually(lambda: len(sink.entries) == 4)
        await _add(redis, "a", "5")
        await eventually(lambda: len(sink.entries) == 5)
    assert sink.names() == ["1", "2", "3", "4", "5"]  # nothing lost, nothing repeated


async def test_resume_of_unpaused_or_unknown_stream_is_harmless(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer)
    reader.subscribe("a", Sink())
    queued = writer.pending
    reader.resume("a")
    reader.resume("nope")
    assert writer.pending == queued  # no wake-ups for nothing


async def test_unsubscribe_stops_delivery(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=20)
    sink, other = Sink(), Sink()
    reader.subscribe("a", sink)
    await _add(redis, "a", "1")
    async with running(writer.run(), reader.run()):
        await eventually(lambda: len(sink.entries) == 1)
        reader.unsubscribe("a")
        assert reader.last_id("a") is None
        reader.subscribe("b", other)
        await _add(redis, "a", "2")
        await _add(redis, "b", "later")  # read after "2" was: the reader has moved past it
        await eventually(lambda: other.names() == ["later"])
    assert sink.names() == ["1"]
    reader.unsubscribe("a")  # twice is harmless


async def test_wake_stream_is_bounded_and_expires(redis: FakeRedis) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer)
    for i in range(3):
        reader.subscribe(f"s{i}", Sink())
    async with running(writer.run()):
        await writer.flush()
    assert await redis.xlen("wake") == 3
    assert 0 < await redis.ttl("wake") <= 3600


async def test_reader_survives_redis_outage(
    redis: FakeRedis, redis_server: fakeredis.FakeServer
) -> None:
    writer = BatchWriter(redis)
    reader = _reader(redis, writer, block_ms=20)
    sink = Sink()
    reader.subscribe("a", sink)
    async with running(writer.run(), reader.run()):
        await writer.flush()
        redis_server.connected = False
        await eventually(lambda: not reader.healthy)
        redis_server.connected = True
        await _add(redis, "a", "after")
        await eventually(lambda: sink.names() == ["after"])
        assert reader.healthy


# --- metrics of the retry paths -----------------------------------------------------------------


def _redis_counters() -> tuple[CollectorRegistry, Counter, Counter]:
    registry = CollectorRegistry()
    return registry, metrics.redis_errors(registry), metrics.redis_reconnects(registry)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_writer_counts_redis_errors_and_the_reconnect(
    redis: FakeRedis, redis_server: fakeredis.FakeServer
) -> None:
    registry, errors, reconnects = _redis_counters()
    writer = BatchWriter(
        redis, errors=errors.labels("edge", "write"), reconnects=reconnects.labels("edge", "write")
    )
    redis_server.connected = False
    async with running(writer.run()):
        await writer.xadd("s", MarkPlayed("0"), 1000)
        await eventually(lambda: not writer.healthy)
        assert (
            _sample(registry, "switchboard_redis_reconnects_total", process="edge", op="write") == 0
        )
        redis_server.connected = True
        await asyncio.wait_for(writer.flush(), 2.0)
    assert _sample(registry, "switchboard_redis_errors_total", process="edge", op="write") >= 1
    assert _sample(registry, "switchboard_redis_reconnects_total", process="edge", op="write") == 1


async def test_reader_counts_redis_errors_and_the_reconnect(
    redis: FakeRedis, redis_server: fakeredis.FakeServer
) -> None:
    registry, errors, reconnects = _redis_counters()
    writer = BatchWriter(redis)
    reader = _reader(
        redis,
        writer,
        block_ms=20,
        errors=errors.labels("worker", "read"),
        reconnects=reconnects.labels("worker", "read"),
    )
    sink = Sink()
    reader.subscribe("a", sink)
    async with running(writer.run(), reader.run()):
        await writer.flush()
        redis_server.connected = False
        await eventually(lambda: not reader.healthy)
        redis_server.connected = True
        await _add(redis, "a", "after")
        await eventually(lambda: sink.names() == ["after"])
    assert _sample(registry, "switchboard_redis_errors_total", process="worker", op="read") >= 1
    assert _sample(registry, "switchboard_redis_reconnects_total", process="worker", op="read") == 1


async def test_a_reader_over_slot_groups_reads_each_group_with_its_own_wake_stream(
    redis: FakeRedis, redis_server: fakeredis.FakeServer
) -> None:
    # On a cluster: one XREAD per slot group, each on its own connection, each with the wake
    # stream of its group (same slot); entries of every group delivered in order.
    writer = BatchWriter(redis)
    opened: list[FakeRedis] = []
    reads: list[list[str]] = []

    def open_pipe() -> Any:
        client = polling_client(redis_server)
        xread = client.xread

        async def recording_xread(streams: Any, **kwargs: Any) -> Any:
            reads.append(list(streams))
            return await xread(streams, **kwargs)

        client.xread = recording_xread  # type: ignore[method-assign,assignment]
        opened.append(client)
        return client

    def wake_of(stream: str) -> str:
        return f"{{{stream.split('{')[1].split('}')[0]}}}:wake"

    reader = FanInReader(redis, writer, wake_of, open_pipe=open_pipe, block_ms=50)
    a, b, c = Sink(), Sink(), Sink()
    reader.subscribe("{g1}:a", a)
    reader.subscribe("{g2}:b", b)
    reader.subscribe("{g1}:c", c)
    await _add(redis, "{g1}:a", "a0", "a1")
    await _add(redis, "{g2}:b", "b0")
    await _add(redis, "{g1}:c", "c0")
    async with running(writer.run(), reader.run()):
        await eventually(lambda: len(a.entries) == 2 and len(b.entries) == 1 and c.entries)
        reader.subscribe("{g3}:d", d := Sink())  # a group that appears while running
        await _add(redis, "{g3}:d", "d0")
        await eventually(lambda: len(d.entries) == 1)
    assert (a.names(), b.names(), c.names(), d.names()) == (["a0", "a1"], ["b0"], ["c0"], ["d0"])
    assert len(opened) == 2  # the first group reads on the reader's own client
    assert {tuple(sorted(r)) for r in reads} >= {("{g2}:b", "{g2}:wake"), ("{g3}:d", "{g3}:wake")}
    assert all(len({s.split("}")[0] for s in r}) == 1 for r in reads)  # one group per read


class TwoPrimaries(ClusterPipe):
    """A cluster pipe whose primary of the ``b`` keys is down until ``b_up``: its commands
    fail (the first attempt) or are refused at once (``NodeDown``) meanwhile."""

    def __init__(self) -> None:  # no cluster behind it: execute is all there is
        self.written: list[tuple[object, ...]] = []
        self.b_up = False
        self.b_attempts = 0

    @property
    def reachable(self) -> bool:
        return True

    async def execute(self, commands: Sequence[tuple[object, ...]]) -> list[Any]:
        replies: list[Any] = []
        tried_b = False
        for args in commands:
            if str(args[1]).startswith("b") and not self.b_up:
                if not tried_b and self.b_attempts == 0:
                    replies.append(redis.exceptions.ConnectionError("b: connection refused"))
                else:
                    replies.append(NodeDown("b unreachable; retrying soon"))
                tried_b = True
                continue
            self.written.append(args)
            replies.append(1)
        self.b_attempts += tried_b
        return replies


async def test_on_a_cluster_one_primary_down_holds_up_only_its_own_writes() -> None:
    pipe = TwoPrimaries()
    registry = CollectorRegistry()
    errors = Counter("errors", "", registry=registry)
    writer = BatchWriter(pipe, errors=errors)

    def written(key: str) -> list[object]:
        return [args[2] for args in pipe.written if args[1] == key]

    def has_written(key: str, count: int) -> bool:
        return len(written(key)) == count

    async with running(writer.run()):
        writer.command("RPUSH", "a", 1)
        writer.command("RPUSH", "b", 1)
        await eventually(lambda: written("a") == [1])
        for n in range(2, 6):  # the a-primary's writes go on while b's wait
            writer.command("RPUSH", "a", n)
            writer.command("RPUSH", "b", n)
            await eventually(functools.partial(has_written, "a", n))
        assert written("a") == [1, 2, 3, 4, 5]
        assert written("b") == [] and not writer.healthy
        pipe.b_up = True
        writer.command("RPUSH", "b", 6)
        await eventually(lambda: written("b") == [1, 2, 3, 4, 5, 6])  # in order, once each
        await writer.flush()
    assert writer.healthy
    assert errors._value.get() == 1  # one failed attempt; the refusals after it are not errors
