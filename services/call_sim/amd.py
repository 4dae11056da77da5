"""Answering machine detection as Twilio documents it, played against a scripted party. Pure: no
I/O, no clock.

https://www.twilio.com/docs/voice/answering-machine-detection: ``MachineDetection=Enable``
answers as soon as the party is identified (``human``, ``machine_start``, ``fax``, ``unknown``);
``DetectMessageEnd`` answers at once for a person or a fax but waits for the end of a machine's
greeting (``machine_end_beep``, ``machine_end_silence``, ``machine_end_other``). Initial silence
longer than ``MachineDetectionSilenceTimeout`` and anything undecided after
``MachineDetectionTimeout`` is ``unknown``. ``plan_verdict`` says which value, and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "AMD_MODES",
    "AMD_RANGES",
    "ANSWER_KINDS",
    "AmdMode",
    "AmdSettings",
    "AnswerKind",
    "AnsweredBy",
    "Verdict",
    "plan_verdict",
]

AmdMode = Literal["Enable", "DetectMessageEnd"]
AMD_MODES: Final[tuple[str, ...]] = get_args(AmdMode)
AnsweredBy = Literal[
    "human",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
]
# Who (or what) picks up: a person; an answering machine whose greeting ends in a beep, in
# silence, or in something else; a fax; or a line that stays silent.
AnswerKind = Literal["human", "machine", "machine-silence", "machine-other", "fax", "silence"]
ANSWER_KINDS: Final[tuple[str, ...]] = get_args(AnswerKind)
# The tuning parameters: (lowest, highest, default), from the <Number> page's attribute table
# (https://www.twilio.com/docs/voice/twiml/number); the REST API takes the same values.
AMD_RANGES: Final[dict[str, tuple[int, int, int]]] = {
    "machineDetectionTimeout": (3, 60, 30),  # seconds
    "machineDetectionSpeechThreshold": (1000, 6000, 2400),  # ms
    "machineDetectionSpeechEndThreshold": (500, 5000, 1200),  # ms
    "machineDetectionSilenceTimeout": (2000, 10000, 5000),  # ms
}


def _default(name: str) -> int:
    return AMD_RANGES[name][2]


@dataclass(frozen=True, slots=True)
class AmdSettings:
    mode: AmdMode
    timeout_s: int = _default("machineDetectionTimeout")
    speech_threshold_ms: int = _default("machineDetectionSpeechThreshold")
    speech_end_threshold_ms: int = _default("machineDetectionSpeechEndThreshold")
    silence_timeout_ms: int = _default("machineDetectionSilenceTimeout")


@dataclass(frozen=True, slots=True)
class Verdict:
    answered_by: AnsweredBy
    at_s: float  # after the answer: MachineDetectionDuration is this in ms

    @property
    def duration_ms(self) -> int:
        return round(self.at_s * 1000)


def plan_verdict(
    kind: AnswerKind,
    settings: AmdSettings,
    *,
    detect_s: float,
    greeting_s: float,
    beep_s: float,
) -> Verdict:
    """What AMD reports for ``kind`` and when (seconds after the answer).

    ``detect_s``: how long the engine takes to tell a person, a machine or a fax apart (the
    simulator does not listen: the party is scripted). ``greeting_s``: a machine's greeting;
    ``beep_s``: its beep. With DetectMessageEnd a machine's verdict comes at the end of the
    greeting: after the beep, or ``speech_end_threshold_ms`` of silence or other sound after it.
    """
    verdict: Verdict
    if kind == "silence":
        verdict = Verdict("unknown", settings.silence_timeout_ms / 1000)
    elif kind == "human":
        verdict = Verdict("human", detect_s)
    elif kind == "fax":
        verdict = Verdict("fax", detect_s)
    elif settings.mode == "Enable":
        verdict = Verdict("machine_start", detect_s)
    elif kind == "machine":
        verdict = Verdict("machine_end_beep", max(detect_s, greeting_s + beep_s))
    else:
        end = greeting_s + settings.speech_end_threshold_ms / 1000
        answered_by: AnsweredBy = (
            "machine_end_silence" if kind == "machine-silence" else "machine_end_other"
        )
        verdict = Verdict(answered_by, max(detect_s, end))
    if verdict.at_s > settings.timeout_s:
        return Verdict("unknown", float(settings.timeout_s))
    return verdict
