"""What Twilio does when a ``<Connect><Stream>`` socket ends. Pure: no I/O.

Documented: when *the server* closes the WebSocket (a close frame, whatever its code), the
``<Connect>`` verb ends and the call goes on with its ``action`` URL or the next verb, e.g. a
``<Redirect>``. An abrupt drop (the TCP connection gone without a close frame: an edge killed, a
network fault) is documented only as error 31903, "Stream - WebSocket - Connection Broken
Pipe"; whether the call then goes on is not. ``AbruptDrop`` picks a reading: ``"end"`` (the
conservative one, the default: the call ends) or ``"continue"`` (as a clean close).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, get_args

__all__ = [
    "ABRUPT_DROP_MODES",
    "BROKEN_PIPE",
    "AbruptDrop",
    "AfterStream",
    "StreamOutcome",
    "after_stream",
]

AbruptDrop = Literal["end", "continue"]
ABRUPT_DROP_MODES: Final[tuple[str, ...]] = get_args(AbruptDrop)
BROKEN_PIPE: Final = 31903  # Twilio's error code for a stream socket dropped by the server


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How one stream ended. ``closed_by``: "caller" (we sent stop / closed) or "edge" (the
    edge closed or vanished); ``close_frame``: a close frame came from the edge."""

    closed_by: str
    close_code: int | None
    close_frame: bool = True

    @property
    def abrupt(self) -> bool:
        """The edge went away without a close frame (Twilio's 31903)."""
        return self.closed_by == "edge" and not self.close_frame


class AfterStream(Enum):
    HUNG_UP = "hung_up"  # the caller ended the call
    NEXT_VERB = "next_verb"  # <Connect action> or the verb after </Connect>
    CALL_ENDS = "call_ends"  # an abrupt drop, read as the end of the call


def after_stream(outcome: StreamOutcome, abrupt_drop: AbruptDrop) -> AfterStream:
    """What the call does next once ``outcome``'s stream is over."""
    if outcome.closed_by == "caller":
        return AfterStream.HUNG_UP
    if outcome.abrupt and abrupt_drop == "end":
        return AfterStream.CALL_ENDS
    return AfterStream.NEXT_VERB
