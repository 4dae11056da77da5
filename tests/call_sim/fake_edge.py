"""A small fake edge for the call simulator's socket tests: Starlette under uvicorn on a free
loopback port. It checks every signature the way the real edge does (auth token, or shared key
when the settings header says so), answers TwiML with the real edge's renderer, and echoes the
caller's non-silent frames back with a mark after every fifth. ``/app/...`` stands for the app's
own callbacks (call status, AMD, recordings): it keeps each request with its signature header,
for the test to check with twilio's RequestValidator."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.edge import twiml
from services.edge.signature import SETTINGS_HEADER, SigningKeys, Verdict, check_signature
from services.edge.twilio_protocol import (
    Mark,
    Media,
    Start,
    Stop,
    TwilioStream,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from services.edge.urls import RESUME_PATH, PublicUrls
from services.local_server import serving

SILENT_FRAME = b"\xff" * 160
MARK_EVERY = 5


@dataclass
class StreamLog:
    signature_ok: bool
    start: dict[str, Any] | None = None
    inbound: list[dict[str, Any]] = field(default_factory=list)  # raw JSON after start
    audio_in: bytearray = field(default_factory=bytearray)
    media_times: list[float] = field(default_factory=list)
    marks_sent: dict[str, float] = field(default_factory=dict)  # name → loop time
    marks_back: dict[str, float] = field(default_factory=dict)
    stopped: bool = False


@dataclass
class AppCallback:
    """One request to ``/app/...``: its form (or query) and X-Twilio-Signature."""

    path: str
    method: str
    params: dict[str, str]
    signature: str | None
    at: float  # loop time


@dataclass
class FakeEdge:
    public_url: str
    auth_token: str
    drop_first_stream_after: int | None = None  # media frames, then close 1011 (a failure)
    abrupt: bool = False  # ... or drop the TCP connection instead, without a close frame
    resume_delay_s: float = 0.0  # how long the resume webhook takes to answer
    shared_key: str | None = None
    misbehave: bool = False  # send what Twilio refuses, then echo as usual
    hangup_on_resume: bool = False
    echo_silence: bool = False
    stall: tuple[int, float] | None = None  # after this many frames, read nothing for so long
    webhooks: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    streams: list[StreamLog] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)  # every signature check, in order
    callbacks: list[AppCallback] = field(default_factory=list)  # requests to /app/...
    url: str = ""
    server: uvicorn.Server | None = None

    def _check(self, url: str, pairs: list[tuple[str, str]], headers: Any) -> bool:
        keys = SigningKeys(
            (self.auth_token,), () if self.shared_key is None else (self.shared_key,)
        )
        verdict = check_signature(
            keys, url, pairs, headers.get("x-twilio-signature"), headers.get(SETTINGS_HEADER)
        )
        self.verdicts.append(verdict)
        return verdict.ok

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/twilio/voice", self._voice, methods=["POST"]),
                Route("/twilio/voice/resume", self._voice, methods=["POST"]),
                Route("/twilio/stream-status", self._status, methods=["POST"]),
                Route("/app/{name:path}", self._app_callback, methods=["GET", "POST"]),
                WebSocketRoute("/twilio/media", self._media),
            ]
        )

    async def _signed(self, request: Request) -> tuple[dict[str, str], bool]:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        url = PublicUrls(self.public_url).http(request.url.path)
        ok = self._check(url, pairs, request.headers)
        self.webhooks.append((request.url.path, dict(pairs), ok))
        return dict(pairs), ok

    async def _voice(self, request: Request) -> Response:
        params, ok = await self._signed(request)
        if not ok:
            return Response("invalid Twilio signature", status_code=403)
        urls = PublicUrls(self.public_url)
        if request.url.path == RESUME_PATH:
            await asyncio.sleep(self.resume_delay_s)
            if self.hangup_on_resume:
                return Response(twiml.hangup(), media_type="text/xml")
        document = twiml.connect_stream(
            urls.media, "tok-" + params["CallSid"], urls.resume, urls.status
        )
        return Response(document, media_type="text/xml")

    async def _status(self, request: Request) -> Response:
        _, ok = await self._signed(request)
        return Response(status_code=204 if ok else 403)

    async def _app_callback(self, request: Request) -> Response:
        body = (await request.body()).decode()
        pairs = parse_qsl(body or request.url.query, keep_blank_values=True)
        loop = asyncio.get_running_loop()
        self.callbacks.append(
            AppCallback(
                request.url.path,
                request.method,
                dict(pairs),
                request.headers.get("x-twilio-signature"),
                loop.time(),
            )
        )
        return Response(status_code=204)

    async def _media(self, websocket: WebSocket) -> None:
        url = PublicUrls(self.public_url).media
        ok = self._check(url, [], websocket.headers)
        log = StreamLog(ok)
        self.streams.append(log)
        if not ok:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        loop = asyncio.get_running_loop()
        protocol = TwilioStream()
        echoed = 0
        sid = ""
        try:
            while True:
                text = await websocket.receive_text()
                event = protocol.accept(parse_message(text))
                if isinstance(event, Start):
                    sid = event.stream_sid
                    log.start = json.loads(text)
                    if self.misbehave:
                        await self._misbehave(websocket, sid)
                    continue
                if log.start is not None:
                    log.inbound.append(json.loads(text))
                if isinstance(event, Media):
                    log.audio_in += event.payload
                    log.media_times.append(loop.time())
                    if self.stall is not None and len(log.media_times) == self.stall[0]:
                        await asyncio.sleep(self.stall[1])  # a busy machine's stall
                    if (
                        self.drop_first_stream_after is not None
                        and len(self.streams) == 1
                        and len(log.media_times) == self.drop_first_stream_after
                    ):
                        if self.abrupt:
                            self._abort(websocket)
                        else:
                            await websocket.close(code=1011)
                        return
                    if self.echo_silence or event.payload != SILENT_FRAME:
                        await websocket.send_text(media_message(sid, event.payload))
                        echoed += 1
                        if echoed % MARK_EVERY == 0:
                            name = f"m{echoed}"
                            log.marks_sent[name] = loop.time()
                            await websocket.send_text(mark_message(sid, name))
                elif isinstance(event, Mark):
                    log.marks_back[event.name] = loop.time()
                elif isinstance(event, Stop):
                    log.stopped = True
                    await websocket.close(code=1000)
                    return
        except WebSocketDisconnect:
            return  # the caller hung up without a stop, or while we were sending

    def _abort(self, websocket: WebSocket) -> None:
        """Drop the socket's TCP connection, no close frame: what a killed edge does."""
        assert self.server is not None and websocket.client is not None
        peer = (websocket.client.host, websocket.client.port)
        for connection in self.server.server_state.connections:
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.get_extra_info("peername")[:2] == peer:
                transport.abort()

    async def _misbehave(self, websocket: WebSocket, sid: str) -> None:
        frame = b"\x10\x90" * 80
        payload = base64.b64encode(frame).decode()
        await websocket.send_text(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": sid,
                    "media": {"payload": payload, "track": "outbound"},
                }
            )
        )
        twice = base64.b64encode(payload.encode()).decode()
        await websocket.send_text(media_message(sid, base64.b64decode(twice)))
        await websocket.send_text(clear_message("MZ" + "0" * 32))
        await websocket.send_bytes(frame)


@asynccontextmanager
async def running(edge: FakeEdge) -> AsyncIterator[FakeEdge]:
    """Serve ``edge`` on 127.0.0.1 (a free port) for the duration of the block."""
    config = uvicorn.Config(
        edge.app(),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="websockets-sansio",
    )
    async with serving(config) as (server, url):
        edge.server, edge.url = server, url
        yield edge
