"""``/twilio/media``: the Media Streams WebSocket handshake, up to an attached call.

The upgrade must carry a valid X-Twilio-Signature (else it is refused before it is accepted:
HTTP 403); the first ``start`` must arrive within IDLE_TIMEOUT (``connected`` and unknown
events may come before it); then ``EdgeCall.attach`` checks the call. Every refusal closes the
socket with 1008 and counts ``switchboard_edge_rejected_requests_total{route="media"}`` by
reason.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket

from services.edge.media_stream import CLOSE_POLICY, EdgeCall, Refused
from services.edge.runtime import EdgeRuntime, runtime_of
from services.edge.signature import SETTINGS_HEADER, check_signature
from services.edge.twilio_protocol import Start, TwilioStream, parse_message
from services.edge.urls import PublicUrls
from shared.errors import TwilioProtocolError

__all__ = ["media_endpoint"]

logger = logging.getLogger("switchboard.edge.media")


async def media_endpoint(websocket: WebSocket) -> None:
    """ASGI handler of ``/twilio/media``."""
    runtime = runtime_of(websocket)
    settings = runtime.settings
    if settings.validate_signature:
        verdict = check_signature(
            runtime.signing_keys,
            PublicUrls(settings.public_url).media,
            [],
            websocket.headers.get("x-twilio-signature"),
            websocket.headers.get(SETTINGS_HEADER),
        )
        if not verdict.ok:
            runtime.metrics.rejected.labels("media", verdict.reason).inc()
            logger.warning("refused a media stream upgrade: %s", verdict.detail)
            await websocket.close(code=CLOSE_POLICY)  # before accept: HTTP 403
            return
    await websocket.accept()
    stream = TwilioStream()
    try:
        start = await asyncio.wait_for(
            _receive_start(runtime, websocket, stream), settings.idle_timeout_s
        )
        if start is None:
            return
        call = await EdgeCall.attach(runtime, websocket, stream, start)
    except TimeoutError:
        runtime.metrics.rejected.labels("media", "no_start").inc()
        logger.warning(
            "closed a media stream: no start message within %.0fs", settings.idle_timeout_s
        )
        await websocket.close(code=CLOSE_POLICY, reason="no start message")
        return
    except Refused as refused:
        runtime.metrics.rejected.labels("media", refused.reason).inc()
        logger.warning("refused a media stream: %s", refused)
        await websocket.close(code=CLOSE_POLICY, reason=refused.reason)
        return
    await call.run()


async def _receive_start(
    runtime: EdgeRuntime, websocket: WebSocket, stream: TwilioStream
) -> Start | None:
    """Read until ``start``; None if the socket closed first. Other frames are counted faults,
    except ``connected`` and unknown events, which are legal before ``start``."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        try:
            if text is None:
                raise TwilioProtocolError("binary frame where JSON text was expected", "binary")
            event = stream.accept(parse_message(text))
        except TwilioProtocolError as exc:
            runtime.metrics.malformed.labels(exc.kind).inc()
            logger.warning("dropped a message before start (%s): %s", exc.kind, exc)
            continue
        if isinstance(event, Start):
            return event
