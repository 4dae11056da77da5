"""The conversation load's caller: when it talks, when it listens, when it barges in. Sans I/O.

Twilio sends a frame every 20 ms whether the caller talks or not, so the script only decides,
frame by frame, whether this one is speech or a pause. A call goes:

1. a pause of ``first_pause_s`` (calls are not in step with one another);
2. speech for ``speech_s``, then silence while the simulator's VAD ends the turn (500 ms) and
   its reply streams in, faster than real time;
3. the reply plays at the caller's end; at its first audio the caller decides whether it will
   barge in (``barge_share`` of replies), and when (``barge_after_s`` into it). A barge-in is
   speech for ``barge_speech_s`` while the reply still plays: the bridge must clear it;
4. otherwise, when it has played out, a pause of ``pause_s``, and the next turn (2).

A turn the model does not answer within ``reply_timeout_s`` is counted and the caller speaks
again. Every duration is drawn uniformly from its (low, high) by the call's own seeded RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

__all__ = ["Caller", "Phase", "TurnShape"]

Span = tuple[float, float]


@dataclass(frozen=True, slots=True)
class TurnShape:
    first_pause_s: Span = (0.2, 3.0)
    speech_s: Span = (1.0, 4.0)
    pause_s: Span = (0.3, 1.2)  # after a reply has played out
    barge_share: float = 0.25
    barge_after_s: Span = (0.6, 2.5)  # into the reply's playback
    barge_speech_s: Span = (0.8, 2.0)
    reply_timeout_s: float = 4.0  # after the caller stops talking

    def __post_init__(self) -> None:
        spans = [self.first_pause_s, self.speech_s, self.pause_s]
        spans += [self.barge_after_s, self.barge_speech_s]
        if any(not 0 <= low <= high for low, high in spans):
            raise ValueError("each span is (low, high) with 0 ≤ low ≤ high")
        if not 0 <= self.barge_share <= 1:
            raise ValueError("barge_share is a fraction, 0..1")


class Phase(Enum):
    PAUSE = "pause"  # quiet until ``until``; then talk (or listen, if audio came meanwhile)
    SPEAK = "speak"  # talking until ``until``
    AWAIT = "await"  # quiet, waiting for the reply's first audio until ``until``
    LISTEN = "listen"  # quiet, the reply playing; barge in at ``barge_at`` if set


class Caller:
    """One caller's script. ``speech(now, playing)`` each frame says whether it is speech;
    ``reply_started(now)`` tells it a reply's first audio arrived."""

    def __init__(self, shape: TurnShape, rng: random.Random, now: float) -> None:
        self.shape = shape
        self.rng = rng
        self.phase = Phase.PAUSE
        self.until = now + self._draw(shape.first_pause_s)
        self.barge_at: float | None = None
        self.turns = 0  # speech turns started, barge-ins included
        self.barge_ins: list[float] = []  # when each barge-in's first speech frame went
        self.unanswered = 0

    def _draw(self, span: Span) -> float:
        return self.rng.uniform(*span)

    def _speak(self, now: float, span: Span) -> None:
        self.phase, self.until, self.barge_at = Phase.SPEAK, now + self._draw(span), None
        self.turns += 1

    def _pause(self, now: float) -> None:
        self.phase, self.until, self.barge_at = (
            Phase.PAUSE,
            now + self._draw(self.shape.pause_s),
            None,
        )

    def reply_started(self, now: float) -> None:
        """A reply's first audio reached the caller."""
        if self.phase is Phase.AWAIT:
            self.phase = Phase.LISTEN
            if self.rng.random() < self.shape.barge_share:
                self.barge_at = now + self._draw(self.shape.barge_after_s)

    def speech(self, now: float, playing: bool) -> bool:
        """Whether the frame sent at ``now`` is speech; ``playing``: reply audio is playing."""
        phase = self.phase
        if phase is Phase.SPEAK:
            if now < self.until:
                return True
            self.phase, self.until = Phase.AWAIT, now + self.shape.reply_timeout_s
            return False
        if phase is Phase.AWAIT:
            if now >= self.until:
                self.unanswered += 1
                self._speak(now, self.shape.speech_s)
                return True
            return False
        if phase is Phase.LISTEN:
            if self.barge_at is not None and now >= self.barge_at and playing:
                self.barge_ins.append(now)
                self._speak(now, self.shape.barge_speech_s)
                return True
            if not playing:
                self._pause(now)
            return False
        # PAUSE
        if now < self.until:
            return False
        if playing:  # more audio came while pausing: listen to it out
            self.phase, self.barge_at = Phase.LISTEN, None
            return False
        self._speak(now, self.shape.speech_s)
        return True
