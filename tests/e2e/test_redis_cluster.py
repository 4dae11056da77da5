"""Switchboard on a real Redis Cluster (REDIS_CLUSTER=true): three primaries with a replica
each, started by the test (``services.devcluster``), two edges and two workers.

Calls are echoed bit-exact with their keys spread over every primary, and a worker SIGKILLed
mid-call loses its calls to the other worker, which takes them over; a primary's replica
promoted (CLUSTER FAILOVER) while calls run leaves those calls running, and a new call is
answered within 5 s; a slot migrated to another primary while calls run (a resharding) takes
the keys of the calls on it along, and those calls go on. What the calls lost is printed
(docs/scaling.md records it).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from services.call_sim import CallReport, place_call
from services.devcluster import ClusterNode, RedisClusterHandle, redis_cluster
from services.devstack import Stack, wait_for
from shared.keys import Keys
from tests.support.calls import lost_audio_ms, segments_of
from tests.support.stack import (
    StackFactory,
    call_config,
    call_record,
    running_stacks,
    wait_for_audio_out,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

#: A new call after a failover must be answered (its first audio back) within this.
NEW_CALL_WITHIN_S = 5.0
#: The longest silence allowed on calls whose keys are on primaries that stay up while another
#: dies (echo calls hear a frame every 20 ms; the rest is room for a busy 2-core machine).
OTHER_SHARDS_SILENCE_MS = 1000
#: How much of a caller's audio a takeover may send its new session again (the worker's
#: TAKEOVER_BACKLOG_MS default, 3 s, and a second of slack), in bytes.
TAKEOVER_REPLAY_BYTES = (3000 + 1000) * 8


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterHandle]:
    with redis_cluster(primaries=3, replicas_per_primary=1) as handle:
        yield handle


@pytest.fixture
def make_cluster_stack(cluster: RedisClusterHandle, tmp_path: Path) -> Iterator[StackFactory]:
    with running_stacks(cluster.url, tmp_path) as factory:
        yield factory


#: The stack of every test here: two edges and two workers, echoing, on the cluster.
CLUSTER_STACK: dict[str, Any] = {
    "redis_cluster": True,
    "edges": 2,
    "workers": 2,
    "sim_mode": "echo",
}


@dataclass
class PlacedCalls:
    """One call whose keys are on each primary, placed at once."""

    keys: Keys
    sids: list[str]
    audios: list[bytes]
    tasks: list[asyncio.Task[CallReport]]
    placed_at: float  # monotonic, each call's first webhook within a few ms


def calls_on_every_primary(
    cluster: RedisClusterHandle, stack: Stack, *, seed: int, seconds: int
) -> PlacedCalls:
    """A call whose slot group is on each primary, ``seconds`` of distinct audio each (from
    ``seed``) and a second of hold after it, all placed at once."""
    keys = Keys(stack.config.key_prefix, clustered=True)
    rng = random.Random(7)
    unserved = {node.port for node in cluster.primaries()}
    sids: list[str] = []
    while unserved:
        sid = "CA" + rng.randbytes(16).hex()
        port = cluster.node_for_key(keys.call(sid)).port
        if port in unserved:
            unserved.remove(port)
            sids.append(sid)
    audios = [random.Random(seed + i).randbytes(seconds * 8000) for i in range(len(sids))]
    placed_at = time.monotonic()
    tasks = [
        asyncio.create_task(place_call(call_config(stack, audio, hold_s=1.0, call_sid=sid)))
        for sid, audio in zip(sids, audios, strict=True)
    ]
    return PlacedCalls(keys, sids, audios, tasks, placed_at)


async def new_call_answered(stack: Stack, since: float) -> float:
    """Seconds from ``since`` (monotonic) until a new call placed now, or again every 0.2 s
    while the edges decline calls, gets its first audio back; at most NEW_CALL_WITHIN_S."""
    audio = random.Random(99).randbytes(8000)
    while True:
        report = await place_call(call_config(stack, audio, hold_s=0.5))
        assert report.problems() == [], report.problems()
        if report.timings.first_audio_ms is not None:
            answered = time.monotonic() - report.timings.duration_ms / 1000
            answered_s = answered - since + report.timings.first_audio_ms / 1000
            assert answered_s <= NEW_CALL_WITHIN_S, f"a new call's first audio {answered_s:.2f} s"
            return answered_s
        assert time.monotonic() - since < NEW_CALL_WITHIN_S, "no new call answered in time"
        await asyncio.sleep(0.2)


def assert_calls_went_on(
    audios: list[bytes], reports: list[CallReport], event: str, replay: int = 8000
) -> list[float]:
    """Every call ran to the caller's hang-up and echoed the caller's audio after ``event``
    (up to ``replay`` bytes of it twice); the caller audio each lost, in ms."""
    for audio, report in zip(audios, reports, strict=True):
        assert report.problems() == [], report.problems()
        assert report.closed_by == "caller"  # the call ran to its end, not cut off
        runs = segments_of(report.received_audio, report.sent_audio, replay=replay)
        assert runs[-1][1] >= len(audio), f"the caller's audio after the {event} must echo"
    return [lost_audio_ms(report) for report in reports]


def assert_echoed_whole(report: CallReport, audio: bytes) -> None:
    assert report.problems() == [], report.problems()
    assert report.sent_audio.startswith(audio)
    assert len(report.received_audio) >= len(audio)
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]


async def test_calls_on_a_cluster_are_bit_exact_and_a_killed_workers_calls_move(
    cluster: RedisClusterHandle, make_cluster_stack: StackFactory
) -> None:
    stack = make_cluster_stack(**CLUSTER_STACK)
    placed = calls_on_every_primary(cluster, stack, seed=0, seconds=7)
    sids, audios = placed.sids, placed.audios
    # A second of audio on the first edge, whose calls take turns with the other's: the kill
    # comes early, and a takeover on a busy machine has seconds left to show its echo.
    await wait_for_audio_out(stack, len(sids) // len(stack.edges) * 8000)
    # While the calls run, their records, streams and leases are on all three primaries.
    spread = cluster.keys_by_primary(f"{stack.config.key_prefix}:{{g*}}:call:*")
    # The worker serving the first call dies; its calls move to the other.
    holder = call_record(stack, sids[0])["worker_id"]
    (victim,) = [w for w in stack.workers if f"{w.name}-{w.port}" == holder]  # its WORKER_ID
    moved = {sid for sid in sids if call_record(stack, sid)["worker_id"] == holder}
    victim.signal(signal.SIGKILL)
    assert victim.popen.wait(timeout=5) == -signal.SIGKILL
    stack.workers.remove(victim)
    reports = await asyncio.gather(*placed.tasks)

    assert sorted(spread) == sorted(node.port for node in cluster.primaries())
    assert all(count >= 4 for count in spread.values()), spread  # a call's 4 keys at least
    (survivor,) = stack.workers
    for audio, report in zip(audios, reports, strict=True):
        if report.call_sid not in moved:
            assert_echoed_whole(report, audio)
            continue
        assert report.problems() == [], report.problems()
        runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
        assert runs[-1][1] >= len(audio), "the caller's audio after the takeover must echo"
        assert f"call={report.call_sid} took over the call" in survivor.log()
    moved_reports = [r for r in reports if r.call_sid in moved]
    print(
        f"worker SIGKILL on the cluster: {len(moved)} of {len(sids)} calls moved; their longest "
        f"silence {[round(r.longest_media_gap_ms()) for r in moved_reports]} ms, caller audio "
        f"lost {[round(lost_audio_ms(r)) for r in moved_reports]} ms"
    )


async def test_a_primary_failover_keeps_calls_running_and_new_calls_are_answered(
    cluster: RedisClusterHandle, make_cluster_stack: StackFactory
) -> None:
    stack = make_cluster_stack(**CLUSTER_STACK)
    placed = calls_on_every_primary(cluster, stack, seed=20, seconds=6)
    keys, sids, audios = placed.keys, placed.sids, placed.audios
    await wait_for_audio_out(stack, 2 * 8000)
    # The primary serving the first call's keys (and the dispatch stream's, if it is the same
    # node) hands its slots to its replica while every call runs.
    old = cluster.node_for_key(keys.call(sids[0]))
    started = time.monotonic()
    new = await asyncio.to_thread(cluster.failover, old)
    failover_s = time.monotonic() - started
    assert cluster.node_for_key(keys.call(sids[0])).port == new.port
    answered_s = await new_call_answered(stack, since=started + failover_s)
    reports = await asyncio.gather(*placed.tasks)

    lost = assert_calls_went_on(audios, reports, "failover")
    print(
        f"CLUSTER FAILOVER of one of 3 primaries took {failover_s:.2f} s; caller audio lost "
        f"per call {[round(ms) for ms in lost]} ms, longest silence per call "
        f"{[round(r.longest_media_gap_ms()) for r in reports]} ms; a new call's first audio "
        f"{answered_s:.2f} s after the promotion"
    )


async def test_a_slot_migrated_while_calls_run_takes_their_keys_along_and_the_calls_go_on(
    cluster: RedisClusterHandle, make_cluster_stack: StackFactory
) -> None:
    stack = make_cluster_stack(**CLUSTER_STACK)
    placed = calls_on_every_primary(cluster, stack, seed=60, seconds=6)
    keys, sids, audios = placed.keys, placed.sids, placed.audios
    await wait_for_audio_out(stack, 2 * 8000)
    # The first call's slot group (its record, streams and lease, and the workers' alive keys
    # for the group) moves to the primary of the second call, as a resharding moves it.
    moving = keys.call(sids[0])
    slot = key_slot(moving.encode())
    target = cluster.node_for_key(keys.call(sids[1]))
    started = time.monotonic()
    source = await asyncio.to_thread(cluster.migrate_slot, slot, target)
    migrate_s = time.monotonic() - started
    assert cluster.node_for_key(moving) is target
    reports = await asyncio.gather(*placed.tasks)

    lost = assert_calls_went_on(audios, reports, "migration")
    # The moved call's keys live on the new owner only, and its record came through whole.
    assert source.client().cluster("COUNTKEYSINSLOT", slot) == 0
    record = call_record(stack, sids[0])
    assert record["state"] == "ended" and record["edge_id"] and record["worker_id"]
    print(
        f"slot {slot} migrated from port {source.port} to {target.port} in {migrate_s:.2f} s "
        f"while calls ran; caller audio lost per call {[round(ms) for ms in lost]} ms, longest "
        f"silence per call {[round(r.longest_media_gap_ms()) for r in reports]} ms (the moved "
        f"call first)"
    )


async def test_a_primary_killed_mid_call_silences_only_the_calls_that_need_it(
    tmp_path: Path,
) -> None:
    # A cluster of its own: the dead node stays dead. With cluster-require-full-coverage no
    # (docs/scaling.md recommends it) the other primaries go on serving while the cluster
    # notices (cluster-node-timeout: 2 s here, 15 s by Redis's default) and promotes the dead
    # one's replica; every call goes on, and those whose keys are elsewhere must not notice
    # (their workers' alive keys for them are in their slot groups too).
    with (
        redis_cluster(primaries=3, replicas_per_primary=1, full_coverage=False) as cluster,
        running_stacks(cluster.url, tmp_path) as factory,
    ):
        stack = factory(**CLUSTER_STACK)
        placed = calls_on_every_primary(cluster, stack, seed=40, seconds=10)
        audios, placed_at = placed.audios, placed.placed_at
        await wait_for_audio_out(stack, 2 * 8000)
        victim, spared = _victim(cluster, placed.keys, placed.sids)
        killed_at = time.monotonic()
        victim.process.kill()
        victim.process.wait(timeout=5)

        def promoted() -> bool:
            return len(cluster.primaries()) == 3

        await asyncio.to_thread(wait_for, promoted, 20, "a replica promoted")
        promoted_s = time.monotonic() - killed_at
        answered_s = await new_call_answered(stack, since=killed_at + promoted_s)
        reports = await asyncio.gather(*placed.tasks)

    # A call on the dead primary may be taken over once its slots are served again (its
    # worker's alive key lapsed meanwhile): the new session resumes from the last saved read
    # position and is sent the caller's audio younger than TAKEOVER_BACKLOG_MS (3 s), which
    # the old session may have echoed already, the audio held up in the outage included. A
    # run saw 2.98 s echo twice; allowed: that policy's 3 s and a second for a busy machine.
    lost = assert_calls_went_on(audios, reports, "failover", replay=TAKEOVER_REPLAY_BYTES)
    # From the kill until a second after the promotion, in each call's own time (ms since
    # its first webhook).
    window = ((killed_at - placed_at) * 1000, (killed_at - placed_at + promoted_s + 1) * 1000)
    silences = {r.call_sid: round(r.longest_media_gap_ms(*window)) for r in reports}
    print(
        f"primary SIGKILLed: replica serving after {promoted_s:.2f} s; longest silence from "
        f"the kill to a second after the promotion, of the calls on the other primaries "
        f"{[silences[sid] for sid in spared]} ms, of the others "
        f"{[ms for sid, ms in silences.items() if sid not in spared]} ms; caller audio lost "
        f"per call {[round(ms) for ms in lost]} ms; a new call's first audio "
        f"{answered_s:.2f} s after the promotion"
    )
    assert all(silences[sid] <= OTHER_SHARDS_SILENCE_MS for sid in spared), silences


def _victim(
    cluster: RedisClusterHandle, keys: Keys, sids: list[str]
) -> tuple[ClusterNode, set[str]]:
    """The primary to kill, one that holds a call's keys, and the calls whose keys are
    elsewhere. Never the seed node of REDIS_URL, which the test harness cleans up through."""
    primary = {sid: cluster.node_for_key(keys.call(sid)) for sid in sids}
    victim = next(node for node in primary.values() if node is not cluster.nodes[0])
    return victim, {sid for sid in sids if primary[sid] is not victim}
