"""What the called party hears before being bridged: the TwiML of a ``<Number url>`` or
``<Sip url>`` (the "whisper"), read the way the simulated person lives it. Pure: no I/O.

Twilio documents that this document runs on the called party's leg once they answer and before
the two parties are connected, that it may ``<Say>`` or ``<Play>`` something to them or let them
decline with ``<Gather>`` and ``<Hangup>``, and that it must not ``<Dial>`` (error 13201). Which
other verbs it may hold is not settled by Twilio's docs: the simulator flags any other verb as a
problem and skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.call_sim.twiml import (
    Dial,
    Hangup,
    Pause,
    Reject,
    Say,
    TwimlDocument,
    UnknownVerb,
    verb_names,
)

__all__ = ["CANNOT_DIAL_FROM_DIAL", "WhisperOutcome", "read_whisper"]

CANNOT_DIAL_FROM_DIAL: Final = 13201  # "Dial: Cannot Dial out from a Dial Call Segment"
_PLAYED_NOTHING: Final = ("Play", "Gather")  # documented, but the simulator cannot play them


@dataclass(frozen=True, slots=True)
class WhisperOutcome:
    heard: tuple[str, ...]  # the text of each <Say> the person heard, in order
    declined: bool  # a <Hangup> (or <Reject>): the person hung up before being bridged
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def read_whisper(document: TwimlDocument) -> WhisperOutcome:
    """Play the called party's document: what they heard, and whether they declined."""
    heard: list[str] = []
    problems = list(document.problems)
    notes: list[str] = []
    for verb, name in zip(document.verbs, verb_names(document), strict=True):
        if isinstance(verb, Say):
            heard.append(verb.text)
        elif isinstance(verb, Hangup):
            return WhisperOutcome(tuple(heard), True, tuple(problems), tuple(notes))
        elif isinstance(verb, Reject):
            problems.append(
                "<Reject> in the called party's document: the call is already answered; "
                "the simulator reads it as <Hangup>"
            )
            return WhisperOutcome(tuple(heard), True, tuple(problems), tuple(notes))
        elif isinstance(verb, Pause):
            pass  # takes no time in the simulator, as in the caller's documents
        elif isinstance(verb, Dial):
            problems.append(
                f"<Dial> in the called party's document: Twilio error {CANNOT_DIAL_FROM_DIAL} "
                "(cannot Dial out from a Dial call segment)"
            )
        elif isinstance(verb, UnknownVerb) and verb.name in _PLAYED_NOTHING:
            notes.append(f"the simulator cannot play <{verb.name}> to the called party: skipped")
        else:
            problems.append(
                f"<{name}> in the called party's document: Twilio documents only <Say>, "
                "<Play>, <Gather> and <Hangup> there; skipped"
            )
    return WhisperOutcome(tuple(heard), False, tuple(problems), tuple(notes))
