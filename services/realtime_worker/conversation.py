"""The conversation of one call, sans I/O: the model's responses, what the caller heard of
them, the turns, the tokens used, and the ending.

It outlives every Realtime session of the call (a rollover or reconnect keeps it); what only a
session knows lives on that session (``live_session.py``). The call's relays feed it what they
see and carry out what it returns: turn writes to store, marks to publish, calls to answer;
it never touches a socket, Redis, a clock or a logger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.playback import PlaybackTracker
from services.realtime_worker.transcript import Transcript, Write
from services.realtime_worker.turn_state import BargeIn, Ending, EndReason, heard_text
from shared.audio import bytes_to_ms

__all__ = ["Conversation", "Finished", "Reply"]


@dataclass
class Reply:
    """What one model response produced so far."""

    item_id: str | None = None  # the reply item (its audio and transcript)
    transcript: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    heard_ms: int | None = None  # set when the caller cut it short: what was heard

    @property
    def text(self) -> str:
        return "".join(self.transcript).strip()


@dataclass(frozen=True, slots=True)
class Finished:
    """A response that ended (``response.done``), and what follows from it."""

    reply: Reply
    text: str  # what the caller heard of it (all of it, unless cut short)
    generated_ms: int
    turn: Write  # its turn, to store
    marks: list[str]  # marks for its items' unmarked audio, to publish
    calls: list[rt.FunctionCall]  # its function calls not answered yet
    while_ending: bool  # the call was ending already: this was its goodbye


class Conversation:
    def __init__(self, transcript: Transcript | None = None) -> None:
        self.transcript = transcript if transcript is not None else Transcript()
        self.playback = PlaybackTracker()
        self.replies: dict[str, Reply] = {}
        #: The current session's response between response.created and response.done.
        self.active_response: str | None = None
        self.usage = rt.TokenUsage()
        self.ending: Ending | None = None
        self.barge_ins = 0
        self._answered: set[str] = set()

    def reply(self, response_id: str) -> Reply:
        reply = self.replies.get(response_id)
        if reply is None:
            reply = self.replies[response_id] = Reply()
        return reply

    @property
    def idle(self) -> bool:
        """No response under way."""
        return not self.replies and self.active_response is None

    # --- audio ------------------------------------------------------------------------------

    def audio_published(self, item_id: str, response_id: str, size: int, now: float) -> str | None:
        """``size`` bytes of the reply were published for the caller; the mark to follow
        them, when one is due."""
        reply = self.reply(response_id)
        reply.item_id = item_id
        reply.audio_bytes += size
        return self.playback.audio_sent(item_id, response_id, size, now)

    # --- responses ----------------------------------------------------------------------------

    def created(self, response_id: str) -> None:
        self.active_response = response_id

    def done(self, event: rt.ResponseDone, now_ms: int) -> Finished:
        """``response.done``: the response's turn, closing marks and calls to answer."""
        reply = self.replies.pop(event.response_id, Reply())
        if self.active_response == event.response_id:
            self.active_response = None
        generated_ms = bytes_to_ms(reply.audio_bytes)
        text = reply.text
        if reply.heard_ms is not None:
            text = heard_text(text, reply.heard_ms, generated_ms)
        self.usage += event.token_usage
        calls = [call for call in event.function_calls if call.call_id not in self._answered]
        self._answered.update(call.call_id for call in calls)
        return Finished(
            reply=reply,
            text=text,
            generated_ms=generated_ms,
            turn=self.transcript.fill(reply.item_id, "assistant", text, now_ms),
            marks=self.playback.close_response(event.response_id),
            calls=calls,
            while_ending=self.ending is not None,
        )

    def session_replaced(self, now_ms: int) -> list[Write]:
        """The session was replaced: the responses it left unfinished keep what they said,
        texts it will never send are given up, and nothing is active any more."""
        writes = [
            self.transcript.fill(reply.item_id, "assistant", reply.text, now_ms)
            for reply in self.replies.values()
        ]
        self.replies.clear()
        writes += [self.transcript.abandon_pending(role) for role in ("assistant", "user")]
        self.active_response = None
        return writes

    # --- barge-in -----------------------------------------------------------------------------

    def barge_in(self, decision: BargeIn) -> Write:
        """The caller cut a reply short: late audio of it is dropped from now on, and only
        what was heard stays in its turn (now, or when its response ends)."""
        item = self.playback.get(decision.item_id)
        if item is not None:
            item.interrupted = True
        self.barge_ins += 1
        reply = self.replies.get(decision.response_id)
        if reply is not None:
            reply.heard_ms = decision.audio_end_ms
            return None
        text = self.transcript.text_of(decision.item_id)
        if text is None:
            return None
        cut = heard_text(text, decision.audio_end_ms, decision.generated_ms)
        return self.transcript.amend(decision.item_id, cut)

    # --- the ending ---------------------------------------------------------------------------

    def begin_ending(
        self, reason: EndReason, deadline: float, *, goodbye: bool, cue: str = ""
    ) -> bool:
        """Start ending the call (``goodbye``: a goodbye response, asked for with ``cue``);
        False if it is ending already."""
        if self.ending is not None:
            return False
        self.ending = Ending(reason, deadline, goodbye, cue)
        return True

    def goodbye_heard(self) -> None:
        """The response asked for as the goodbye has ended."""
        if self.ending is not None:
            self.ending.goodbye_pending = False

    def ready_to_hang_up(self, now: float) -> bool:
        """The call is ending and its goodbye is over and heard to its last byte (or the
        wrap-up time is up)."""
        ending = self.ending
        return ending is not None and ending.ready(
            response_active=self.active_response is not None,
            all_heard=self.playback.all_heard(),
            now=now,
        )
