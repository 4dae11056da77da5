"""Who answers a call the REST API created: a scripted party per destination number. Pure: no
I/O, no clock.

``human`` speaks the caller audio, then holds in silence; ``machine`` plays a greeting (the first
``greeting_s`` of the caller audio) ending in a beep, then records in silence;
``machine-silence`` and ``machine-other`` are machines whose greeting ends in silence or in some
other sound; ``fax`` sends CNG tones; ``silence`` picks up and says nothing. ``no-answer``,
``busy`` and ``failed`` never pick up. ``party_frames`` is what the party sends from the moment
it answers, 20 ms a frame; AMD's verdict for it comes from ``amd.plan_verdict``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np

from services.call_sim.amd import AnswerKind
from services.call_sim.callee import Callee
from services.call_sim.caller_audio import caller_frames
from shared.audio import SAMPLE_RATE, linear_to_ulaw, silence

__all__ = [
    "PARTY_KINDS",
    "PartyKind",
    "PartySettings",
    "answer_kind",
    "callee_of",
    "party_frames",
]

PartyKind = Literal[
    "human",
    "machine",
    "machine-silence",
    "machine-other",
    "fax",
    "silence",
    "no-answer",
    "busy",
    "failed",
]
PARTY_KINDS: Final[tuple[str, ...]] = get_args(PartyKind)
_NEVER_ANSWER: Final = ("no-answer", "busy", "failed")
BEEP_HZ: Final = 1000.0  # a typical voicemail beep
CNG_HZ: Final = 1100.0  # a calling fax: 0.5 s of 1100 Hz every 3.5 s (ITU-T T.30)
CNG_ON_S: Final = 0.5
CNG_PERIOD_S: Final = 3.5
TONE_DBFS: Final = -12.0


@dataclass(frozen=True, slots=True)
class PartySettings:
    """Timings of the scripted parties (seconds)."""

    ring_s: float = 1.0  # before it answers, or (no-answer) before Twilio gives up
    greeting_s: float = 2.0  # a machine's greeting
    beep_s: float = 0.5  # its beep (or other closing sound)
    detect_s: float = 1.0  # how long AMD takes to tell a person, a machine or a fax apart
    hold_s: float = 1.0  # silence after speaking (a person, a machine recording), or all of it

    def __post_init__(self) -> None:
        for name in ("ring_s", "greeting_s", "beep_s", "detect_s", "hold_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


def callee_of(kind: PartyKind) -> Callee:
    """What the phone does, in ``callee.plan_ring``'s terms."""
    if kind == "no-answer" or kind == "busy" or kind == "failed":
        return kind
    return "answer"


def answer_kind(kind: PartyKind) -> AnswerKind:
    """Who picked up, in ``amd.plan_verdict``'s terms (only for a party that answers)."""
    if kind == "no-answer" or kind == "busy" or kind == "failed":
        raise ValueError(f"a {kind} party never answers")
    return kind


def _tone(hz: float, seconds: float) -> bytes:
    n = round(seconds * SAMPLE_RATE)
    amplitude = 32767 * 10 ** (TONE_DBFS / 20)
    return linear_to_ulaw(amplitude * np.sin(2 * math.pi * hz * np.arange(n) / SAMPLE_RATE))


def _noise(seconds: float) -> bytes:
    """Not a beep: deterministic noise (a click, music, a voice cut off...)."""
    rng = random.Random(0)
    amplitude = 32767 * 10 ** (TONE_DBFS / 20)
    n = round(seconds * SAMPLE_RATE)
    return linear_to_ulaw([rng.uniform(-amplitude, amplitude) for _ in range(n)])


def _fit(audio: bytes, seconds: float) -> bytes:
    """``audio`` cut or padded with silence to ``seconds``."""
    n = round(seconds * SAMPLE_RATE)
    return audio[:n] + silence(max(0, n - len(audio)))


def party_frames(kind: PartyKind, caller_audio: bytes, settings: PartySettings) -> list[bytes]:
    """The party's 160-byte frames from the moment it answers; empty if it never does."""
    if kind in _NEVER_ANSWER:
        return []
    if kind == "human":
        return caller_frames(caller_audio, settings.hold_s)
    if kind == "silence":
        return caller_frames(b"", settings.hold_s)
    if kind == "fax":
        total = settings.greeting_s + settings.hold_s
        period = _fit(_tone(CNG_HZ, CNG_ON_S), CNG_PERIOD_S)
        repeats = max(1, math.ceil(total / CNG_PERIOD_S))
        return caller_frames(_fit(period * repeats, total), 0.0)
    greeting = _fit(caller_audio, settings.greeting_s)
    if kind == "machine":
        greeting += _tone(BEEP_HZ, settings.beep_s)
    elif kind == "machine-other":
        greeting += _noise(settings.beep_s)
    return caller_frames(greeting, settings.hold_s)
