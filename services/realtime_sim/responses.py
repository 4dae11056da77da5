"""The state of one simulated session, and the life of its responses.

``SessionCore`` holds what every handler shares (ids, the session object, the conversation,
the record, the failure plan) and builds the event sequences of a response: created, streamed,
finished, cancelled, failed, or a whole function call. ``SimSession`` (behaviour.py) adds the
client-event handlers on top. Sans I/O, like the rest of the session.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from services.realtime_worker.openai_protocol import END_CALL  # the tool the worker declares
from shared.audio import BYTES_PER_MS

from . import server_events as body
from .config import BehaviourConfig
from .conversation import Conversation
from .failures import Close, FailurePlan, failed_status
from .faults import encode_delta
from .late_transcripts import HeldTranscripts
from .record import SessionRecord
from .reply import ReplyChunk, plan_reply
from .session_config import default_session
from .vad import EnergyVad

__all__ = ["END_CALL", "Event", "Kind", "Response", "SessionCore"]

Event = dict[str, Any]


class Kind(Enum):
    ECHO = "echo"
    REPLY = "reply"


@dataclass
class Response:
    id: str
    item_id: str
    kind: Kind
    chunks: deque[ReplyChunk]
    instructions: str  # what it is generated under: the session's, or response.create's
    metadata: dict[str, str] | None = None
    audio_bytes: int = 0
    transcript: str = ""
    cancel_reason: str | None = None  # set by response.cancel: the response.done is pending
    cancel_waited: bool = False  # the cancel delay has been handed to the server


class _Ids:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(5)
        self._count = 0

    def __call__(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self.tag}{self._count:05d}"


class SessionCore:
    """Shared state and the response builders; see ``SimSession`` for the public surface."""

    def __init__(
        self, config: BehaviourConfig, record: SessionRecord, model: str, serial: int = 1
    ) -> None:
        self.config = config
        self._record = record
        self._model = model
        self._ids = _Ids()
        self.session_id = f"sess_{self._ids.tag}"
        self._conversation_id = f"conv_{self._ids.tag}"
        self._session = default_session(self.session_id, model, config.failures.session_max_s)
        self._rng = random.Random(config.seed)
        self._vad = EnergyVad(config.vad)
        self._conversation = Conversation()
        self._plan = FailurePlan(config.failures, serial)
        self._held = HeldTranscripts()
        self._response: Response | None = None
        self._heard = 0  # μ-law input bytes in the whole session
        self._close: Close | None = None  # asked for, not yet handed to the server
        self._closing = False  # a close was asked for: the session produces nothing more

    # --- helpers ---------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Event:
        return {"type": kind, "event_id": self._ids("event"), **fields}

    def _error(
        self, code: str, message: str, caused_by: str | None, param: str | None = None
    ) -> Event:
        return self._event("error", error=body.error_body(code, message, caused_by, param))

    def _reject(self, caused_by: str | None, message: str, code: str = "invalid_value") -> Event:
        self._record.invalid(message)
        return self._error(code, message, caused_by)

    def _close_with(self, close: Close) -> None:
        self._close, self._closing = close, True

    @property
    def _instructions(self) -> str:
        return str(self._session.get("instructions") or "")

    def _part(self, r: Response) -> Event:
        return {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}

    def _audio_delta(self, r: Response, audio: bytes, pcm: bytes | None = None) -> Event:
        """One delta of μ-law ``audio`` (``pcm``: the same audio as PCM16 24 kHz, sent as is)."""
        r.audio_bytes += len(audio)
        self._conversation.get(r.item_id).audio_bytes += len(audio)
        if pcm is not None:
            delta = base64.b64encode(pcm).decode("ascii")
        else:
            delta = encode_delta(self.config.fault, audio, pcm16=self.config.serves_pcm16)
        return self._event("response.output_audio.delta", **self._part(r), delta=delta)

    def _usage_of(self, output_audio_ms: int, output_chars: int, instructions: str) -> Event:
        block = body.usage(
            self._heard // BYTES_PER_MS, len(instructions), output_audio_ms, output_chars
        )
        self._record.usage.append(block)
        return block

    def _output_audio(self) -> Event:
        output = (self._session.get("audio") or {}).get("output") or {}
        return {"format": output.get("format"), "voice": output.get("voice")}

    # --- responses -------------------------------------------------------------------------

    def _created(
        self, response_id: str, instructions: str, metadata: dict[str, str] | None = None
    ) -> list[Event]:
        """``response.created`` (and ``rate_limits.updated`` when asked for) of a new response."""
        self._record.response_instructions.append(instructions)
        self._held.response_started(response_id)
        resource = body.response_resource(
            response_id,
            self._conversation_id,
            "in_progress",
            self._output_audio(),
            metadata=metadata,
        )
        events = [self._event("response.created", response=resource)]
        limits = self._plan.rate_limits(sum(u["total_tokens"] for u in self._record.usage))
        if limits is not None:
            events.append(self._event("rate_limits.updated", rate_limits=limits))
        return events

    def _done(self, resource: Event) -> list[Event]:
        """``response.done``, then the late transcripts that waited for it."""
        return [
            self._event("response.done", response=resource),
            *self._held.after_done(resource["id"]),
        ]

    def _failed(self, instructions: str, metadata: dict[str, str] | None) -> list[Event]:
        """A response that fails at once (--fail-responses): created, then done as failed."""
        response_id = self._ids("resp")
        created = self._created(response_id, instructions, metadata)
        resource = body.response_resource(
            response_id,
            self._conversation_id,
            "failed",
            self._output_audio(),
            usage_block=self._usage_of(0, 0, instructions),
            details=failed_status(self.session_id),
            metadata=metadata,
        )
        return [*created, *self._done(resource)]

    def _start_response(
        self, kind: Kind, instructions: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Event]:
        instructions = self._instructions if instructions is None else instructions
        if self._plan.response_started():
            return self._failed(instructions, metadata)
        cfg = self.config
        chunks = deque(
            plan_reply(
                cfg.reply_audio, cfg.reply_text, self._rng, cfg.min_delta_bytes, cfg.max_delta_bytes
            )
            if kind is Kind.REPLY
            else []
        )
        r = Response(self._ids("resp"), self._ids("item"), kind, chunks, instructions, metadata)
        self._response = r
        item = body.assistant_item(r.item_id, "in_progress", None)
        previous = self._conversation.add(item)
        return [
            *self._created(r.id, instructions, metadata),
            self._event("response.output_item.added", response_id=r.id, output_index=0, item=item),
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event(
                "response.content_part.added",
                **self._part(r),
                part={"type": "audio", "transcript": ""},
            ),
        ]

    def _end(self, r: Response, status: str, reason: str | None) -> list[Event]:
        self._response = None
        item_status = "completed" if status == "completed" else "incomplete"
        item = body.assistant_item(r.item_id, item_status, r.transcript)
        self._conversation.get(r.item_id).body = item
        resource = body.response_resource(
            r.id,
            self._conversation_id,
            status,
            self._output_audio(),
            output=[item],
            reason=reason,
            usage_block=self._usage_of(
                r.audio_bytes // BYTES_PER_MS, len(r.transcript), r.instructions
            ),
            metadata=r.metadata,
        )
        return [
            self._event("response.output_item.done", response_id=r.id, output_index=0, item=item),
            self._event("conversation.item.done", item=item),
            *self._done(resource),
        ]

    def _finish(self, r: Response) -> list[Event]:
        part = self._part(r)
        return [
            self._event("response.output_audio.done", **part),
            self._event("response.output_audio_transcript.done", **part, transcript=r.transcript),
            self._event(
                "response.content_part.done",
                **part,
                part={"type": "audio", "transcript": r.transcript},
            ),
            *self._end(r, "completed", None),
        ]

    def _cancel_now(self, reason: str) -> list[Event]:
        """End the active response at once (a VAD barge-in); one already being cancelled by
        the client ends when its delay is up."""
        r = self._response
        if r is None or r.cancel_reason is not None:
            return []
        return self._end(r, "cancelled", reason)

    def _call_function(self, name: str, arguments: str) -> list[Event]:
        """A whole response that calls the function ``name`` (no audio), as the real server
        streams it."""
        instructions = self._instructions
        if self._plan.response_started():
            return self._failed(instructions, None)
        response_id, item_id, call_id = self._ids("resp"), self._ids("item"), self._ids("call")
        item = body.function_call_item(item_id, call_id, name, "", "in_progress")
        done = body.function_call_item(item_id, call_id, name, arguments, "completed")
        previous = self._conversation.add(done)
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        created = self._created(response_id, instructions)
        resource = body.response_resource(
            response_id,
            self._conversation_id,
            "completed",
            self._output_audio(),
            output=[done],
            usage_block=self._usage_of(0, len(arguments), instructions),
        )
        self._record.function_calls.append(name)
        return [
            *created,
            self._event(
                "response.output_item.added", response_id=response_id, output_index=0, item=item
            ),
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event(
                "response.function_call_arguments.delta", **where, call_id=call_id, delta=arguments
            ),
            self._event(
                "response.function_call_arguments.done",
                **where,
                call_id=call_id,
                name=name,
                arguments=arguments,
            ),
            self._event(
                "response.output_item.done", response_id=response_id, output_index=0, item=done
            ),
            self._event("conversation.item.done", previous_item_id=previous, item=done),
            *self._done(resource),
        ]
