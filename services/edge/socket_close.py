"""Closing a Twilio media socket so that Twilio reads the close frame.

A socket closed while the peer's messages are still arriving, unread, is reset rather than
closed, and the reset can destroy the close frame before Twilio reads it: Twilio then reports
31903 (the stream broke) and may end the call instead of running the TwiML's next verb (the
<Redirect> that moves a call to another edge). So the edge sends its close frame, then reads
on, discarding, until Twilio answers it or a short time passes.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

__all__ = ["CLOSE_REPLY_TIMEOUT_S", "close_cleanly"]

CLOSE_REPLY_TIMEOUT_S = 2.0  # how long a closed socket waits for Twilio's close frame


async def close_cleanly(websocket: WebSocket, code: int = 1000) -> None:
    """Send a close frame (unless the socket is closed already) and wait, for at most
    CLOSE_REPLY_TIMEOUT_S, for the peer's."""
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    try:
        await websocket.close(code=code)
    except (RuntimeError, OSError, WebSocketDisconnect):
        return  # the peer's side closed first: nothing to close
    if websocket.client_state is not WebSocketState.CONNECTED:
        return
    try:
        async with asyncio.timeout(CLOSE_REPLY_TIMEOUT_S):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # what the peer sent before it read the close: nobody relays it now
    except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
        pass  # no reply in time, or the socket is gone already: either way, done
