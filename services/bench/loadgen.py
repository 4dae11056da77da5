"""The load generator: C simulated calls from one asyncio process, timed frame by frame.

Each call does what Twilio does (signed webhook, TwiML, signed WebSocket upgrade, ``connected``,
``start``, ``media`` every 20 ms, marks echoed when playback reaches them, ``stop``), reusing
the call simulator's pure helpers. One pacer task sends every call's frames against absolute
deadlines: the 20 ms period is cut into slots and the calls are spread over them, as real calls
are not phase-aligned.

Two loads share that machinery (``Generator``): ``echo`` here, where each frame carries (call
index, sequence number) and the reader of each call times its echo and checks every byte; and
``conversation`` (``conversation_load.py``), callers talking in turns to a model that answers.

Timeline: calls are placed at ``ramp_rate`` per second; once all are up, ``warmup_s`` passes,
then the measured window of ``duration_s`` (frames sent in it are the latency samples, and the
caller's hooks sample the processes' CPU at its edges). Then sending stops, what is still in
flight gets ``drain_s`` to arrive, each call sends ``stop`` and hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
import orjson
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.bench.scoring import CallerLog
from services.bench.turns import TurnShape
from services.call_sim import messages
from services.call_sim.routing import new_sid, to_edge
from services.call_sim.twiml import Connect, parse_twiml
from shared.audio import FRAME_MS

__all__ = [
    "CONVERSATION",
    "ECHO",
    "LOADS",
    "CallResult",
    "Generator",
    "LoadConfig",
    "LoadResult",
    "media_text",
    "run_load",
]

logger = logging.getLogger("switchboard.bench.load")

FRAME_S = FRAME_MS / 1000
SLOTS = 10  # the 20 ms period is cut into 2 ms slots; call i sends in slot i % SLOTS
VOICE_PATH = "/twilio/voice"
ECHO = "echo"
CONVERSATION = "conversation"
LOADS = (ECHO, CONVERSATION)


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
    load: str = ECHO
    voice_path: str = VOICE_PATH  # the webhook the server under test answers
    turns: TurnShape = TurnShape()  # the conversation load's callers
    seed: int = 0  # the conversation load's draws


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
    window_ns: tuple[int, int] = (0, 0)  # CLOCK_MONOTONIC, as the simulator's probe reads it
    callers: list[CallerLog] = field(default_factory=list)  # the conversation load's

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
    start_ns: int = 0
    end_ns: int = 0


@dataclass
class Call:
    """One call's Twilio side; each load adds what it needs."""

    index: int
    result: CallResult
    ws: ClientConnection | None = None
    stream_sid: str = ""
    sequence: int = 1  # Twilio's sequenceNumber: counts every message after connected
    posted_at: float = 0.0
    sending: bool = False
    echo_now: list[str] = field(default_factory=list)  # marks to echo at the next frame


CallT = TypeVar("CallT", bound=Call)


class Generator(Generic[CallT]):
    """Places the calls, paces their frames, reads what comes back, keeps the timeline.
    A load says what each frame is (``frame``), what to make of each message that comes
    back (``on_event``), when nothing is in flight any more (``drained``) and what the
    run's figures are (``result``)."""

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
        self.calls = [self.new_call(i) for i in range(config.calls)]
        self.slots: list[list[CallT]] = [[] for _ in range(SLOTS)]
        self.window = _Window()
        self.pacing = True
        self.placed = 0
        self._b64decode = base64.b64decode  # per media message: one attribute lookup, not two

    # --- what a load says ----------------------------------------------------------------

    def new_call(self, index: int) -> CallT:
        raise NotImplementedError

    def frame(self, call: CallT, seq: int, now: float) -> bytes:
        """The audio of frame ``seq`` of ``call``, sent at ``now``."""
        raise NotImplementedError

    def on_event(self, call: CallT, event: dict[str, Any], now: float) -> None:
        """A message from the server under test, read at ``now``."""
        raise NotImplementedError

    def drained(self) -> bool:
        return True

    def result(self, elapsed_s: float) -> LoadResult:
        raise NotImplementedError

    # --- set-up --------------------------------------------------------------------------

    async def _place(self, call: CallT, http: httpx.AsyncClient) -> None:
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
        url = public + config.voice_path
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

    async def _send_frame(self, call: CallT) -> None:
        ws, result = call.ws, call.result
        assert ws is not None
        seq = result.frames_sent + 1
        now = time.perf_counter()
        text = media_text(
            call.sequence, call.stream_sid, seq, (seq - 1) * FRAME_MS, self.frame(call, seq, now)
        )
        call.sequence += 1
        try:
            await ws.send(text)
            # Marks whose audio has played out by now go back, as Twilio's player would.
            for name in call.echo_now:
                await ws.send(_mark_echo(call.sequence, call.stream_sid, name))
                call.sequence += 1
                result.marks_echoed += 1
            call.echo_now.clear()
        except ConnectionClosed as exc:
            call.sending = False
            result.error = result.error or f"socket closed while sending: {exc}"
            return
        result.frames_sent += 1

    async def _read(self, call: CallT) -> None:
        ws, result = call.ws, call.result
        clock = time.perf_counter
        assert ws is not None
        try:
            async for text in ws:
                now = clock()
                event = orjson.loads(text)
                if event.get("event") == "mark":
                    result.marks_received += 1
                self.on_event(call, event, now)
        except ConnectionClosed:
            pass
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            # Garbage from the server under test ends this call, not the whole run.
            result.error = result.error or f"unreadable message from the server: {exc!r}"
        if call.sending and result.error is None:
            result.error = f"the server closed the socket ({ws.close_code})"
        call.sending = False

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

            async def place(call: CallT) -> None:
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
            self.window.start, self.window.start_ns = time.perf_counter(), time.monotonic_ns()
            self.on_window_start()
            await asyncio.sleep(config.duration_s)
            self.window.end, self.window.end_ns = time.perf_counter(), time.monotonic_ns()
            self.on_window_end()
            for call in self.calls:
                call.sending = False
            self.pacing = False
            await pacer
            await self._drain()
            await asyncio.gather(*(self._hang_up(call) for call in self.calls))
            for reader in readers:
                reader.cancel()
        return self.result(loop.time() - started)

    async def _drain(self) -> None:
        """Give what is still in flight up to ``drain_s`` to arrive."""
        deadline = self.loop.time() + self.config.drain_s
        while self.loop.time() < deadline:
            if self.drained():
                return
            await asyncio.sleep(0.05)  # polling counters: there is no event to await

    async def _hang_up(self, call: CallT) -> None:
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
    # The loads build on this module: imported here, not at its top.
    from services.bench.conversation_load import ConversationGenerator
    from services.bench.echo_load import EchoGenerator

    generator: Generator[Any]
    if config.load == CONVERSATION:
        generator = ConversationGenerator(config, on_window_start, on_window_end)
    elif config.load == ECHO:
        generator = EchoGenerator(config, on_window_start, on_window_end)
    else:
        raise ValueError(f"unknown load {config.load!r}: use one of {', '.join(LOADS)}")
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
