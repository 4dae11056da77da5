"""The worker's loop-served /livez and /metrics (probe_server.py), and why they are loop-served:
with the event loop stuck, /livez stops answering while a thread-served /metrics still does."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from services.realtime_worker.probe_server import ProbeServer

pytestmark = pytest.mark.anyio


async def request(port: int, method: str, target: str) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request from this loop: the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("switchboard_test_things", "Things.", registry=registry).inc(3)
    return registry


@pytest.fixture
async def port(registry: CollectorRegistry) -> AsyncIterator[int]:
    server = ProbeServer(registry)
    yield await server.start("127.0.0.1", 0)
    await server.aclose()


async def test_livez_and_metrics_are_answered(port: int) -> None:
    assert await request(port, "GET", "/livez") == (200, b"ok\n")
    assert await request(port, "HEAD", "/livez") == (200, b"")
    status, body = await request(port, "GET", "/metrics")
    assert status == 200 and b"switchboard_test_things_total 3.0" in body


async def test_anything_else_is_refused(port: int) -> None:
    assert (await request(port, "GET", "/"))[0] == 404
    assert (await request(port, "POST", "/livez"))[0] == 405
    assert (await request(port, "POST", "/test/block-loop?seconds=1"))[0] == 404  # hooks off
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"nonsense\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
    writer.close()


async def test_the_test_hook_checks_its_argument(registry: CollectorRegistry) -> None:
    server = ProbeServer(registry, test_hooks=True)
    port = await server.start("127.0.0.1", 0)
    try:
        for bad in ("", "?seconds=0", "?seconds=nan", "?seconds=61", "?seconds=x"):
            assert (await request(port, "POST", f"/test/block-loop{bad}"))[0] == 400, bad
        assert (await request(port, "GET", "/test/block-loop?seconds=1"))[0] == 405
    finally:
        await server.aclose()


def _probe(url: str, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return str(response.status)
    except (TimeoutError, urllib.error.URLError) as exc:
        return f"no answer: {exc}"


async def test_a_stuck_loop_answers_no_probe_while_a_thread_still_would(
    registry: CollectorRegistry,
) -> None:
    server = ProbeServer(registry, test_hooks=True)
    port = await server.start("127.0.0.1", 0)
    thread_served, _ = start_http_server(0, addr="127.0.0.1", registry=registry)  # as before
    seen: dict[str, str] = {}

    def probe_while_stuck() -> None:
        time.sleep(0.3)  # the loop is blocked by now
        seen["livez"] = _probe(f"http://127.0.0.1:{port}/livez", 0.5)
        seen["thread /metrics"] = _probe(f"http://127.0.0.1:{thread_served.server_port}/", 0.5)

    prober = threading.Thread(target=probe_while_stuck)
    try:
        prober.start()
        started = time.monotonic()
        assert (await request(port, "POST", "/test/block-loop?seconds=1.5"))[0] == 202
        await asyncio.sleep(0)  # the handler blocks the loop: this returns after the block
        await asyncio.to_thread(prober.join)
        assert time.monotonic() - started >= 1.4
        assert seen["livez"].startswith("no answer"), seen
        assert seen["thread /metrics"] == "200", seen
        assert await request(port, "GET", "/livez") == (200, b"ok\n")  # the loop turns again
    finally:
        thread_served.shutdown()
        thread_served.server_close()
        await server.aclose()
