"""The edge's liveness route, ``/livez`` on ADMIN_PORT, and the test-only loop blocker.

Every route of the edge is answered by its event loop (uvicorn runs the app in the loop; no
route is served from a thread), so ``/livez`` answers only while the loop turns: a loop stuck in
a blocking call answers nothing and the liveness probe times out. It answers 503 when one of the
edge's background loops stopped (the lease watch, the Redis writer…): a restart is the cure for
both. ``/healthz`` answers the same, for probes written before ``/livez``.

With SWITCHBOARD_TEST_HOOKS, ``POST /test/block-loop?seconds=N`` answers 202, then blocks the
loop (``shared.testing_hooks``).
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.edge.runtime import runtime_of
from services.edge.settings import EdgeSettings
from shared.probes import LIVEZ_PATH
from shared.testing_hooks import BLOCK_LOOP_PATH, block_loop, block_seconds

__all__ = ["HEALTHZ_PATH", "livez", "probe_routes"]

HEALTHZ_PATH = "/healthz"  # the same answer, for probes written before /livez


async def livez(request: Request) -> Response:
    runtime = runtime_of(request)
    if runtime.broken:
        return JSONResponse({"status": "broken", "reason": runtime.broken}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _block_loop(request: Request) -> Response:
    try:
        seconds = block_seconds(request.query_params.get("seconds"))
    except ValueError as exc:
        return PlainTextResponse(f"{exc}\n", status_code=400)
    return PlainTextResponse(
        f"blocking the event loop for {seconds:g} s\n",
        status_code=202,
        background=BackgroundTask(_blocking, seconds),  # after the answer is sent
    )


async def _blocking(seconds: float) -> None:
    # A coroutine, so that Starlette runs it in the event loop (a plain function would go to
    # a worker thread and block nothing).
    block_loop(seconds)


def probe_routes(settings: EdgeSettings) -> list[Route]:
    """``/livez`` and ``/healthz``, and the test hook when SWITCHBOARD_TEST_HOOKS is on."""
    routes = [Route(LIVEZ_PATH, livez), Route(HEALTHZ_PATH, livez)]
    if settings.test_hooks:
        routes.append(Route(BLOCK_LOOP_PATH, _block_loop, methods=["POST"]))
    return routes
