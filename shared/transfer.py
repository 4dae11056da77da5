"""What a transfer's dial outcome means for the call, and what the model is told when the person
could not be reached. Pure; the edge applies it (``records.return_from_transfer``).

Twilio reports the outcome of ``<Dial>`` in ``DialCallStatus`` on the ``action`` request
(https://www.twilio.com/docs/voice/twiml/dial#action): ``completed`` or ``answered`` when the
person answered; ``busy``, ``no-answer``, ``failed`` or ``canceled`` when they were not
reached. The parent call's own ``CallStatus`` says whether the caller is still there.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CALLER_GONE", "REACHED", "UNREACHED", "caller_still_there", "failure_notice"]

REACHED: Final = frozenset({"completed", "answered"})
UNREACHED: Final = frozenset({"busy", "no-answer", "failed", "canceled"})
CALLER_GONE: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

_WHY: Final = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call could not be placed",
    "canceled": "the call was canceled",
}


def caller_still_there(call_status: str) -> bool:
    """Whether the parent call (the caller) is still up, by its ``CallStatus``; an absent
    status counts as up (the action request is made for a call that goes on)."""
    return call_status not in CALLER_GONE


def failure_notice(target: str, dial_status: str) -> str:
    """The note the model finds at the end of the conversation when the caller is back."""
    why = _WHY.get(dial_status, f"the dial ended with status {dial_status!r}")
    return (
        f"The transfer to {target} did not go through: {why}. The caller is back on the line "
        "with you."
    )
