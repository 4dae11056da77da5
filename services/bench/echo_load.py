"""The echo load: every frame names its call and sequence number, the simulator in echo mode
sends it straight back, and each call's reader times the round trip and checks every byte.
Each echoed delta is followed by the bridge's marks, echoed when playback reaches them."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.bench.loadgen import FRAME_S, Call, CallResult, Generator, LoadConfig, LoadResult
from services.bench.pattern import decode_frame, encode_frame
from services.call_sim.routing import new_sid

__all__ = ["EchoGenerator"]


@dataclass
class _EchoCall(Call):
    sent_at: list[float] = field(default_factory=list)  # by frame seq - 1
    echoed: bytearray = field(default_factory=bytearray)
    play_end: float = 0.0  # when the caller's playout buffer runs dry
    marks: deque[tuple[float, str]] = field(default_factory=deque)  # (due, name)


class EchoGenerator(Generator[_EchoCall]):
    """Every frame names its call and sequence number; the simulator echoes it back."""

    def __init__(
        self,
        config: LoadConfig,
        on_window_start: Callable[[], None],
        on_window_end: Callable[[], None],
    ) -> None:
        super().__init__(config, on_window_start, on_window_end)
        self.latencies: list[float] = []

    def new_call(self, index: int) -> _EchoCall:
        return _EchoCall(index, CallResult(index, new_sid("CA")))

    def frame(self, call: _EchoCall, seq: int, now: float) -> bytes:
        call.sent_at.append(now)
        call.echoed.append(0)
        marks = call.marks
        while marks and marks[0][0] <= now:
            call.echo_now.append(marks.popleft()[1])
        return encode_frame(call.index, seq)

    def on_event(self, call: _EchoCall, event: dict[str, Any], now: float) -> None:
        kind = event.get("event")
        if kind == "media":
            self._on_media(call, self._b64decode(event["media"]["payload"]), now)
        elif kind == "mark":
            call.marks.append((max(call.play_end, now), event["mark"]["name"]))

    def _on_media(self, call: _EchoCall, frame: bytes, now: float) -> None:
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

    def drained(self) -> bool:
        return all(c.result.frames_echoed >= c.result.frames_sent for c in self.calls if c.ws)

    def result(self, elapsed_s: float) -> LoadResult:
        sent = lost = 0
        window = self.window
        for call in self.calls:
            for when, echoed in zip(call.sent_at, call.echoed, strict=True):
                if window.start <= when < window.end:
                    sent += 1
                    lost += not echoed
        return LoadResult(
            calls=[c.result for c in self.calls],
            latencies_ms=self.latencies,
            window_s=window.end - window.start,
            sent_in_window=sent,
            lost_in_window=lost,
            elapsed_s=elapsed_s,
            window_ns=(window.start_ns, window.end_ns),
        )
