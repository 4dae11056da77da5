"""The simulator's WebSocket server: handshake checks, and four tasks per connection.

Per connection a reader feeds client frames to the ``SimSession``, a reply loop paces the
canned reply (and a cancel's delayed ``response.done``), a timer enforces the session cap, and
a writer drains a bounded outbox to the socket. Every producer generates and enqueues a batch
under one lock, so events reach the wire in the order the session produced them (a cancel can
never overtake the delta before it). A close the session asks for (a drop, the cap, an unknown
model) is queued behind its events, so what was produced before it is sent first. The record
is built from what the writer actually sent, and written when the connection ends however it
ends.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .behaviour import BehaviourConfig, Event, SimSession
from .failures import Close
from .probe import Probe, append_probe
from .record import SessionRecord, append_record

__all__ = ["PATH", "RunningSimulator", "SimulatorConfig", "run_simulator"]

logger = logging.getLogger(__name__)

PATH: Final = "/v1/realtime"
DEFAULT_MODEL: Final = "gpt-realtime"
BETA_CLOSE_CODE: Final = 4000
OUTBOX_BATCHES: Final = 64  # about 1.3 s of echo at 50 appends/s before the reader waits
MAX_CLIENT_MESSAGE: Final = 16 * 1024 * 1024  # appends may carry up to 15 MiB

Outbox = asyncio.Queue[list[Event] | Close]  # batches of events, and a close to make after them


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port; RunningSimulator.port tells which
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    api_key: str | None = None  # when set, require "Authorization: Bearer <api_key>"
    record_path: Path | None = None  # JSON lines, one per ended session
    hostile_every: int = 0  # every Nth session misbehaves on the wire (see HostileScript)
    probe_path: Path | None = None  # stamp audio for the load bench, one line per session


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{PATH}"


@dataclass
class HostileScript:
    """What a hostile session does around its audio deltas, so a client's defences can be
    shown over a real socket: after ``garbage_at`` deltas it sends a frame that is not JSON, an
    event type nobody knows, a recoverable error event and an audio delta far too large; after
    ``close_at`` deltas it drops the connection in the middle of the response."""

    garbage_at: int = 25
    close_at: int = 50
    huge_delta_bytes: int = 200_000
    deltas: int = 0

    def before_delta(self) -> tuple[list[str], bool]:
        """Frames to send before the next delta, and whether to close instead of sending it."""
        self.deltas += 1
        if self.deltas == self.close_at:
            return [], True
        if self.deltas != self.garbage_at:
            return [], False
        huge = base64.b64encode(b"\x55" * self.huge_delta_bytes).decode()
        frames = [
            "this is not JSON {",
            orjson.dumps({"type": "switchboard.sim.unknown_event", "event_id": "ev_x"}).decode(),
            orjson.dumps(
                {
                    "type": "error",
                    "event_id": "ev_err",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_value",
                        "message": "simulated recoverable error",
                        "param": None,
                        "event_id": None,
                    },
                }
            ).decode(),
            orjson.dumps(
                {
                    "type": "response.output_audio.delta",
                    "event_id": "ev_huge",
                    "response_id": "resp_huge",
                    "item_id": "item_huge",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": huge,
                }
            ).decode(),
        ]
        return frames, False


class _Handler:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.debug = logger.isEnabledFor(logging.DEBUG)
        self.sessions = 0

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse wrong paths and, when a key is configured, wrong credentials."""
        if urlsplit(request.path).path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"Not found; use {PATH}\n")
        key = self.config.api_key
        if key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                logger.info("refused a connection: missing or wrong API key")
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided\n")
        return None

    async def serve_connection(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # set once the handshake is done
        query = parse_qs(urlsplit(request.path).query)
        record = SessionRecord(
            session="",
            mode=self.config.behaviour.mode.value,
            path=request.path,
            authorization_present="Authorization" in request.headers,
        )
        self.sessions += 1
        model = query.get("model", [DEFAULT_MODEL])[0]
        session = SimSession(self.config.behaviour, record, model, self.sessions)
        record.session = session.session_id
        every = self.config.hostile_every
        hostile = HostileScript() if every and self.sessions % every == 0 else None
        record.hostile = hostile is not None
        probe = Probe() if self.config.probe_path is not None else None
        if probe is not None:
            session.on_audio = probe.heard
        logger.info(
            "session %s opened: %s (mode %s)%s",
            record.session,
            request.path,
            record.mode,
            " (hostile)" if hostile else "",
        )
        try:
            if "OpenAI-Beta" in request.headers:
                await self._refuse_beta(ws, session, record)
            else:
                await self._converse(ws, session, record, hostile, probe)
        finally:
            if probe is not None and self.config.probe_path is not None:
                append_probe(self.config.probe_path, probe)
            if self.config.record_path is not None:
                # One short blocking append: readers must see it as soon as the session ends.
                append_record(self.config.record_path, record)
            logger.info(
                "session %s closed: %d bytes in, %d bytes out in %d deltas, %d errors",
                record.session,
                record.audio_in_bytes,
                len(record.audio_out),
                len(record.deltas),
                len(record.errors),
            )

    async def _refuse_beta(
        self, ws: ServerConnection, session: SimSession, record: SessionRecord
    ) -> None:
        logger.info("session %s uses the retired beta protocol: refused", record.session)
        event = session.refuse_beta()
        try:
            await ws.send(orjson.dumps(event).decode())
            record.sent(event)
            await self._close(ws, Close(BETA_CLOSE_CODE, "beta_api_shape_disabled"), record)
        except ConnectionClosed:
            pass

    async def _converse(
        self,
        ws: ServerConnection,
        session: SimSession,
        record: SessionRecord,
        hostile: HostileScript | None = None,
        probe: Probe | None = None,
    ) -> None:
        outbox: Outbox = asyncio.Queue(maxsize=OUTBOX_BATCHES)
        produce = asyncio.Lock()
        reply_due = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._write_loop(ws, outbox, record, hostile, probe))
                replier = tasks.create_task(self._reply_loop(session, outbox, produce, reply_due))
                cap = tasks.create_task(self._cap_timer(session, outbox, produce))
                async with produce:
                    await _enqueue(session, outbox, session.open())
                async for message in ws:
                    async with produce:
                        await _enqueue(session, outbox, session.receive(message))
                    if session.reply_pending:
                        reply_due.set()
                # The client has gone: nothing queued can be delivered any more.
                for task in (writer, replier, cap):
                    task.cancel()
        except* ConnectionClosed:
            pass

    async def _reply_loop(
        self,
        session: SimSession,
        outbox: Outbox,
        produce: asyncio.Lock,
        reply_due: asyncio.Event,
    ) -> None:
        while True:
            await reply_due.wait()
            reply_due.clear()
            while True:
                async with produce:
                    step = session.next_reply_step()
                    if step is None:
                        break
                    batch, pause = step
                    await _enqueue(session, outbox, batch)
                await asyncio.sleep(pause)

    async def _cap_timer(self, session: SimSession, outbox: Outbox, produce: asyncio.Lock) -> None:
        """Close the session when it reaches its maximum duration, as the real server does."""
        await asyncio.sleep(self.config.behaviour.failures.session_max_s)
        async with produce:
            await outbox.put(session.expire())

    async def _write_loop(
        self,
        ws: ServerConnection,
        outbox: Outbox,
        record: SessionRecord,
        hostile: HostileScript | None = None,
        probe: Probe | None = None,
    ) -> None:
        await self._write_until_closed(ws, outbox, record, hostile, probe)
        # Closed by the simulator: whatever is produced meanwhile is discarded, so that no
        # producer waits on a full outbox while the connection winds down.
        while True:
            await outbox.get()

    async def _write_until_closed(
        self,
        ws: ServerConnection,
        outbox: Outbox,
        record: SessionRecord,
        hostile: HostileScript | None,
        probe: Probe | None = None,
    ) -> None:
        while True:
            batch = await outbox.get()
            if isinstance(batch, Close):
                await self._close(ws, batch, record)
                return
            for event in batch:
                if hostile is not None and event["type"] == "response.output_audio.delta":
                    frames, close = hostile.before_delta()
                    if close:
                        logger.info("session %s (hostile): closing mid-response", record.session)
                        await self._close(ws, Close(1011, "simulated failure mid-response"), record)
                        return
                    for frame in frames:
                        await ws.send(frame)
                if probe is not None:
                    probe.sending(event)  # a delta's audio is stamped as it leaves
                await ws.send(orjson.dumps(event).decode())
                record.sent(event)
                self._log_sent(record.session, event)

    async def _close(self, ws: ServerConnection, close: Close, record: SessionRecord) -> None:
        """Close as asked: with a close frame, or (code None) by aborting the TCP connection."""
        dropped = close.dropped.value if close.dropped else None
        record.closed(close.code, close.reason, dropped)
        logger.info(
            "session %s: the simulator closes it: %s %s%s",
            record.session,
            "abort (no close frame)" if close.code is None else close.code,
            close.reason,
            f" (dropped: {dropped})" if dropped else "",
        )
        if close.code is None:
            ws.transport.abort()
        else:
            await ws.close(close.code, close.reason)

    def _log_sent(self, session_id: str, event: Event) -> None:
        kind = event["type"]
        if kind == "response.output_audio.delta":
            if self.debug:
                logger.debug(
                    "session %s delta %s/%s: %d base64 chars",
                    session_id,
                    event["response_id"],
                    event["item_id"],
                    len(event["delta"]),
                )
        elif kind == "response.created":
            logger.info("session %s response %s started", session_id, event["response"]["id"])
        elif kind == "response.done":
            response = event["response"]
            logger.info("session %s response %s %s", session_id, response["id"], response["status"])
        elif kind == "error":
            logger.info(
                "session %s error %s: %s",
                session_id,
                event["error"]["code"],
                event["error"]["message"],
            )


async def _enqueue(session: SimSession, outbox: Outbox, batch: list[Event]) -> None:
    """Queue a batch, then the close the session asked for, if any. Call under the lock."""
    if batch:
        await outbox.put(batch)
    close = session.close_due()
    if close is not None:
        await outbox.put(close)


@asynccontextmanager
async def run_simulator(config: SimulatorConfig) -> AsyncIterator[RunningSimulator]:
    """Serve until the block exits; open sessions are then closed and their records written."""
    handler = _Handler(config)
    async with serve(
        handler.serve_connection,
        config.host,
        config.port,
        process_request=handler.check_request,
        compression=None,  # base64 audio does not compress
        max_size=MAX_CLIENT_MESSAGE,
        max_queue=32,
        open_timeout=10,
        close_timeout=2,
        ping_interval=20,
        ping_timeout=20,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield RunningSimulator(config.host, int(port))
