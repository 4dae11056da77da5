"""The conversation load: callers talk in turns to a model that answers, barge in on some
replies, and hear everything back exactly.

Each call follows its own script (``turns.py``): every 20 ms it sends a stamped frame
(``services.realtime_sim.stamps``) of speech or of a pause. The simulator, in conversation
mode with ``--probe``, hears the turns with its VAD, answers each with the canned reply's
timing (deltas of 100–500 ms by default, streamed at 4× real time) but stamped bytes, and
cancels a reply the caller talks over. At the caller's end, ``ear.py`` plays the audio as
Twilio would, echoes marks when playback reaches them, honours ``clear``, and reads every byte
back into the model's deltas. ``scoring.py`` joins it with the simulator's side afterwards.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from services.bench.ear import Listener, Playout
from services.bench.loadgen import Call, CallResult, Generator, LoadResult
from services.bench.scoring import BARGE_CLEAR_LIMIT_S, CallerLog
from services.bench.turns import Caller
from services.call_sim.routing import new_sid
from services.realtime_sim.stamps import caller_frame

__all__ = ["ConversationGenerator"]


@dataclass
class _TalkCall(Call):
    log: CallerLog = field(default_factory=lambda: CallerLog(-1, Listener(-1)))
    caller: Caller | None = None
    playout: Playout = field(default_factory=Playout)
    barge_pending: float | None = None  # a barge-in's first word, until its clear


class ConversationGenerator(Generator[_TalkCall]):
    """Callers in conversation; see the module's docstring."""

    def new_call(self, index: int) -> _TalkCall:
        call = _TalkCall(index, CallResult(index, new_sid("CA")))
        call.log = CallerLog(index, Listener(index))
        return call

    def frame(self, call: _TalkCall, seq: int, now: float) -> bytes:
        caller, playout, log = call.caller, call.playout, call.log
        if caller is None:  # the first frame: the script starts now
            rng = random.Random(self.config.seed * 1_000_003 + call.index)
            caller = call.caller = Caller(self.config.turns, rng, now)
        speech = caller.speech(now, playout.playing(now))
        barges = len(caller.barge_ins)
        if barges > len(log.barge_ins):
            start = caller.barge_ins[-1]
            if call.barge_pending is not None:
                log.barges_missed.append(_ns(call.barge_pending))
            call.barge_pending = start
            log.barge_ins.append(_ns(start))
        elif call.barge_pending is not None and now - call.barge_pending > BARGE_CLEAR_LIMIT_S:
            log.barges_missed.append(_ns(call.barge_pending))
            call.barge_pending = None
        log.turns, log.unanswered = caller.turns, caller.unanswered
        call.echo_now += playout.due(now)
        sent_ns = time.monotonic_ns()
        log.sent_ns.append(sent_ns)
        return caller_frame(call.index, seq, sent_ns, speech)

    def on_event(self, call: _TalkCall, event: dict[str, Any], now: float) -> None:
        kind = event.get("event")
        if kind == "media":
            self._on_media(call, self._b64decode(event["media"]["payload"]), now)
        elif kind == "mark":
            call.echo_now += call.playout.mark(event["mark"]["name"], now)
        elif kind == "clear":
            self._on_clear(call, now)

    def _on_media(self, call: _TalkCall, audio: bytes, now: float) -> None:
        result = call.result
        if math.isnan(result.first_audio_s):
            result.first_audio_s = now - call.posted_at
        call.playout.audio(len(audio), now)
        started = call.log.listener.feed(audio, _ns(now))
        if started is not None and call.caller is not None:
            call.caller.reply_started(now)

    def _on_clear(self, call: _TalkCall, now: float) -> None:
        log = call.log
        log.listener.clear(call.playout, now)
        call.echo_now += call.playout.clear(now)
        pending = call.barge_pending
        if pending is None:
            log.clears_unasked += 1
            return
        call.barge_pending = None
        log.clears.append((_ns(pending), (now - pending) * 1000))

    def drained(self) -> bool:
        # Replies keep streaming after the window: give the deltas sent in it the whole drain
        # (the edge holds a delta's last partial frame until the next delta comes).
        return False

    def result(self, elapsed_s: float) -> LoadResult:
        window = self.window
        return LoadResult(
            calls=[c.result for c in self.calls],
            latencies_ms=[],
            window_s=window.end - window.start,
            sent_in_window=0,
            lost_in_window=0,
            elapsed_s=elapsed_s,
            window_ns=(window.start_ns, window.end_ns),
            callers=[c.log for c in self.calls],
        )


def _ns(seconds: float) -> int:
    """perf_counter seconds as CLOCK_MONOTONIC nanoseconds (the same clock on Linux)."""
    return round(seconds * 1e9)
