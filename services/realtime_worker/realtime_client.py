"""Opening a Realtime WebSocket, with every websockets knob set on purpose."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect

from services.realtime_worker.settings import WorkerSettings
from shared.backoff import Backoff
from shared.errors import is_retryable

__all__ = ["MAX_SERVER_MESSAGE_BYTES", "open_realtime", "realtime_url"]

logger = logging.getLogger("switchboard.worker.realtime")

MAX_SERVER_MESSAGE_BYTES = 4 * 1024 * 1024  # a 4 MiB delta is over 6 minutes of μ-law
SETUP_ATTEMPTS = 3


def realtime_url(settings: WorkerSettings) -> str:
    """The endpoint with the model as its query parameter (the only one the GA API reads)."""
    separator = "&" if urlsplit(settings.realtime_url).query else "?"
    return f"{settings.realtime_url}{separator}model={quote(settings.realtime_model)}"


async def open_realtime(settings: WorkerSettings) -> ClientConnection:
    """Connect, retrying transient failures a few times: this runs while Twilio is still
    connecting the stream, so a retry costs the caller nothing yet."""
    headers = {}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key}"
    backoff = Backoff(initial=0.2, maximum=2.0)
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        try:
            return await connect(
                realtime_url(settings),
                additional_headers=headers,
                user_agent_header="switchboard",
                open_timeout=settings.realtime_connect_timeout_s,
                # Base64 audio does not compress: deflate would only cost CPU.
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                max_size=MAX_SERVER_MESSAGE_BYTES,
                max_queue=64,
            )
        except Exception as exc:
            if attempt == SETUP_ATTEMPTS or not is_retryable(exc):
                raise
            delay = backoff.next_delay()
            logger.info(
                "realtime connect attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
