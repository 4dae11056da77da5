"""A worker SIGKILLed mid-call with the default settings: how long its caller hears nothing.

The edge sees the worker's alive key lapse (WORKER_ALIVE_TTL_MS, 1 s) at its next worker check
(WORKER_CHECK_INTERVAL_MS, 0.25 s), revokes the call's lease and dispatches the call again;
another worker takes it over at once. Target: at most 1.5 s without audio reaching the caller.
The bound asserted here is looser, so that a busy 2-core machine (this test runs beside the
rest of the suite) does not fail the test; the distribution is printed (docs/failures.md
records it, measured alone).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import statistics
import time

import pytest

from services.call_sim import place_call
from services.devstack import ManagedProcess
from tests.support.calls import lost_audio_ms, segments_of
from tests.support.stack import (
    StackFactory,
    active_calls,
    call_config,
    call_holder,
    metric_value,
    scrape_async,
    wait_for_audio_out,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

#: Runs in the suite; SWITCHBOARD_GAP_RUNS=10 (say) for a fuller distribution.
RUNS = int(os.environ.get("SWITCHBOARD_GAP_RUNS", "2"))
TARGET_MS = 1500
BOUND_MS = 2500  # loose: the target plus room for a loaded machine


async def edge_audio_out(url: str) -> float:
    return metric_value(await scrape_async(url), "switchboard_edge_audio_out_bytes_total")


def logged_at(log: str, needle: str) -> float:
    """When the last line of ``log`` containing ``needle`` was written (epoch seconds)."""
    line = next(line for line in reversed(log.splitlines()) if needle in line)
    return dt.datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


async def all_idle(workers: list[ManagedProcess]) -> bool:
    return all([await active_calls(worker) == 0 for worker in workers])


async def test_worker_sigkill_caller_gap_with_default_settings(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, sim_mode="echo")  # every timing setting at its default
    silences: list[float] = []
    lines = []
    for run in range(RUNS):
        audio = random.Random(300 + run).randbytes(7 * 8000)
        before = await edge_audio_out(stack.edge_admin_urls[0])
        task = asyncio.create_task(place_call(call_config(stack, audio, hold_s=1.0)))
        victim = await call_holder(stack)
        await wait_for_audio_out(stack, int(before) + 2 * 8000)  # 2 s of echo heard
        killed_at = time.time()
        victim.signal(signal.SIGKILL)
        assert victim.popen.wait(timeout=5) == -signal.SIGKILL
        stack.workers.remove(victim)
        report = await task

        assert report.problems() == [], report.problems()
        runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
        assert runs[-1][1] >= len(audio), "the caller's audio after the takeover must echo"
        silence = report.longest_media_gap_ms()
        silences.append(silence)
        # The edge moved the call because the alive key lapsed, not the lease.
        victim_id = f"{victim.name}-{victim.port}"  # its WORKER_ID (services/devstack.py)
        moved = f"call={report.call_sid} worker {victim_id} stopped renewing its alive key"
        detected_s = logged_at(stack.edges[0].log(), moved) - killed_at
        took_over = f"call={report.call_sid} took over the call"
        (survivor,) = [w for w in stack.workers if took_over in w.log()]
        serving_s = logged_at(survivor.log(), took_over) - killed_at
        lines.append(
            f"run {run + 1}: longest silence {silence:.0f} ms, caller audio lost "
            f"{lost_audio_ms(report):.0f} ms; after the kill: redispatched at "
            f"{detected_s:.2f} s, new session serving at {serving_s:.2f} s"
        )
        # A worker to replace the dead one, started outside the measured window.
        await asyncio.to_thread(stack.add_worker)
        await eventually(lambda: all_idle(stack.workers), 10, "the workers idle again")

    print(
        f"worker SIGKILL, default settings, {RUNS} runs: longest caller silence per run "
        f"{[round(s) for s in silences]} ms; median {statistics.median(silences):.0f} ms, "
        f"max {max(silences):.0f} ms (target {TARGET_MS} ms)\n  " + "\n  ".join(lines)
    )
    assert max(silences) <= BOUND_MS
