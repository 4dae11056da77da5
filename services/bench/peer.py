"""The peer: a one-process bridge in the style of Twilio's official Python sample
(twilio-samples/speech-assistant-openai-realtime-api-python, ``main.py``), the usual starting
point for someone who would otherwise run Switchboard. Written here from what the sample does,
not copied from it:

- the webhook (``/incoming-call``) answers ``<Connect><Stream url="wss://HOST/media-stream">``;
  no Twilio signature is checked;
- each media socket opens its own Realtime socket with the websockets library's defaults and
  sends one ``session.update``: μ-law both ways, server VAD;
- Twilio → model: every message parsed with the standard ``json``; a ``media`` payload goes out
  in an ``input_audio_buffer.append`` as it came (base64 untouched), and its timestamp is kept;
- model → Twilio: every event parsed with ``json``; each ``response.output_audio.delta``
  becomes a ``media`` message (its base64 decoded and encoded again, as the sample does) and is
  followed by one mark; each echoed mark pops one from a queue;
- ``input_audio_buffer.speech_started`` while marks are pending: ``conversation.item.truncate``
  at the Twilio media clock's time since the reply's first delta, then ``clear``.

The sample runs on FastAPI; FastAPI is not a dependency here, and it runs on Starlette: the
WebSocket objects and per-message code path below are the ones the sample's app uses.
``uvicorn.run`` with its defaults serves it, as the sample does (here uvloop, httptools and
websockets-sansio). One deliberate difference: the model socket is closed when Twilio's side
ends (Starlette's ``iter_text`` swallows the disconnect the sample waits for).

``python -m services.bench.peer --port P --realtime-url ws://…`` serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from services.local_server import serving

__all__ = ["MEDIA_PATH", "VOICE_PATH", "PeerCall", "create_app", "main", "serve_peer"]

logger = logging.getLogger("switchboard.bench.peer")

VOICE_PATH = "/incoming-call"
MEDIA_PATH = "/media-stream"
MARK_NAME = "responsePart"
LOGGED = frozenset(
    {
        "error",
        "response.done",
        "input_audio_buffer.committed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "session.created",
        "session.updated",
    }
)


def session_update() -> dict[str, Any]:
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "instructions": "You are a helpful voice assistant on a phone line.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad"},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
            },
        },
    }


class TwilioSide(Protocol):
    """What the bridge uses of Starlette's WebSocket (tests pass a fake)."""

    def iter_text(self) -> AsyncIterator[str]: ...

    async def send_json(self, data: Any, mode: str = "text") -> None: ...


class ModelSide(Protocol):
    """What the bridge uses of websockets' client connection (tests pass a fake)."""

    @property
    def state(self) -> State: ...

    async def send(self, message: str) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class PeerCall:
    """One call's two loops and the little state the sample keeps."""

    def __init__(self, twilio: TwilioSide, model: ModelSide) -> None:
        self.twilio = twilio
        self.model = model
        self.stream_sid: str | None = None
        self.media_ms = 0  # the timestamp of the latest media from Twilio
        self.reply_item: str | None = None  # the assistant item being played
        self.reply_began_ms: int | None = None  # media_ms when its first delta went out
        self.marks: list[str] = []  # sent, not yet echoed

    async def run(self) -> None:
        await self.model.send(json.dumps(session_update()))
        await asyncio.gather(self.from_twilio(), self.from_model())

    async def from_twilio(self) -> None:
        try:
            async for text in self.twilio.iter_text():
                message = json.loads(text)
                event = message["event"]
                if event == "media" and self.model.state is State.OPEN:
                    self.media_ms = int(message["media"]["timestamp"])
                    audio = message["media"]["payload"]  # base64, passed on as it came
                    append = {"type": "input_audio_buffer.append", "audio": audio}
                    await self.model.send(json.dumps(append))
                elif event == "start":
                    self.stream_sid = message["start"]["streamSid"]
                    self.media_ms, self.reply_item, self.reply_began_ms = 0, None, None
                elif event == "mark" and self.marks:
                    self.marks.pop(0)
        finally:
            if self.model.state is State.OPEN:
                await self.model.close()

    async def from_model(self) -> None:
        try:
            async for text in self.model:
                event = json.loads(text)
                kind = event.get("type")
                if kind in LOGGED:
                    logger.info("model event %s", kind)
                if kind == "response.output_audio.delta" and "delta" in event:
                    await self._play(event)
                elif kind == "input_audio_buffer.speech_started" and self.reply_item:
                    await self._interrupt()
        except ConnectionClosed:
            pass
        except Exception as exc:  # as the sample: the call goes quiet, the error is printed
            logger.warning("model → Twilio stopped: %r", exc)

    async def _play(self, event: dict[str, Any]) -> None:
        payload = base64.b64encode(base64.b64decode(event["delta"])).decode("utf-8")
        media = {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        await self.twilio.send_json(media)
        item = event.get("item_id")
        if item and item != self.reply_item:
            self.reply_item, self.reply_began_ms = item, self.media_ms
        if self.stream_sid:
            mark = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": MARK_NAME}}
            await self.twilio.send_json(mark)
            self.marks.append(MARK_NAME)

    async def _interrupt(self) -> None:
        """The caller talks over the reply: cut it where (by the media clock) it has played."""
        if not self.marks or self.reply_began_ms is None:
            return
        if self.reply_item:
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": self.reply_item,
                "content_index": 0,
                "audio_end_ms": self.media_ms - self.reply_began_ms,
            }
            await self.model.send(json.dumps(truncate))
        await self.twilio.send_json({"event": "clear", "streamSid": self.stream_sid})
        self.marks.clear()
        self.reply_item, self.reply_began_ms = None, None


def create_app(realtime_url: str) -> Starlette:
    async def incoming_call(request: Request) -> Response:
        host = request.url.hostname
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="wss://{host}{MEDIA_PATH}"/></Connect></Response>'
        )
        return Response(twiml, media_type="application/xml")

    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        url = realtime_url + "?model=gpt-realtime"
        async with connect(url, additional_headers={"Authorization": "Bearer sk-bench"}) as model:
            await PeerCall(websocket, model).run()

    return Starlette(
        routes=[
            Route(VOICE_PATH, incoming_call, methods=["GET", "POST"]),
            WebSocketRoute(MEDIA_PATH, media_stream),
        ]
    )


@contextlib.asynccontextmanager
async def serve_peer(realtime_url: str) -> AsyncIterator[str]:
    """Serve the peer inside the running event loop (tests), on a port the kernel picks;
    yields its http:// URL."""
    config = uvicorn.Config(create_app(realtime_url), host="127.0.0.1", port=0, log_config=None)
    async with serving(config) as (_, url):
        yield url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.bench.peer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--realtime-url", required=True, help="ws:// URL of the simulator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(args.realtime_url), host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
