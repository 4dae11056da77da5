"""An ASGI app served by uvicorn inside the running event loop, for the simulators, the bench
and tests: started, its bound address found, and stopped on the way out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

__all__ = ["serving"]


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, str]]:
    """Serve ``config`` (``port=0``: one the kernel picks) for the block; the server and its
    ``http://host:port`` URL. A server that fails to start raises here."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # its exception, if it raised one
                raise RuntimeError(f"the server on {config.host}:{config.port} did not start")
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield server, f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(SystemExit):  # uvicorn exits so when it cannot bind
            await task
