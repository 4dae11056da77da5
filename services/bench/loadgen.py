"""The load generator: C simulated calls from one asyncio process, timed frame by frame.

Each call does what Twilio does (signed webhook, TwiML, signed WebSocket upgrade, ``connected``,
``start``, ``media`` every 20 ms, marks echoed when playback reaches them, ``stop``), reusing
the call simulator's pure helpers. One pacer task sends every call's frames against absolute
deadlines: the 20 ms period is cut into slots and the calls are spread over them, as real calls
are not phase-aligned. Each frame carries (call index, sequence number); the reader of each
call times the echo and checks every byte.

Timeline: calls are placed at ``ramp_rate`` per second; once all are up, ``warmup_s`` passes,
then the measured window of ``duration_s`` (frames sent in it are the latency samples, and the
caller's hooks sample the processes' CPU at its edges). Then sending stops, echoes still in
flight get ``drain_s`` to arrive, each call sends ``stop`` and hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.bench.pattern import decode_frame, encode_frame
from services.call_sim import messages
from services.call_sim.routing import new_sid, to_edge
from services.call_sim.twiml import Connect, parse_twiml
from shared.audio import FRAME_MS

__all__ = ["CallResult", "LoadConfig", "LoadResult", "media_text", "run_load"]

logger = logging.getLogger("switchboard.bench.load")

FRAME_S = FRAME_MS / 1000
SLOTS = 10  # the 20 ms period is cut into 2 ms slots; call i sends in slot i % SLOTS
VOICE_PATH = "/twilio/voice"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    edge_url: str  # http://127.0.0.1:port of the server under test
    public_url: str
    auth_token: str
    calls: int
    duration_s: float
    warmup_s: float = 2.0
    ramp_rate: float = 50.0  # calls placed per second
    drain_s: float = 3.0
    setup_timeout_s: float = 20.0


def media_text(sequence: int, stream_sid: str, chunk: int, timestamp_ms: int, audio: bytes) -> str:
    """``messages.media_message`` built by concatenation: the same text, several times
    cheaper, so that the generator spends its CPU on the calls rather than on JSON."""
    return (
        '{"event":"media","sequenceNumber":"'
        + str(sequence)
        + '","media":{"track":"inbound","chunk":"'
        + str(chunk)
        + '","timestamp":"'
        + str(timestamp_ms)
        + '","payload":"'
        + binascii.b2a_base64(audio, newline=False).decode("ascii")
        + '"},"streamSid":"'
        + stream_sid
        + '"}'
    )


def _mark_echo(sequence: int, stream_sid: str, name: str) -> str:
    # messages.mark_echo's document through orjson: the generator echoes 50 marks a second
    # per call, and the standard library's encoder would be a good part of its CPU.
    return orjson.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    ).decode()


@dataclass
class CallResult:
    """One call's figures; times are seconds on the event loop's clock."""

    index: int
    call_sid: str
    error: str | None = None
    webhook_s: float = math.nan  # POST → TwiML
    first_audio_s: float = math.nan  # POST → first echoed media at the caller
    frames_sent: int = 0
    frames_echoed: int = 0
    frames_corrupt: int = 0  # echoed media whose 160 bytes are not exactly what was sent
    frames_duplicate: int = 0
    frames_foreign: int = 0  # media that is not one of this call's frames at all
    marks_received: int = 0
    marks_echoed: int = 0


@dataclass
class LoadResult:
    calls: list[CallResult]
    latencies_ms: list[float]  # round trips of the frames sent in the window
    window_s: float
    sent_in_window: int
    lost_in_window: int
    elapsed_s: float

    @property
    def frames_sent(self) -> int:
        return sum(c.frames_sent for c in self.calls)

    @property
    def frames_lost(self) -> int:
        return sum(c.frames_sent - c.frames_echoed for c in self.calls)

    @property
    def frames_corrupt(self) -> int:
        return sum(c.frames_corrupt + c.frames_foreign for c in self.calls)

    @property
    def failed_calls(self) -> list[CallResult]:
        return [c for c in self.calls if c.error is not None]


@dataclass
class _Window:
    start: float = math.inf
    end: float = math.inf


@dataclass
class _Call:
    index: int
    result: CallResult
    ws: ClientConnection | None = None
    stream_sid: str = ""
    account_sid: str = ""
    sequence: int = 1  # Twilio's sequenceNumber: counts every message after connected
    posted_at: float = 0.0
    sending: bool = False
    sent_at: list[float] = field(default_factory=list)  # by frame seq - 1
    echoed: bytearray = field(default_factory=bytearray)
    play_end: float = 0.0  # when the caller's playout buffer runs dry
    marks: deque[tuple[float, str]] = field(default_factory=deque)  # (due, name)


class _Generator:
    def __init__(
        self,
        config: LoadConfig,
        on_window_start: Callable[[], None],
        on_window_end: Callable[[], None],
    ) -> None:
        self.config = config
        self.on_window_start = on_window_start
        self.on_window_end = on_window_end
        self.loop = asyncio.get_running_loop()
        self.validator = RequestValidator(config.auth_token)
        self.account_sid = new_sid("AC")
        self.calls = [_Call(i, CallResult(i, new_sid("CA"))) for i in range(config.calls)]
        self.slots: list[list[_Call]] = [[] for _ in range(SLOTS)]
        self.window = _Window()
        self.latencies: list[float] = []
        self.pacing = True
        self.placed = 0

    # --- set-up --------------------------------------------------------------------------

    async def _place(self, call: _Call, http: httpx.AsyncClient) -> None:
        """Webhook, TwiML, upgrade, connected and start; then the pacer takes over."""
        config, result = self.config, call.result
        public = config.public_url.rstrip("/")
        params = {
            "CallSid": result.call_sid,
            "AccountSid": self.account_sid,
            "From": "+15005550006",
            "To": "+15005550001",
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        url = public + VOICE_PATH
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)}
        call.posted_at = time.perf_counter()
        response = await http.post(
            to_edge(url, config.public_url, config.edge_url), data=params, headers=headers
        )
        result.webhook_s = time.perf_counter() - call.posted_at
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered HTTP {response.status_code}")
        document = parse_twiml(response.content, url)
        stream = next(
            (v.stream for v in document.verbs if isinstance(v, Connect) and v.stream), None
        )
        if stream is None:
            raise RuntimeError(f"TwiML has no <Connect><Stream>: {response.text[:200]!r}")
        ws = await connect(
            to_edge(stream.url, config.public_url, config.edge_url),
            additional_headers={
                "X-Twilio-Signature": self.validator.compute_signature(stream.url, {})
            },
            user_agent_header="Twilio.TmeWs/1.0",
            proxy=None,
            compression=None,
            open_timeout=config.setup_timeout_s,
            ping_interval=None,
            close_timeout=5,
            max_size=1 << 20,
            max_queue=None,  # never pause reading: the generator must not add back-pressure
        )
        call.ws, call.stream_sid = ws, new_sid("MZ")
        await ws.send(messages.connected_message())
        await ws.send(
            messages.start_message(
                call.sequence, call.stream_sid, self.account_sid, result.call_sid, stream.parameters
            )
        )
        call.sequence += 1
        call.sending = True
        self.slots[call.index % SLOTS].append(call)
        self.placed += 1

    # --- the two directions --------------------------------------------------------------

    async def _pace(self) -> None:
        """Send the next frame of every sending call, slot by slot, on absolute deadlines."""
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        clock, slot_s = time.perf_counter, FRAME_S / SLOTS
        origin, tick = clock(), 0
        while self.pacing:
            calls = self.slots[tick % SLOTS]
            # Empty slots are skipped without waking up: at small C, waking every 2 ms for
            # nothing would dominate the generator's own CPU figure.
            if calls or not self.placed:
                delay = origin + tick * slot_s - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                for call in calls:
                    if call.sending:
                        await self._send_frame(call)
            tick += 1

    async def _send_frame(self, call: _Call) -> None:
        ws = call.ws
        assert ws is not None
        seq = len(call.sent_at) + 1
        text = media_text(
            call.sequence, call.stream_sid, seq, (seq - 1) * FRAME_MS, encode_frame(call.index, seq)
        )
        now = time.perf_counter()
        call.sent_at.append(now)
        call.echoed.append(0)
        call.sequence += 1
        try:
            await ws.send(text)
            # Marks whose audio has played out by now go back, as Twilio's player would.
            while call.marks and call.marks[0][0] <= now:
                await ws.send(_mark_echo(call.sequence, call.stream_sid, call.marks[0][1]))
                call.marks.popleft()
                call.sequence += 1
                call.result.marks_echoed += 1
        except ConnectionClosed as exc:
            call.sending = False
            call.result.error = call.result.error or f"socket closed while sending: {exc}"
            return
        call.result.frames_sent += 1

    async def _read(self, call: _Call) -> None:
        ws, result = call.ws, call.result
        clock = time.perf_counter
        assert ws is not None
        b64decode = base64.b64decode
        try:
            async for text in ws:
                now = clock()
                event = orjson.loads(text)
                kind = event.get("event")
                if kind == "media":
                    self._on_media(call, b64decode(event["media"]["payload"]), now)
                elif kind == "mark":
                    result.marks_received += 1
                    call.marks.append((max(call.play_end, now), event["mark"]["name"]))
        except ConnectionClosed:
            pass
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            # Garbage from the server under test ends this call, not the whole run.
            result.error = result.error or f"unreadable message from the server: {exc!r}"
        if call.sending and result.error is None:
            result.error = f"the server closed the socket ({ws.close_code})"
        call.sending = False

    def _on_media(self, call: _Call, frame: bytes, now: float) -> None:
        result = call.result
        call.play_end = max(call.play_end, now) + FRAME_S
        if result.frames_echoed == 0 and math.isnan(result.first_audio_s):
            result.first_audio_s = now - call.posted_at
        named = decode_frame(frame)
        if named is None or named[0] != call.index or not 1 <= named[1] <= len(call.sent_at):
            result.frames_foreign += 1
            return
        seq = named[1]
        if call.echoed[seq - 1]:
            result.frames_duplicate += 1
            return
        if frame != encode_frame(call.index, seq):
            result.frames_corrupt += 1
            return
        call.echoed[seq - 1] = 1
        result.frames_echoed += 1
        sent = call.sent_at[seq - 1]
        if self.window.start <= sent < self.window.end:
            self.latencies.append((now - sent) * 1000)

    # --- the whole run -------------------------------------------------------------------

    async def run(self) -> LoadResult:
        config, loop = self.config, self.loop
        started = loop.time()
        timeout = httpx.Timeout(config.setup_timeout_s)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http,
            asyncio.TaskGroup() as tasks,
        ):
            pacer = tasks.create_task(self._pace())
            readers: list[asyncio.Task[None]] = []

            async def place(call: _Call) -> None:
                await asyncio.sleep(call.index / config.ramp_rate)
                try:
                    async with asyncio.timeout(config.setup_timeout_s):
                        await self._place(call, http)
                except Exception as exc:
                    call.result.error = f"set-up failed: {exc!r}"
                    logger.warning("call %d: %s", call.index, call.result.error)
                    return
                readers.append(tasks.create_task(self._read(call)))

            await asyncio.gather(*(place(call) for call in self.calls))
            await asyncio.sleep(config.warmup_s)
            self.window.start = time.perf_counter()
            self.on_window_start()
            await asyncio.sleep(config.duration_s)
            self.window.end = time.perf_counter()
            self.on_window_end()
            for call in self.calls:
                call.sending = False
            self.pacing = False
            await pacer
            await self._drain()
            await asyncio.gather(*(self._hang_up(call) for call in self.calls))
            for reader in readers:
                reader.cancel()
        sent = lost = 0
        for call in self.calls:
            for when, echoed in zip(call.sent_at, call.echoed, strict=True):
                if self.window.start <= when < self.window.end:
                    sent += 1
                    lost += not echoed
        return LoadResult(
            calls=[c.result for c in self.calls],
            latencies_ms=self.latencies,
            window_s=self.window.end - self.window.start,
            sent_in_window=sent,
            lost_in_window=lost,
            elapsed_s=loop.time() - started,
        )

    async def _drain(self) -> None:
        """Give the echoes still in flight up to ``drain_s`` to arrive."""
        deadline = self.loop.time() + self.config.drain_s
        while self.loop.time() < deadline:
            if all(c.result.frames_echoed >= c.result.frames_sent for c in self.calls if c.ws):
                return
            await asyncio.sleep(0.05)  # polling counters: there is no event to await

    async def _hang_up(self, call: _Call) -> None:
        ws = call.ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await ws.send(
                messages.stop_message(
                    call.sequence, call.stream_sid, self.account_sid, call.result.call_sid
                )
            )
            await asyncio.wait_for(ws.close(), 5)


async def run_load(
    config: LoadConfig,
    on_window_start: Callable[[], None] = lambda: None,
    on_window_end: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Place ``config.calls`` calls, measure, hang up; bounded by the config's times."""
    generator = _Generator(config, on_window_start, on_window_end)
    budget = (
        config.calls / config.ramp_rate
        + config.setup_timeout_s
        + config.warmup_s
        + config.duration_s
        + config.drain_s
        + 30
    )
    async with asyncio.timeout(budget):
        return await generator.run()
