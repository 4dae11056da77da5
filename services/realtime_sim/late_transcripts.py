"""Caller transcripts that arrive late (--late-transcripts).

On the real server input transcription runs beside the model and may finish after the reply.
A held transcription event waits for the next response to start and is sent right after that
response's ``response.done``. If a later batch of other events comes before any response
starts, the transcript goes out at the end of that batch instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HeldTranscripts"]

Event = dict[str, Any]


@dataclass
class _Held:
    event: Event
    response_id: str | None = None  # the response it waits for, once one has started
    fresh: bool = True  # held during the batch being built: not sent with that batch


class HeldTranscripts:
    def __init__(self) -> None:
        self._held: list[_Held] = []

    def hold(self, event: Event) -> None:
        self._held.append(_Held(event))

    def response_started(self, response_id: str) -> None:
        """Every transcript not yet waiting for a response waits for this one."""
        for held in self._held:
            if held.response_id is None:
                held.response_id = response_id

    def after_done(self, response_id: str) -> list[Event]:
        """The transcripts to send right after ``response_id``'s ``response.done``."""
        due = [h.event for h in self._held if h.response_id == response_id]
        self._held = [h for h in self._held if h.response_id != response_id]
        return due

    def flush(self, batch: list[Event]) -> list[Event]:
        """``batch`` plus the transcripts that waited for no response since an earlier batch;
        call it on every batch the session returns."""
        if batch:
            batch = batch + [h.event for h in self._held if self._due(h)]
            self._held = [h for h in self._held if not self._due(h)]
        for held in self._held:
            held.fresh = False
        return batch

    @staticmethod
    def _due(held: _Held) -> bool:
        return held.response_id is None and not held.fresh
