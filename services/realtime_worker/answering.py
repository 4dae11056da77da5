"""Who answered an outbound call, and what the agent does about it. Pure: no I/O.

With machine detection on, Twilio connects the stream the moment the call is answered and
reports later, in a separate callback, whether a person, an answering machine or a fax picked
up (``AnsweredBy``). Until then the model hears nothing and says nothing: a person is greeted,
a machine gets the agent's ``voicemail`` policy (hang up, or leave ``voicemail_message`` after
the beep), a fax or an undecided line the agent's ``fax_or_unknown`` policy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from shared.outbound_records import MACHINE_DETECTION_TIMEOUT_S

__all__ = ["VERDICT_WAIT_S", "AnswerAction", "answer_action", "voicemail_cue"]

#: How long a worker waits for the verdict after the stream starts before acting as if Twilio
#: had said "unknown" (a lost callback must not leave the line silent for good).
VERDICT_WAIT_S: Final = MACHINE_DETECTION_TIMEOUT_S + 5.0


class AnswerAction(StrEnum):
    GREET = "greet"
    HANGUP = "hangup"
    VOICEMAIL = "voicemail"


def answer_action(answered_by: str, *, voicemail: str, fax_or_unknown: str) -> AnswerAction:
    """What to do for Twilio's ``answered_by``, given the agent's two policies."""
    if answered_by == "human":
        return AnswerAction.GREET
    if answered_by.startswith("machine"):
        leave_message = voicemail == "message"
    elif fax_or_unknown == "voicemail":  # fax, unknown, or a value Twilio adds later
        leave_message = voicemail == "message"
    else:
        return AnswerAction.GREET if fax_or_unknown == "greet" else AnswerAction.HANGUP
    return AnswerAction.VOICEMAIL if leave_message else AnswerAction.HANGUP


def voicemail_cue(words: str) -> str:
    """The response instruction that makes the model leave ``words`` as the message."""
    return (
        "You reached an answering machine; its beep has sounded. Leave this message, saying "
        f'exactly this, and nothing more: "{words}"'
    )
