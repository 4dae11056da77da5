"""The lean relay (config ``baseline``): the least a one-process Twilio ⇄ Realtime bridge does.

One process, no Redis: the webhook answers ``<Connect><Stream>``; each Media Streams socket gets
its own Realtime WebSocket, opened as soon as the stream connects. Audio is passed through as
base64 text, never decoded; each delta is followed by a mark, as OpenAI's own Twilio sample
does, and the caller's speech (``speech_started``) clears the caller's queue, with no
truncation. It runs on the same server stack as the edge (Starlette, uvicorn, httptools, uvloop,
websockets-sansio) so that the comparison measures the split, not the web framework.

``python -m services.bench.baseline --port P --realtime-url ws://…`` serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from urllib.parse import parse_qsl

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL
from services.edge.signature import is_valid_signature
from services.local_server import serving

__all__ = ["create_app", "main", "serve_baseline"]

logger = logging.getLogger("switchboard.bench.baseline")

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
_SESSION_UPDATE = orjson.dumps(
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
            },
        },
    }
).decode()


def create_app(realtime_url: str, auth_token: str, public_url: str) -> Starlette:
    """The relay's ASGI app; signatures are checked as the edge checks them."""
    public = public_url.rstrip("/")
    voice_url = public + VOICE_PATH
    media_url = "wss://" + public.split("://", 1)[1] + MEDIA_PATH
    tokens = [auth_token]

    async def voice(request: Request) -> Response:
        params = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        if not is_valid_signature(
            tokens, voice_url, params, request.headers.get("x-twilio-signature")
        ):
            return Response("invalid Twilio signature", status_code=403)
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{media_url}"/></Connect></Response>'
        )
        return Response(twiml, media_type="text/xml")

    async def media(websocket: WebSocket) -> None:
        signature = websocket.headers.get("x-twilio-signature")
        if not is_valid_signature(tokens, media_url, [], signature):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        # Open the model session while Twilio sends connected/start: it is ready sooner.
        realtime = asyncio.ensure_future(
            connect(
                realtime_url,
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                max_size=1 << 24,
                max_queue=64,
            )
        )
        try:
            await _relay(websocket, realtime)
        finally:
            if realtime.done() and not realtime.cancelled() and realtime.exception() is None:
                await realtime.result().close()
            else:
                realtime.cancel()

    return Starlette(
        routes=[Route(VOICE_PATH, voice, methods=["POST"]), WebSocketRoute(MEDIA_PATH, media)]
    )


async def _relay(websocket: WebSocket, realtime: asyncio.Future[ClientConnection]) -> None:
    receive = websocket.receive
    stream_sid = ""
    while not stream_sid:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        event = orjson.loads(message["text"])
        if event.get("event") == "start":
            stream_sid = event["start"]["streamSid"]
    rt = await realtime
    await rt.send(_SESSION_UPDATE)
    to_twilio = asyncio.create_task(_model_to_caller(websocket, rt, stream_sid))
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            event = orjson.loads(message["text"])
            kind = event.get("event")
            if kind == "media":
                # The payload is already base64: pass it through without decoding.
                await rt.send(
                    '{"type":"input_audio_buffer.append","audio":"'
                    + event["media"]["payload"]
                    + '"}'
                )
            elif kind == "stop":
                return
    except (WebSocketDisconnect, ConnectionClosed):
        return
    finally:
        to_twilio.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await to_twilio


async def _model_to_caller(websocket: WebSocket, rt: ClientConnection, stream_sid: str) -> None:
    media_head = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
    mark = orjson.dumps(
        {"event": "mark", "streamSid": stream_sid, "mark": {"name": "part"}}
    ).decode()
    # Barge-in at its leanest: the caller's speech clears whatever is queued (no truncate).
    clear = orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()
    send = websocket.send_text
    async for frame in rt:
        event = orjson.loads(frame)
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            await send(media_head + event["delta"] + '"}}')
            await send(mark)
        elif kind == "input_audio_buffer.speech_started":
            await send(clear)


def _config(app: Starlette, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
    )


@contextlib.asynccontextmanager
async def serve_baseline(
    realtime_url: str, auth_token: str = DEMO_AUTH_TOKEN, public_url: str = PUBLIC_URL
) -> AsyncIterator[str]:
    """Serve the relay inside the running event loop (tests); yields its http:// URL."""
    async with serving(_config(create_app(realtime_url, auth_token, public_url), 0)) as (_, url):
        yield url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.bench.baseline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--realtime-url", required=True, help="ws:// URL of the simulator")
    parser.add_argument("--auth-token", default=DEMO_AUTH_TOKEN)
    parser.add_argument("--public-url", default=PUBLIC_URL)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = create_app(args.realtime_url, args.auth_token, args.public_url)
    uvicorn.Server(_config(app, args.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
