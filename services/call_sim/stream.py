"""One Media Streams WebSocket, played from Twilio's side.

Three tasks share the socket: the sender (``connected``, ``start``, then one 160-byte ``media``
frame every 20 ms against absolute deadlines on the caller's clock, which a later stream of the
call shares (``caller_audio.py``), a linger while the reply plays out, then ``stop``), the
reader (checks every message, feeds the playout buffer, echoes the marks it releases) and the
playout timer (echoes a mark when playback reaches it while nothing else is happening). The
reader runs until the socket closes; then the others are stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.call_sim import messages
from services.call_sim.caller_audio import Outgoing
from services.call_sim.outbound_check import OutClear, OutMark, OutMedia, check_outbound
from services.call_sim.stream_end import StreamOutcome
from shared.audio import FRAME_MS
from shared.playout import Playback, Played

__all__ = ["CallTally", "Outgoing", "StreamOutcome", "StreamSession"]

logger = logging.getLogger("switchboard.call_sim")

MAX_VIOLATIONS = 200  # per call; a broken edge would otherwise fill memory at 50 per second
ECHO_POLL_S = 0.1  # how often a caller owed an echo looks whether it has all come back


@dataclass
class CallTally:
    """Call-wide accumulators, shared by the call's streams in turn."""

    origin: float  # loop time of the first webhook
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    heard: bytearray = field(default_factory=bytearray)
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    violations: list[str] = field(default_factory=list)
    dropped_violations: int = 0
    first_audio_ms: float | None = None
    media_arrivals: list[tuple[float, int]] = field(default_factory=list)  # (ms, bytes)

    def violation(self, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text)
        else:
            self.dropped_violations += 1


class StreamSession:
    """Plays one stream on an open connection; ``run()`` returns when the socket is closed."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
        parameters: Mapping[str, str],
        outgoing: Outgoing,
        tally: CallTally,
        send_stop: bool = True,
        frame_bytes: int | None = None,
        linger_s: float = 0.0,
        quiet_s: float = 0.5,
        echo_quiet_s: float | None = None,
        dtmf: Sequence[tuple[float, str]] = (),
    ) -> None:
        self._ws = ws
        self.stream_sid = stream_sid
        self._call_sid = call_sid
        self._account_sid = account_sid
        self._parameters = dict(parameters)
        self._outgoing = outgoing
        self._tally = tally
        self._send_stop = send_stop
        self._frame_bytes = frame_bytes
        self._linger_s = linger_s
        self._quiet_s = quiet_s
        self._echo_quiet_s = echo_quiet_s
        self._dtmf = sorted(dtmf)
        self._started = asyncio.Event()  # the start message has been sent
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time()
        self._playback = Playback(0.0)
        self._changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sequence = 0
        self._hanging_up = False
        self._violation_counts: dict[str, int] = {}
        self._last_received = self._origin

    def _now_ms(self) -> float:
        return (self._loop.time() - self._origin) * 1000

    @property
    def opened_at(self) -> float:
        """Loop time at which this stream's clock started: 0 ms of ``played``."""
        return self._origin

    @property
    def played(self) -> list[Played]:
        """What Twilio played to the far end, and when, by this stream's clock (ms)."""
        return self._playback.log

    async def run(self) -> StreamOutcome:
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(self._send_loop())
            playout = group.create_task(self._playout_loop())
            keys = group.create_task(self._dtmf_loop())
            await self._read_loop()
            playout.cancel()
            keys.cancel()
            if not self._hanging_up:
                sender.cancel()
            # else the sender is finishing its close handshake: let it.
        self._playback.advance(self._now_ms())
        self._tally.heard += self._playback.heard  # audio still queued is never heard
        for kind, count in self._violation_counts.items():
            if count > 1:
                self._tally.violation(f"{kind}: {count - 1} more on stream {self.stream_sid}")
        code = self._ws.close_code
        return StreamOutcome(
            "caller" if self._hanging_up else "edge",
            None if code is None else int(code),
            close_frame=self._ws.protocol.close_rcvd is not None,
        )

    # --- caller → edge ------------------------------------------------------------------

    async def _send_numbered(self, build: Callable[[int], str]) -> None:
        # One lock, so sequence numbers go out in order even when the reader echoes a mark
        # while the sender is mid-frame.
        async with self._send_lock:
            self._sequence += 1
            await self._ws.send(build(self._sequence))

    async def _send_loop(self) -> None:
        sid, call_sid, account_sid = self.stream_sid, self._call_sid, self._account_sid
        outgoing, tally = self._outgoing, self._tally
        try:
            await self._ws.send(messages.connected_message())
            await self._send_numbered(
                partial(
                    messages.start_message,
                    stream_sid=sid,
                    account_sid=account_sid,
                    call_sid=call_sid,
                    custom_parameters=self._parameters,
                )
            )
            self._started.set()
            # The caller talks on in real time: this stream starts with the frame due now.
            outgoing.resume(self._loop.time())
            chunk = 0
            while not outgoing.done:
                # Absolute deadlines: a late wake-up shortens the next wait instead of
                # pushing every later frame back.
                delay = outgoing.due_at(outgoing.next_index) - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame = outgoing.frames[outgoing.next_index]
                chunk += 1
                await self._send_numbered(
                    partial(
                        messages.media_message,
                        stream_sid=sid,
                        chunk=chunk,
                        timestamp_ms=(chunk - 1) * FRAME_MS,
                        audio=frame,
                    )
                )
                outgoing.next_index += 1
                tally.sent += frame
            await self._linger()
            self._hanging_up = True
            if self._send_stop:
                await self._send_numbered(
                    partial(
                        messages.stop_message,
                        stream_sid=sid,
                        account_sid=account_sid,
                        call_sid=call_sid,
                    )
                )
            await self._ws.close()
        except ConnectionClosed:
            return  # the edge closed first; the reader reports it

    async def _dtmf_loop(self) -> None:
        """Press the configured keys, each at its time after the stream started."""
        if not self._dtmf:
            return
        await self._started.wait()
        start = self._loop.time()
        try:
            for at_s, digit in self._dtmf:
                delay = start + at_s - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._hanging_up:
                    return
                await self._send_numbered(
                    partial(messages.dtmf_message, stream_sid=self.stream_sid, digit=digit)
                )
        except ConnectionClosed:
            return

    async def _linger(self) -> None:
        """After the last frame, stay on the line (sending nothing) until the edge's audio has
        played and it has been quiet for ``quiet_s`` (``echo_quiet_s`` while an echoing far end
        owes audio), at most ``linger_s``: hanging up on the last frame would cut off the
        reply, or the echo, still on its way."""
        deadline = self._loop.time() + self._linger_s
        tally = self._tally
        looked_again = False
        while (now := self._loop.time()) < deadline:
            await self._echo(self._playback.advance(self._now_ms()))
            quiet, owed = self._quiet_s, False
            if self._echo_quiet_s is not None and len(tally.received) < len(tally.sent):
                quiet, owed = self._echo_quiet_s, True
            quiet_until = self._last_received + quiet
            drained_in = self._playback.drained_at() - self._now_ms()
            if now >= quiet_until and self._playback.queued_bytes == 0:
                if looked_again:
                    return
                # Once more after a frame's time: when this process itself was held up (a busy
                # machine), what the edge sent meanwhile may still wait unread in the socket,
                # and the reader takes it in only after this task has looked.
                looked_again = True
                await asyncio.sleep(FRAME_MS / 1000)
                continue
            looked_again = False
            wait = max(quiet_until - now, drained_in / 1000, FRAME_MS / 1000)
            if owed:  # look again soon: the echo's end may come any moment
                wait = min(wait, ECHO_POLL_S)
            await asyncio.sleep(min(wait, deadline - now))

    async def _echo(self, names: list[str]) -> None:
        if not names:
            return
        # One lock acquisition per batch: the lock is FIFO, so batches taken from the playout
        # buffer in order go out in order even when the reader and the timer both release.
        async with self._send_lock:
            for name in names:
                if self._hanging_up:
                    return  # after stop Twilio sends nothing more
                self._sequence += 1
                await self._ws.send(messages.mark_echo(self._sequence, self.stream_sid, name))
                self._tally.marks_echoed.append(name)

    # --- edge → caller ------------------------------------------------------------------

    async def _read_loop(self) -> None:
        tally, playback = self._tally, self._playback
        try:
            while True:
                frame = await self._ws.recv()
                self._last_received = self._loop.time()
                result = check_outbound(frame, self.stream_sid, frame_bytes=self._frame_bytes)
                for violation in result.violations:
                    self._violation(violation.kind, str(violation))
                message = result.message
                now = self._now_ms()
                if isinstance(message, OutMedia):
                    since_origin_ms = (self._last_received - tally.origin) * 1000
                    if tally.first_audio_ms is None:
                        tally.first_audio_ms = since_origin_ms
                    tally.media_arrivals.append((since_origin_ms, len(message.audio)))
                    tally.received += message.audio
                    released = playback.add_audio(message.audio, now)
                elif isinstance(message, OutMark):
                    tally.marks_received.append(message.name)
                    released = playback.add_mark(message.name, now)
                elif isinstance(message, OutClear):
                    tally.clears += 1
                    released = playback.clear(now)
                else:
                    continue
                self._changed.set()
                await self._echo(released)
        except ConnectionClosed:
            return

    def _violation(self, kind: str, text: str) -> None:
        # Twilio itself reports each warning once per stream; keep the first of each kind in
        # full and count the rest, so one broken frame type cannot drown the others.
        count = self._violation_counts.get(kind, 0) + 1
        self._violation_counts[kind] = count
        if count == 1:
            self._tally.violation(f"{text} [stream {self.stream_sid}]")

    async def _playout_loop(self) -> None:
        while True:
            self._changed.clear()
            due = self._playback.next_mark_due()
            if due is None:
                await self._changed.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, due - self._now_ms()) / 1000):
                        await self._changed.wait()
            with contextlib.suppress(ConnectionClosed):
                await self._echo(self._playback.advance(self._now_ms()))
