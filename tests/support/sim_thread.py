"""A realtime simulator served from a thread of the test process, for the end-to-end stacks.

The simulator stands in for OpenAI, the true external border: the edges and workers under test
stay real processes. Serving it here rather than as a process of its own spares every stack the
simulator's start-up (importing the ``openai`` package's event types takes a CPU-second, and
the suite starts about a hundred stacks), which the pytest process pays once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.server import run_simulator

__all__ = ["simulator_thread"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@contextmanager
def simulator_thread(arguments: list[str]) -> Iterator[str]:
    """Serve a simulator configured by its command line ``arguments`` (``--port 0``: the
    kernel picks) for the block; its URL. Its open sessions are closed and recorded on the way
    out, as the process does on SIGTERM; an error of the simulator fails the block."""
    config = config_from_args(build_parser().parse_args(arguments))
    ready = threading.Event()
    url: list[str] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with run_simulator(config) as simulator:
            url.append(simulator.url)
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test, not lost in the thread
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="realtime-sim", daemon=True)
    thread.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or not url:
            raise RuntimeError(f"the realtime simulator did not start: {failure or 'timeout'}")
        yield url[0]
    finally:
        if thread.is_alive() and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_S)
    if thread.is_alive():
        raise RuntimeError("the realtime simulator did not stop")
    if failure:
        raise RuntimeError("the realtime simulator failed") from failure[0]
