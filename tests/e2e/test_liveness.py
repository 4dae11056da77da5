"""Liveness that sees the event loop: with a process's loop stuck (the test-only hook runs a
blocking call inside it), ``/livez`` times out within the probe's timeout, although the kernel
still accepts connections and, on a worker, a thread-served ``/metrics`` (as workers had before
``/livez``) still answers. A stuck worker's calls move to another worker meanwhile."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
import urllib.request

import pytest

from services.call_sim import place_call
from tests.support.calls import segments_of
from tests.support.liveness import PROBE_TIMEOUT_S, livez
from tests.support.stack import StackFactory, call_config, call_holder, wait_for_audio_out
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

HOOKS = {"SWITCHBOARD_TEST_HOOKS": "true"}
BLOCK_S = 6.0  # longer than the probe's timeout, with room for a slow machine


def block_loop(port: int, seconds: float = BLOCK_S) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/test/block-loop?seconds={seconds}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        status: int = reply.status
        return status


def probe(url: str) -> str:
    """What a kubelet's HTTP probe saw: the status, or that nothing answered in time."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as reply:
            return str(reply.status)
    except OSError as exc:
        return f"no answer after {time.monotonic() - started:.1f} s ({exc})"


def tcp_connects(port: int) -> bool:
    """What a TCP probe sees: the kernel completes the handshake whatever the loop does."""
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S):
        return True


async def test_a_worker_with_its_loop_stuck_fails_livez_and_loses_its_call(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=2, sim_mode="echo", worker_env=HOOKS)
    audio = random.Random(21).randbytes(14 * 8000)
    task = asyncio.create_task(place_call(call_config(stack, audio, hold_s=1.0)))
    stuck = await call_holder(stack)
    await wait_for_audio_out(stack, 2 * 8000)
    found = re.search(r"thread-served /metrics on :(\d+)", stuck.log())
    assert found, "the test hooks start a thread-served /metrics"
    thread_metrics = f"http://127.0.0.1:{found[1]}/metrics"

    assert await asyncio.to_thread(block_loop, stuck.port) == 202
    await asyncio.sleep(0.2)
    seen = await asyncio.gather(
        asyncio.to_thread(probe, f"http://127.0.0.1:{stuck.port}/livez"),
        asyncio.to_thread(probe, f"http://127.0.0.1:{stuck.port}/metrics"),
        asyncio.to_thread(probe, thread_metrics),
        asyncio.to_thread(tcp_connects, stuck.port),
    )
    print(f"worker loop stuck: /livez {seen[0]}; /metrics {seen[1]}; thread /metrics {seen[2]}")
    assert seen[0].startswith("no answer"), seen  # the liveness probe fails...
    assert seen[1].startswith("no answer"), seen
    assert seen[2] == "200", seen  # ...where a thread-served endpoint would not
    assert seen[3], "the kernel still accepts connections: a TCP probe would pass"

    report = await task
    assert report.problems() == []
    # The new worker starts from the stuck one's last saved read position (saved each
    # heartbeat; later on a loaded machine): up to 2 s of the caller may echo twice.
    runs = segments_of(report.received_audio, report.sent_audio, replay=16000)
    assert runs[-1][1] >= len(audio), "the call moved to the other worker and went on"
    (other,) = [w for w in stack.workers if w is not stuck]
    assert f"call={report.call_sid} took over the call" in other.log()
    # Its loop turning again, the stuck worker answers, and has let the call go in silence.
    await eventually(lambda: asyncio.to_thread(livez, stuck.port), 15, "/livez again")
    left = rf"call={report.call_sid} .*another worker holds the call now"
    assert re.search(left, stuck.log()), "the stuck worker let the call go"


async def test_an_edge_with_its_loop_stuck_answers_no_probe(make_stack: StackFactory) -> None:
    stack = make_stack(workers=1, sim_mode="echo", edge_env=HOOKS)
    admin = stack.edges[0].admin_port
    assert admin is not None
    assert await asyncio.to_thread(livez, admin) == 200

    assert await asyncio.to_thread(block_loop, admin) == 202
    await asyncio.sleep(0.2)
    started = time.monotonic()
    seen = await asyncio.gather(
        *(asyncio.to_thread(probe, f"http://127.0.0.1:{admin}{path}") for path in PATHS),
        asyncio.to_thread(tcp_connects, admin),
    )
    waited_s = time.monotonic() - started
    print(f"edge loop stuck, after {waited_s:.1f} s: " + "; ".join(map(str, seen)))
    # Every route is the loop's: none answers for it, the probe times out within its timeout.
    assert all(str(answer).startswith("no answer") for answer in seen[:-1]), seen
    assert waited_s < PROBE_TIMEOUT_S + 1.5
    assert seen[-1], "the kernel still accepts connections: a TCP probe would pass"
    await eventually(lambda: asyncio.to_thread(livez, admin), 15, "/livez again")


PATHS = ("/livez", "/healthz", "/readyz", "/metrics")
