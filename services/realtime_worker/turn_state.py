"""Conversation decisions of one call, sans I/O: barge-in, caps, and ending after a goodbye.

The call session feeds these plain functions and classes what it knows (playback, response
state, usage, clocks) and carries out what they decide; they never touch a socket or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.realtime_worker.playback import ItemPlayback

__all__ = [
    "BargeIn",
    "EndReason",
    "Ending",
    "cap_reached",
    "decide_barge_in",
    "heard_text",
]


@dataclass(frozen=True, slots=True)
class BargeIn:
    """Cut the reply short: clear it at the caller, truncate the item to what was heard."""

    item_id: str
    response_id: str
    audio_end_ms: int  # what the caller heard: the truncate point
    generated_ms: int  # what the model had produced (and the worker published) by then


def decide_barge_in(
    item: ItemPlayback | None, now: float, *, enabled: bool, min_heard_ms: int
) -> BargeIn | None:
    """A barge-in when the caller starts speaking at ``now``, or None.

    Only while a reply is playing, and only once at least ``min_heard_ms`` of it was heard (a
    cough at the very start of a reply does not cut it).
    """
    if not enabled or item is None or not item.playing(now):
        return None
    heard = item.heard_ms(now)
    if heard < min_heard_ms:
        return None
    return BargeIn(item.item_id, item.response_id, heard, item.sent_ms)


def heard_text(text: str, heard_ms: int, generated_ms: int) -> str:
    """The part of an interrupted reply's transcript the caller heard, estimated by the share
    of its audio played, cut at a word boundary and marked with an ellipsis."""
    if generated_ms <= 0 or heard_ms >= generated_ms:
        return text
    words = text.split()
    kept = words[: round(len(words) * heard_ms / generated_ms)]
    return " ".join(kept) + " …" if kept else ""


class EndReason(StrEnum):
    """Why the worker ends a call after a goodbye (also ``end_reason`` on the record)."""

    MODEL = "model_ended"
    MAX_DURATION = "max_duration"
    MAX_TOKENS = "max_tokens"
    TRANSFER = "transfer"  # the model handed the call to a person
    VOICEMAIL = "voicemail"  # an answering machine took the agent's message
    NO_PERSON = "no_person"  # a machine, a fax or nobody answered: hung up without a word


def cap_reached(
    elapsed_s: float, tokens: int, *, max_duration_s: float, max_tokens: int
) -> EndReason | None:
    """The cap the call has reached, if any; a cap of 0 is off."""
    if max_duration_s > 0 and elapsed_s >= max_duration_s:
        return EndReason.MAX_DURATION
    if max_tokens > 0 and tokens >= max_tokens:
        return EndReason.MAX_TOKENS
    return None


@dataclass
class Ending:
    """The call is ending: the model says goodbye, and once that has been heard (or at the
    deadline, whatever happens) the worker hangs up."""

    reason: EndReason
    deadline: float
    goodbye_pending: bool  # a goodbye response was asked for and has not finished yet
    cue: str = ""  # what the goodbye response is asked to say (asked again on a new session)

    def ready(self, *, response_active: bool, all_heard: bool, now: float) -> bool:
        """Whether to hang up now."""
        if now >= self.deadline:
            return True
        return not self.goodbye_pending and not response_active and all_heard
