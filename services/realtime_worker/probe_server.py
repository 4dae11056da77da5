"""The worker's private HTTP port (METRICS_PORT), answered by its event loop: ``/livez`` and
``/metrics``.

A route the event loop answers is answered only while the loop turns. A loop stuck in a
blocking call or a runaway computation answers nothing here, so the liveness probe times out
and the orchestrator restarts the worker (whose calls have moved already: its alive key
lapsed). prometheus_client's own server, which served /metrics before, answers from a thread
and so kept answering for a stuck worker. The scrape is rendered in the loop too, as on the
edge; it is small (no per-call series but one per live call).

A minimal HTTP/1.1 server: one request per connection, no request body read, the connection
closed after the answer. With SWITCHBOARD_TEST_HOOKS it also answers the test-only
``POST /test/block-loop`` (``shared.testing_hooks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.probes import LIVEZ_PATH
from shared.testing_hooks import BLOCK_LOOP_PATH, block_loop, block_seconds

__all__ = ["METRICS_PATH", "ProbeServer"]

logger = logging.getLogger("switchboard.worker")

METRICS_PATH = "/metrics"
READ_TIMEOUT_S = 5.0  # a client that sends no request in this time is dropped
MAX_HEAD_BYTES = 8192
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = _TEXT
    block_s: float = 0.0  # then block the loop this long (the test hook)


class ProbeServer:
    """Serve ``/livez`` and ``/metrics`` of ``registry`` from the running event loop."""

    def __init__(self, registry: CollectorRegistry, *, test_hooks: bool = False) -> None:
        self._registry = registry
        self._test_hooks = test_hooks
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: any free port); the port. Raises OSError."""
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer: _Answer | None = None
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            answer = self._answer(head)
            writer.write(_response(answer, head.startswith(b"HEAD ")))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or never asked: nothing to answer
        finally:
            writer.close()
        if answer is not None and answer.block_s:
            with contextlib.suppress(OSError):
                await writer.wait_closed()  # the answer is out before the loop stops
            logger.warning("test hook: blocking the event loop for %.1f s", answer.block_s)
            block_loop(answer.block_s)

    def _answer(self, head: bytes) -> _Answer:
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return _Answer(400, b"bad request\n")
        parts = urlsplit(target)
        if parts.path == LIVEZ_PATH or parts.path == METRICS_PATH:
            if method not in ("GET", "HEAD"):
                return _Answer(405, b"GET only\n")
            if parts.path == LIVEZ_PATH:
                return _Answer(200, b"ok\n")  # answered at all: the loop turns
            return _Answer(200, generate_latest(self._registry), CONTENT_TYPE_LATEST)
        if self._test_hooks and parts.path == BLOCK_LOOP_PATH:
            if method != "POST":
                return _Answer(405, b"POST only\n")
            try:
                seconds = block_seconds(parse_qs(parts.query).get("seconds", [""])[0])
            except ValueError as exc:
                return _Answer(400, f"{exc}\n".encode())
            return _Answer(
                202, f"blocking the event loop for {seconds:g} s\n".encode(), _TEXT, seconds
            )
        return _Answer(404, b"not found\n")


def _response(answer: _Answer, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Connection: close",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii") + (b"" if head_only else answer.body)
