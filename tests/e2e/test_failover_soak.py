"""Failover under load and over time: worker kills in conversation, a soak with repeated kills,
session rollovers, and memory bounds while a worker is frozen."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import time
from pathlib import Path

import pytest
import redis

from services.call_sim import CallReport, place_call, place_calls
from shared.audio import silence
from tests.support.calls import (
    CALLER_AUDIO,
    REPLY_TEXT,
    segments_of,
    short_reply,
    sim_sessions,
    wait_for_sessions,
)
from tests.support.liveness import probing
from tests.support.stack import (
    StackFactory,
    active_calls,
    call_config,
    call_holder,
    call_turns,
    metric_value,
    scrape_async,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

FAILOVER = {"LEASE_TTL_MS": "2000", "HEARTBEAT_INTERVAL_MS": "500"}
#: How long the frozen-worker test keeps its worker stopped: its calls move within seconds,
#: and what Redis and the edge hold must not grow after that.
FREEZE_S = 15


def log_time(line: str) -> float:
    """The wall-clock time (epoch seconds) a service log line was written."""
    stamp = line.split(" ", 1)[0]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def longest_gap_ms(report: CallReport) -> float:
    """The longest stretch of the caller's audio that never came back (echo mode), in ms."""
    runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
    gaps = [max(0, b[0] - a[1]) for a, b in zip(runs, runs[1:], strict=False)]
    return max(gaps, default=0) / 8


async def test_worker_killed_in_conversation_new_session_knows_the_turns(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=2, sim_mode="conversation", sim_args=short_reply(tmp_path), worker_env=FAILOVER
    )
    # Speak, listen to the 2 s reply, speak again after the worker died, listen again.
    audio = CALLER_AUDIO + silence(8000 * 4) + CALLER_AUDIO
    sid = "CA" + random.Random(5).randbytes(16).hex()
    task = asyncio.create_task(place_call(call_config(stack, audio, hold_s=4.0, call_sid=sid)))
    victim = await call_holder(stack)

    async def first_reply_stored() -> bool:  # the question and the answer, written to Redis
        return len(await asyncio.to_thread(call_turns, stack, sid)) >= 2

    await eventually(first_reply_stored, 15, "the first reply's turns")
    killed_at = time.time()
    victim.signal(signal.SIGKILL)
    report = await task
    assert victim.popen.wait(timeout=5) == -signal.SIGKILL
    stack.workers.remove(victim)

    assert report.problems() == []
    survivor_log = stack.workers[0].log()
    takeover = next(line for line in survivor_log.splitlines() if "took over the call" in line)
    failover_s = log_time(takeover) - killed_at
    print(f"worker failover in conversation: {failover_s:.2f} s from SIGKILL to takeover")
    assert failover_s <= 4.0
    assert "seeded 2 turns" in takeover  # the caller's question and the model's answer
    sessions = wait_for_sessions(stack, 2)
    second = sessions[1]
    assert second["client_events"]["conversation.item.create"] == 2
    assert second["transcripts"] == [REPLY_TEXT]  # the new session answered the second question
    assert survivor_log.count(f"call={report.call_sid} AI said: {REPLY_TEXT}") == 1


# Twenty real-time calls through one stack keep two cores busy (1.5 cores on average, with
# coverage): sharing them with other tests starves the workers, and a starved worker saves
# its read position late, so a takeover replays more than the second allowed below.
@pytest.mark.serial
async def test_soak_twenty_calls_with_a_worker_killed_every_ten_seconds(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=3, sim_mode="echo", worker_env=FAILOVER)
    audios = [random.Random(100 + i).randbytes(42 * 8000) for i in range(20)]
    calls = asyncio.create_task(place_calls([call_config(stack, a, hold_s=1.0) for a in audios]))
    kills = 0
    started = time.monotonic()
    replaced: asyncio.Task[None] | None = None
    timeline: list[str] = []

    async def replace_worker(after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await after  # one start at a time (a new worker's name comes from the list's length)
        began = time.monotonic()
        await asyncio.to_thread(stack.add_worker)  # the calls go on while it starts
        timeline.append(f"a worker started in {time.monotonic() - began:.1f} s")

    # A kill in a call's last seconds cannot be recovered before the caller hangs up: the kills
    # stop 12 s before the calls end, which leaves each takeover time to show. They keep to
    # this schedule however long a replacement worker takes to start on a busy machine.
    # Meanwhile every edge and worker answers its liveness probe.
    with probing(stack) as probes:
        try:
            for kill_at_s in (10, 20, 30):
                timeout = max(0.0, started + kill_at_s - time.monotonic())
                await asyncio.wait({calls}, timeout=timeout)
                if calls.done():
                    break
                held = [await active_calls(worker) for worker in stack.workers]
                busiest = stack.workers[held.index(max(held))]
                busiest.signal(signal.SIGKILL)
                timeline.append(f"killed {busiest.name} at {time.monotonic() - started:.1f} s")
                assert busiest.popen.wait(timeout=5) == -signal.SIGKILL
                stack.workers.remove(busiest)
                replaced = asyncio.create_task(replace_worker(replaced))
                kills += 1
        finally:
            if replaced is not None:
                await replaced  # the stack's teardown stops only the workers it lists
        reports = await calls
    timeline.append(f"the calls ended at {time.monotonic() - started:.1f} s")

    assert kills >= 3, timeline
    gaps, silences = [], []
    for audio, report in zip(audios, reports, strict=True):
        assert report.problems() == [], report.problems()
        assert report.closed_by == "caller", "the caller, not the bridge, ended the call"
        runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
        assert runs[0][0] == 0 and runs[-1][1] >= len(audio), "the call was dropped"
        gaps.append(longest_gap_ms(report))
        silences.append(report.longest_media_gap_ms())
    print(
        f"soak: {kills} worker kills, 20 calls; longest stretch without audio per call "
        f"{sorted(round(s) for s in silences)} ms; caller audio that never came back: "
        f"longest {max(gaps):.0f} ms; liveness: {probes.summary()}"
    )
    assert max(gaps) <= 6000
    assert probes.failures == [], probes.failures


async def test_rollovers_cross_three_sessions_without_a_gap(make_stack: StackFactory) -> None:
    stack = make_stack(workers=1, sim_mode="echo", worker_env={"SESSION_MAX": "5"})
    audio = random.Random(17).randbytes(19 * 8000)
    report = await place_call(call_config(stack, audio, hold_s=1.0))

    assert report.problems() == []
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]
    assert len(report.received_audio) >= len(audio)  # no gap at all, let alone of one frame
    assert stack.workers[0].log().count("rolled the call over") >= 2
    # Every byte the caller sent reached exactly one of the sessions (records are written as
    # each session closes, the last one just after the call).
    await eventually(
        lambda: (
            sum(int(str(s["audio_in_bytes"])) for s in sim_sessions(stack))
            == len(report.sent_audio)
        ),
        10,
        "the sessions to account for every byte",
    )
    assert len(sim_sessions(stack)) >= 3


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_frozen_worker_cannot_grow_redis_or_edge_memory(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, sim_mode="echo", worker_env=FAILOVER)
    client = redis.Redis.from_url(stack.config.redis_url)
    audios = [random.Random(200 + i).randbytes(25 * 8000) for i in range(5)]
    calls = asyncio.create_task(place_calls([call_config(stack, a, hold_s=1.0) for a in audios]))
    frozen = stack.workers[0]

    async def all_claimed_and_flowing() -> bool:
        held = [await active_calls(worker) for worker in stack.workers]
        text = await scrape_async(stack.edge_admin_urls[0])
        flowing = metric_value(text, "switchboard_edge_audio_out_bytes_total") >= 5 * 2 * 8000
        return held[0] >= 1 and sum(held) == 5 and flowing

    # Every call claimed, some by the worker about to freeze, and echoing (2 s each).
    await eventually(all_claimed_and_flowing, 20, "the five calls under way")
    redis_before = int(client.info("memory")["used_memory"])
    edge_before = rss_bytes(stack.edges[0].popen.pid)
    frozen.signal(signal.SIGSTOP)
    redis_peak, edge_peak = redis_before, edge_before
    for _ in range(FREEZE_S):
        await asyncio.sleep(1)
        redis_peak = max(redis_peak, int(client.info("memory")["used_memory"]))
        edge_peak = max(edge_peak, rss_bytes(stack.edges[0].popen.pid))
    frozen.signal(signal.SIGCONT)
    reports = await calls
    client.close()

    growth_redis, growth_edge = redis_peak - redis_before, edge_peak - edge_before
    print(
        f"frozen worker for {FREEZE_S} s, 5 calls: Redis used_memory +{growth_redis / 1e6:.1f} MB, "
        f"edge RSS +{growth_edge / 1e6:.1f} MB"
    )
    # Each call's inbound stream is trimmed to ~3000 entries (60 s): at most ~1 MB per call.
    assert growth_redis < 5 * 1_000_000 + 2_000_000
    assert growth_edge < 30_000_000
    for audio, report in zip(audios, reports, strict=True):
        assert report.problems() == []
        runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
        assert runs[-1][1] >= len(audio), "calls of the frozen worker moved to the other one"
