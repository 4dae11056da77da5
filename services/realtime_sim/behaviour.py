"""One simulated Realtime session, sans I/O: client frames in, server events out.

``SimSession.receive`` handles one client frame and returns the events to send, in order.
A canned reply (and a cancel's delayed ``response.done``) is paced by the caller of
``next_reply_step``, which returns the next batch of events and how long to wait before asking
again; ``None`` means nothing is pending. When the session wants its socket closed (a drop,
an unknown model), ``close_due`` says how, once; the server calls ``expire`` at the session
cap. Nothing here touches a socket, a clock or a logger, so tests can drive it directly.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable
from typing import Final

from shared.audio import BYTES_PER_MS, SAMPLE_RATE

from . import server_events as body
from .client_events import validate_client_event
from .config import BehaviourConfig, Mode
from .conversation import ItemError
from .failures import (
    Close,
    DropHow,
    drop_close,
    max_duration_close,
    server_error_message,
    transcription_error,
)
from .faults import forced_pcm16, pcm16_24k_to_ulaw, session_after_update
from .record import SessionRecord
from .responses import END_CALL, Event, Kind, SessionCore
from .session_config import PCMU, merge_session, session_formats, turn_detection
from .vad import SpeechStarted, SpeechStopped
from .values import check_client_values, model_not_found

__all__ = ["BehaviourConfig", "Event", "Mode", "SimSession", "Step"]

Step = tuple[list[Event], float]  # events to send now, seconds to wait before the next step

BETA_MESSAGE: Final = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)
# How the simulator closes after refusing the model of the URL. The real server's close for an
# unknown model is not documented; 1008 (policy violation) says "this request cannot be served".
MODEL_NOT_FOUND_CLOSE: Final = 1008


class SimSession(SessionCore):
    """The protocol state of one connection. Feed it frames; send what it returns.

    ``serial`` is the session's number among those the simulator served, from 1 (it decides
    whether --drop-sessions picks this one)."""

    def __init__(
        self, config: BehaviourConfig, record: SessionRecord, model: str, serial: int = 1
    ) -> None:
        super().__init__(config, record, model, serial)
        self._speech_item: str | None = None  # the user item being spoken, from speech start
        self._buffered = 0  # input bytes since the last commit
        self._caller_turns = 0  # committed caller turns
        self._tool_called = False  # call_tool has been called
        # Told of every caller audio chunk accepted, as μ-law (the bench's probe.py).
        self.on_audio: Callable[[bytes], None] | None = None
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
        """``next_reply_step`` has work: a canned reply streaming, or a cancel's done due."""
        r = self._response
        if r is None or self._closing:
            return False
        return r.kind is Kind.REPLY or r.cancel_reason is not None

    def open(self) -> list[Event]:
        """The first events of a session: ``session.created``, or an error and a close when
        the URL names a model this server does not know."""
        if not self.config.allow.model(self._model):
            problem = model_not_found(self._model, "model")
            self._close_with(Close(MODEL_NOT_FOUND_CLOSE, problem.code))
            return [self._error(problem.code, problem.message, None, problem.param)]
        return [self._event("session.created", session=copy.deepcopy(self._session))]

    def refuse_beta(self) -> Event:
        """The error the real server sends a beta-shaped client before closing with 4000."""
        return self._error("beta_api_shape_disabled", BETA_MESSAGE, None)

    def receive(self, message: str | bytes) -> list[Event]:
        """Handle one client frame; invalid ones are answered with an ``error`` only."""
        if self._closing:
            return []
        return self._held.flush(self._receive(message))

    def next_reply_step(self) -> Step | None:
        """The next batch of a streaming reply and the pause after it, or None."""
        r = self._response
        if r is None or self._closing:
            return None
        if r.cancel_reason is not None:
            if not r.cancel_waited:
                r.cancel_waited = True
                return [], self.config.cancel_delay_ms / 1000
            return self._held.flush(self._end(r, "cancelled", r.cancel_reason)), 0.0
        if r.kind is not Kind.REPLY:
            return None
        if not r.chunks:
            return self._held.flush(self._finish(r)), 0.0
        chunk = r.chunks.popleft()
        events = [self._audio_delta(r, chunk.audio)] if chunk.audio else []
        if chunk.text:
            r.transcript += chunk.text
            events.append(
                self._event(
                    "response.output_audio_transcript.delta", **self._part(r), delta=chunk.text
                )
            )
        return self._held.flush(events), len(chunk.audio) / SAMPLE_RATE / self.config.speed

    def close_due(self) -> Close | None:
        """The close the session asked for, once: send what it returned, then close so."""
        close, self._close = self._close, None
        return close

    def expire(self) -> Close:
        """The session reached its maximum duration: nothing more is produced."""
        self._closing = True
        return max_duration_close(self.config.failures.session_max_s)

    # --- frames ----------------------------------------------------------------------------

    def _receive(self, message: str | bytes) -> list[Event]:
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
        problem = check_client_values(obj, self.config.allow)
        if problem is not None:
            self._record.invalid(f"{obj['type']}: {problem.message}")
            return [self._error(problem.code, problem.message, caused_by, problem.param)]
        self._record.received(obj["type"])
        return self._handlers[obj["type"]](obj)

    def _apply_session(self) -> None:
        fmt_in, fmt_out = self.formats
        self._record.session_formats = {"input": fmt_in, "output": fmt_out}
        self._record.configured(self._session)
        turn = turn_detection(self._session) or {}
        self._vad.configure(
            int(turn.get("silence_duration_ms") or 500), int(turn.get("prefix_padding_ms") or 300)
        )

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
        if self.on_audio is not None:
            self.on_audio(audio)
        if self.config.mode is Mode.ECHO:
            events = self._echo(audio, pcm)
        else:
            events = self._hear(audio)
        return events + self._failures_after_audio()

    def _hear(self, audio: bytes) -> list[Event]:
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

    def _failures_after_audio(self) -> list[Event]:
        """A server error or a drop, once the caller audio heard reaches its threshold."""
        heard_ms = self._heard // BYTES_PER_MS
        events: list[Event] = []
        if self._plan.server_error_due(heard_ms):
            events.append(self._server_error())
        how = self._plan.drop_due(heard_ms)
        if how is not None:
            if how is DropHow.SERVER_ERROR:
                events.append(self._server_error())
            self._close_with(drop_close(how))
        return events

    def _server_error(self) -> Event:
        error = body.error_body(
            None, server_error_message(self.session_id), None, kind="server_error"
        )
        return self._event("error", error=error)

    def _echo(self, audio: bytes, pcm: bytes | None = None) -> list[Event]:
        events: list[Event] = []
        if self._response is None:
            events += self._start_response(Kind.ECHO)
        r = self._response
        if r is None or r.kind is not Kind.ECHO or r.cancel_reason is not None or not audio:
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
            events += self._cancel_now("turn_detected")
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
                events += self._call_function(
                    END_CALL, json.dumps({"reason": "the caller said goodbye"})
                )
            elif self._calls_tool():
                self._tool_called = True
                assert self.config.call_tool is not None
                events += self._call_function(self.config.call_tool, self.config.tool_arguments)
            else:
                events += self._start_response(Kind.REPLY)
        return events

    def _declares(self, name: str | None) -> bool:
        tools = self._session.get("tools") or []
        return any(t.get("type") == "function" and t.get("name") == name for t in tools)

    def _ends_call(self) -> bool:
        after = self.config.end_call_after
        return after > 0 and self._caller_turns >= after and self._declares(END_CALL)

    def _calls_tool(self) -> bool:
        name = self.config.call_tool
        return name is not None and not self._tool_called and self._declares(name)

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
            transcript = self._transcription(item_id, heard_ms)
            if self.config.late_transcripts:
                self._held.hold(transcript)
            else:
                events.append(transcript)
        return events

    def _transcription(self, item_id: str, heard_ms: int) -> Event:
        """The outcome of transcribing a caller turn: completed, or failed when asked."""
        where = {"item_id": item_id, "content_index": 0}
        if self.config.failures.transcription_fails:
            return self._event(
                "conversation.item.input_audio_transcription.failed",
                **where,
                error=transcription_error(item_id),
            )
        text = self.config.caller_transcript
        return self._event(
            "conversation.item.input_audio_transcription.completed",
            **where,
            transcript=text,
            usage=body.transcription_usage(heard_ms, text),
        )

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
            item, previous = self._conversation.create(event["item"], self._ids)
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
        params = event.get("response") or {}
        # response.instructions replaces the session's for this response only.
        return self._start_response(Kind.REPLY, params.get("instructions"), params.get("metadata"))

    def _response_cancel(self, event: Event) -> list[Event]:
        """The cancel takes effect at once, but its ``response.done`` comes from
        ``next_reply_step`` after --cancel-delay-ms: the response stays active until then."""
        r, wanted = self._response, event.get("response_id")
        if r is None or (wanted and wanted != r.id):
            message = "Cancellation failed: no active response found."
            return [self._error("response_cancel_not_active", message, event.get("event_id"))]
        if r.cancel_reason is None:
            r.cancel_reason = "client_cancelled"
            r.chunks.clear()
        return []
