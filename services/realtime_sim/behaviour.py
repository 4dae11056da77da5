"""One simulated Realtime session, sans I/O: client frames in, server events out.

``SimSession.receive`` handles one client frame and returns the events to send, in order.
A canned reply is paced by the caller of ``next_reply_step``, which returns the next batch of
events and how long to wait before asking again; ``None`` means no reply is streaming.
Nothing here touches a socket, a clock or a logger, so tests can drive it directly.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Final

from shared.audio import BYTES_PER_MS, SAMPLE_RATE

from . import server_events as body
from .client_events import validate_client_event
from .conversation import Conversation, ItemError
from .faults import Fault, encode_delta, forced_pcm16, pcm16_24k_to_ulaw, session_after_update
from .record import SessionRecord
from .reply import (
    DEFAULT_CALLER_TRANSCRIPT,
    DEFAULT_REPLY_TEXT,
    ReplyChunk,
    default_reply_audio,
    plan_reply,
)
from .session_config import PCMU, default_session, merge_session, session_formats, turn_detection
from .vad import EnergyVad, SpeechStarted, SpeechStopped, VadSettings

__all__ = ["BehaviourConfig", "Event", "Mode", "SimSession", "Step"]

Event = dict[str, Any]
Step = tuple[list[Event], float]  # events to send now, seconds to wait before the next step

BETA_MESSAGE: Final = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)


class Mode(StrEnum):
    ECHO = "echo"  # every appended chunk comes straight back as one audio delta
    CONVERSATION = "conversation"  # VAD turns, answered with the canned reply


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    mode: Mode = Mode.CONVERSATION
    reply_audio: bytes = field(default_factory=default_reply_audio, repr=False)
    reply_text: str = DEFAULT_REPLY_TEXT
    caller_transcript: str = DEFAULT_CALLER_TRANSCRIPT
    speed: float = 4.0  # reply pacing, in multiples of real time
    seed: int = 0  # delta sizes
    vad: VadSettings = VadSettings()
    min_delta_bytes: int = 800
    max_delta_bytes: int = 4000
    fault: Fault = Fault.NONE  # misbehave on purpose (faults.py)
    # A Realtime-compatible backend without μ-law: its sessions stay audio/pcm 24 kHz
    # (REALTIME_AUDIO_FORMAT=pcm16 on the worker). Echo mode sends the PCM back unchanged.
    serves_pcm16: bool = False
    # From this caller turn on (0: never), answer by calling the session's end_call function
    # tool, if it declares one, instead of speaking: the model hanging up.
    end_call_after: int = 0
    # At the first caller turn, answer by calling this function tool of the session (if it
    # declares it) with these arguments (JSON text); the reply follows the function's output.
    call_tool: str | None = None
    tool_arguments: str = "{}"


class _Kind(Enum):
    ECHO = "echo"
    REPLY = "reply"


END_CALL: Final = "end_call"


@dataclass
class _Response:
    id: str
    item_id: str
    kind: _Kind
    chunks: deque[ReplyChunk]
    audio_bytes: int = 0
    transcript: str = ""


class _Ids:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(5)
        self._count = 0

    def __call__(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self.tag}{self._count:05d}"


class SimSession:
    """The protocol state of one connection. Feed it frames; send what it returns."""

    def __init__(self, config: BehaviourConfig, record: SessionRecord, model: str) -> None:
        self.config = config
        self._record = record
        self._ids = _Ids()
        self.session_id = f"sess_{self._ids.tag}"
        self._conversation_id = f"conv_{self._ids.tag}"
        self._session = default_session(self.session_id, model)
        self._rng = random.Random(config.seed)
        self._vad = EnergyVad(config.vad)
        self._conversation = Conversation()
        self._response: _Response | None = None
        self._speech_item: str | None = None  # the user item being spoken, from speech start
        self._buffered = 0  # input bytes since the last commit
        self._heard = 0  # input bytes in the whole session
        self._caller_turns = 0  # committed caller turns
        self._tool_called = False  # call_tool has been called
        self._handlers: dict[str, Callable[[Event], list[Event]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit_buffer,
            "input_audio_buffer.clear": self._clear_buffer,
            "output_audio_buffer.clear": self._output_clear,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }
        self._apply_session()

    # --- public surface --------------------------------------------------------------------

    @property
    def formats(self) -> tuple[str | None, str | None]:
        return session_formats(self._session)

    @property
    def pcmu(self) -> bool:
        return self.formats == (PCMU, PCMU)

    @property
    def supported(self) -> bool:
        """The session is in a format this server speaks: a faulty one, and one without
        μ-law, keep their sessions at PCM16 24 kHz whatever is asked."""
        return self.pcmu or self.config.fault.speaks_pcm16 or self.config.serves_pcm16

    @property
    def reply_pending(self) -> bool:
        """A canned reply is streaming: ``next_reply_step`` has work."""
        return self._response is not None and self._response.kind is _Kind.REPLY

    def open(self) -> list[Event]:
        """The first events of a session."""
        return [self._event("session.created", session=copy.deepcopy(self._session))]

    def refuse_beta(self) -> Event:
        """The error the real server sends a beta-shaped client before closing with 4000."""
        return self._error("beta_api_shape_disabled", BETA_MESSAGE, None)

    def receive(self, message: str | bytes) -> list[Event]:
        """Handle one client frame; invalid ones are answered with an ``error`` only."""
        if isinstance(message, bytes):
            return [self._reject(None, "binary frames are not supported: send JSON text")]
        try:
            obj = json.loads(message)
        except ValueError as exc:
            return [self._reject(None, f"Invalid JSON: {exc}", "invalid_json")]
        caused_by = obj.get("event_id") if isinstance(obj, dict) else None
        caused_by = caused_by if isinstance(caused_by, str) else None
        problems = validate_client_event(obj)
        if problems:
            kind = obj.get("type") if isinstance(obj, dict) else None
            code = "unknown_parameter" if problems[0].startswith("Unknown") else "invalid_value"
            return [self._reject(caused_by, f"{kind}: " + "; ".join(problems), code)]
        self._record.received(obj["type"])
        return self._handlers[obj["type"]](obj)

    def next_reply_step(self) -> Step | None:
        """The next batch of a streaming reply and the pause after it, or None."""
        r = self._response
        if r is None or r.kind is not _Kind.REPLY:
            return None
        if not r.chunks:
            return self._finish(r), 0.0
        chunk = r.chunks.popleft()
        events = [self._audio_delta(r, chunk.audio)] if chunk.audio else []
        if chunk.text:
            r.transcript += chunk.text
            events.append(
                self._event(
                    "response.output_audio_transcript.delta", **self._part(r), delta=chunk.text
                )
            )
        return events, len(chunk.audio) / SAMPLE_RATE / self.config.speed

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

    def _apply_session(self) -> None:
        fmt_in, fmt_out = self.formats
        self._record.session_formats = {"input": fmt_in, "output": fmt_out}
        turn = turn_detection(self._session) or {}
        self._vad.configure(
            int(turn.get("silence_duration_ms") or 500), int(turn.get("prefix_padding_ms") or 300)
        )

    def _part(self, r: _Response) -> Event:
        return {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}

    def _audio_delta(self, r: _Response, audio: bytes, pcm: bytes | None = None) -> Event:
        """One delta of μ-law ``audio`` (``pcm``: the same audio as PCM16 24 kHz, sent as is)."""
        r.audio_bytes += len(audio)
        self._conversation.get(r.item_id).audio_bytes += len(audio)
        if pcm is not None:
            delta = base64.b64encode(pcm).decode("ascii")
        else:
            delta = encode_delta(self.config.fault, audio, pcm16=self.config.serves_pcm16)
        return self._event("response.output_audio.delta", **self._part(r), delta=delta)

    def _usage(self, r: _Response) -> Event:
        return self._usage_of(r.audio_bytes // BYTES_PER_MS, len(r.transcript))

    def _usage_of(self, output_audio_ms: int, output_chars: int) -> Event:
        instructions = self._session.get("instructions") or ""
        block = body.usage(
            self._heard // BYTES_PER_MS, len(instructions), output_audio_ms, output_chars
        )
        self._record.usage.append(block)
        return block

    def _output_audio(self) -> Event:
        output = (self._session.get("audio") or {}).get("output") or {}
        return {"format": output.get("format"), "voice": output.get("voice")}

    # --- responses -------------------------------------------------------------------------

    def _start_response(self, kind: _Kind) -> list[Event]:
        cfg = self.config
        chunks = deque(
            plan_reply(
                cfg.reply_audio, cfg.reply_text, self._rng, cfg.min_delta_bytes, cfg.max_delta_bytes
            )
            if kind is _Kind.REPLY
            else []
        )
        r = self._response = _Response(self._ids("resp"), self._ids("item"), kind, chunks)
        item = body.assistant_item(r.item_id, "in_progress", None)
        previous = self._conversation.add(item)
        created = body.response_resource(
            r.id, self._conversation_id, "in_progress", self._output_audio()
        )
        return [
            self._event("response.created", response=created),
            self._event("response.output_item.added", response_id=r.id, output_index=0, item=item),
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event(
                "response.content_part.added",
                **self._part(r),
                part={"type": "audio", "transcript": ""},
            ),
        ]

    def _end(self, r: _Response, status: str, reason: str | None) -> tuple[Event, list[Event]]:
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
            usage_block=self._usage(r),
        )
        return item, [
            self._event("response.output_item.done", response_id=r.id, output_index=0, item=item),
            self._event("conversation.item.done", item=item),
            self._event("response.done", response=resource),
        ]

    def _finish(self, r: _Response) -> list[Event]:
        part = self._part(r)
        _, tail = self._end(r, "completed", None)
        return [
            self._event("response.output_audio.done", **part),
            self._event("response.output_audio_transcript.done", **part, transcript=r.transcript),
            self._event(
                "response.content_part.done",
                **part,
                part={"type": "audio", "transcript": r.transcript},
            ),
            *tail,
        ]

    def _cancel(self, reason: str) -> list[Event]:
        r = self._response
        return [] if r is None else self._end(r, "cancelled", reason)[1]

    # --- session ---------------------------------------------------------------------------

    def _session_update(self, event: Event) -> list[Event]:
        update, caused_by = event["session"], event.get("event_id")
        if update.get("type") != "realtime":
            message = (
                "This simulator serves realtime sessions only: session.type must be 'realtime'."
            )
            return [self._error("invalid_value", message, caused_by, "session.type")]
        merged = merge_session(self._session, update)
        self._session = session_after_update(self.config.fault, self._session, merged)
        if self.config.serves_pcm16:
            self._session = forced_pcm16(self._session)
        self._apply_session()
        events = [self._event("session.updated", session=copy.deepcopy(self._session))]
        if not self.supported:
            fmt_in, fmt_out = self.formats
            message = (
                f"This simulator serves only {PCMU} audio; the session is now input {fmt_in}, "
                f"output {fmt_out}. Audio will be refused until both are {PCMU}."
            )
            events.append(
                self._error("unsupported_audio_format", message, caused_by, "session.audio")
            )
        return events

    # --- input audio -----------------------------------------------------------------------

    def _append(self, event: Event) -> list[Event]:
        caused_by = event.get("event_id")
        try:
            audio = base64.b64decode(event["audio"], validate=True)
        except binascii.Error:
            return [self._error("invalid_value", "audio is not valid base64", caused_by, "audio")]
        # A faulty PCM16 server takes any bytes as audio, as the real one does.
        if not self.supported:
            fmt_in, fmt_out = self.formats
            message = (
                f"audio refused: this simulator serves only {PCMU} sessions, and this session "
                f"is input {fmt_in}, output {fmt_out}"
            )
            return [self._error("unsupported_audio_format", message, caused_by)]
        self._record.audio_in(audio)
        pcm: bytes | None = None
        if self.config.serves_pcm16:
            # Inside, the simulator works in μ-law (voice detection, durations).
            pcm, audio = audio, pcm16_24k_to_ulaw(audio)
        self._heard += len(audio)
        if self.config.mode is Mode.ECHO:
            return self._echo(audio, pcm)
        self._buffered += len(audio)
        turn = turn_detection(self._session)
        events: list[Event] = []
        for change in self._vad.feed(audio):
            if turn is None:
                continue
            if isinstance(change, SpeechStarted):
                events += self._speech_started(change, turn)
            elif isinstance(change, SpeechStopped):
                events += self._speech_stopped(change, turn)
        return events

    def _echo(self, audio: bytes, pcm: bytes | None = None) -> list[Event]:
        events: list[Event] = []
        if self._response is None:
            events += self._start_response(_Kind.ECHO)
        r = self._response
        if r is None or r.kind is not _Kind.ECHO or not audio:
            return events  # during a canned reply the audio is heard, not echoed
        return [*events, self._audio_delta(r, audio, pcm)]

    def _speech_started(self, change: SpeechStarted, turn: Event) -> list[Event]:
        self._speech_item = self._ids("item")
        events = [
            self._event(
                "input_audio_buffer.speech_started",
                audio_start_ms=change.audio_start_ms,
                item_id=self._speech_item,
            )
        ]
        if turn.get("interrupt_response", True):
            events += self._cancel("turn_detected")
        return events

    def _speech_stopped(self, change: SpeechStopped, turn: Event) -> list[Event]:
        item_id = self._speech_item or self._ids("item")
        events = [
            self._event(
                "input_audio_buffer.speech_stopped",
                audio_end_ms=change.audio_end_ms,
                item_id=item_id,
            ),
            *self._commit(item_id),
        ]
        if turn.get("create_response", True) and self._response is None:
            if self._ends_call():
                events += self._call_end_call()
            elif self._calls_tool():
                self._tool_called = True
                assert self.config.call_tool is not None
                events += self._call_function(self.config.call_tool, self.config.tool_arguments)
            else:
                events += self._start_response(_Kind.REPLY)
        return events

    def _ends_call(self) -> bool:
        after = self.config.end_call_after
        tools = self._session.get("tools") or []
        declared = any(t.get("type") == "function" and t.get("name") == END_CALL for t in tools)
        return after > 0 and self._caller_turns >= after and declared

    def _calls_tool(self) -> bool:
        name = self.config.call_tool
        tools = self._session.get("tools") or []
        declared = any(t.get("type") == "function" and t.get("name") == name for t in tools)
        return name is not None and not self._tool_called and declared

    def _call_end_call(self) -> list[Event]:
        """A whole response that calls ``end_call`` (no audio), as the real server streams it."""
        return self._call_function(END_CALL, json.dumps({"reason": "the caller said goodbye"}))

    def _call_function(self, name: str, arguments: str) -> list[Event]:
        """A whole response that calls the function ``name`` (no audio)."""
        response_id, item_id, call_id = self._ids("resp"), self._ids("item"), self._ids("call")
        item = body.function_call_item(item_id, call_id, name, "", "in_progress")
        done = body.function_call_item(item_id, call_id, name, arguments, "completed")
        previous = self._conversation.add(done)
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        created = body.response_resource(
            response_id, self._conversation_id, "in_progress", self._output_audio()
        )
        resource = body.response_resource(
            response_id,
            self._conversation_id,
            "completed",
            self._output_audio(),
            output=[done],
            usage_block=self._usage_of(0, len(arguments)),
        )
        self._record.function_calls.append(name)
        return [
            self._event("response.created", response=created),
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
            self._event("response.done", response=resource),
        ]

    def _commit(self, item_id: str) -> list[Event]:
        heard_ms = self._buffered // BYTES_PER_MS
        self._caller_turns += 1
        self._buffered, self._speech_item = 0, None
        item = body.user_audio_item(item_id, None)
        previous = self._conversation.add(item)
        events = [
            self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event("conversation.item.done", previous_item_id=previous, item=item),
        ]
        audio_in = (self._session.get("audio") or {}).get("input") or {}
        if audio_in.get("transcription"):
            text = self.config.caller_transcript
            events.append(
                self._event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=text,
                    usage=body.transcription_usage(heard_ms, text),
                )
            )
        return events

    def _commit_buffer(self, event: Event) -> list[Event]:
        if self._buffered == 0:
            message = "Error committing input audio buffer: the buffer is empty."
            return [self._error("input_audio_buffer_commit_empty", message, event.get("event_id"))]
        return self._commit(self._speech_item or self._ids("item"))

    def _clear_buffer(self, event: Event) -> list[Event]:
        self._buffered = 0
        return [self._event("input_audio_buffer.cleared")]

    def _output_clear(self, event: Event) -> list[Event]:
        message = (
            "output_audio_buffer.clear is for WebRTC and SIP only; "
            "over WebSocket the client owns playback"
        )
        return [self._error("invalid_value", message, event.get("event_id"), "type")]

    # --- conversation items ----------------------------------------------------------------

    def _item_error(self, exc: ItemError, event: Event) -> list[Event]:
        return [self._error(exc.code, exc.message, event.get("event_id"), exc.param)]

    def _item_create(self, event: Event) -> list[Event]:
        try:
            item, previous = self._conversation.create(event["item"], lambda: self._ids("item"))
        except ItemError as exc:
            return self._item_error(exc, event)
        self._record.item_created(item)
        return [
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event("conversation.item.done", previous_item_id=previous, item=item),
        ]

    def _truncate(self, event: Event) -> list[Event]:
        item_id, end_ms = event["item_id"], event["audio_end_ms"]
        try:
            self._conversation.check_truncate(item_id, event["content_index"], end_ms)
        except ItemError as exc:
            return self._item_error(exc, event)
        fields = {"item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}
        self._record.truncates.append({"item_id": item_id, "audio_end_ms": end_ms})
        return [self._event("conversation.item.truncated", **fields)]

    def _item_delete(self, event: Event) -> list[Event]:
        try:
            self._conversation.delete(event["item_id"])
        except ItemError as exc:
            return self._item_error(exc, event)
        return [self._event("conversation.item.deleted", item_id=event["item_id"])]

    def _item_retrieve(self, event: Event) -> list[Event]:
        try:
            item = self._conversation.get(event["item_id"])
        except ItemError as exc:
            return self._item_error(exc, event)
        return [self._event("conversation.item.retrieved", item=copy.deepcopy(item.body))]

    # --- response control ------------------------------------------------------------------

    def _response_create(self, event: Event) -> list[Event]:
        if self._response is not None:
            message = (
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one."
            )
            return [
                self._error(
                    "conversation_already_has_active_response", message, event.get("event_id")
                )
            ]
        return self._start_response(_Kind.REPLY)

    def _response_cancel(self, event: Event) -> list[Event]:
        wanted = event.get("response_id")
        if self._response is None or (wanted and wanted != self._response.id):
            message = "Cancellation failed: no active response found."
            return [self._error("response_cancel_not_active", message, event.get("event_id"))]
        return self._cancel("client_cancelled")
