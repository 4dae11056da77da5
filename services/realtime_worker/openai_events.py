"""The Realtime API's server events (GA shape), parsed, sans I/O.

``parse_server_event`` turns one server frame into a typed event; unknown types come back as
``OtherEvent`` and never raise, because the server adds new ones. Audio deltas are decoded from
base64 exactly once, here. ``openai_protocol`` re-exports these names: import either.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shared.errors import RealtimeProtocolError

__all__ = [
    "ErrorEvent",
    "FunctionCall",
    "InputCommitted",
    "InputTranscript",
    "InputTranscriptFailed",
    "OtherEvent",
    "OutputAudioDelta",
    "OutputAudioDone",
    "OutputItemAdded",
    "PCM",
    "PCMU",
    "PCM_RATE",
    "RateLimit",
    "RateLimits",
    "ResponseCreated",
    "ResponseDone",
    "ServerEvent",
    "SessionConfirmed",
    "SpeechStarted",
    "TokenUsage",
    "TranscriptDelta",
    "TranscriptDone",
    "parse_server_event",
]

PCMU: Final = "audio/pcmu"
PCM: Final = "audio/pcm"  # PCM16 little-endian; the worker asks for it only at 24 kHz
PCM_RATE: Final = 24000


@dataclass(frozen=True, slots=True)
class SessionConfirmed:
    """``session.created`` or ``session.updated``: the formats the server actually uses."""

    updated: bool
    session_id: str
    input_format: str | None
    output_format: str | None
    input_rate: int | None = None  # given for audio/pcm
    output_rate: int | None = None

    def speaks(self, audio_format: str) -> bool:
        """Both directions are ``audio_format`` (PCM: at 24 kHz, the rate the worker
        transcodes to; a PCM session without a rate is at its 24 kHz default)."""
        if audio_format != PCM:
            return self.input_format == audio_format and self.output_format == audio_format
        return all(
            fmt == PCM and rate in (None, PCM_RATE)
            for fmt, rate in (
                (self.input_format, self.input_rate),
                (self.output_format, self.output_rate),
            )
        )


@dataclass(frozen=True, slots=True)
class OutputAudioDelta:
    response_id: str
    item_id: str
    audio: bytes  # raw μ-law


@dataclass(frozen=True, slots=True)
class OutputAudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    response_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class OutputItemAdded:
    """A response added an item to the conversation (a reply, or a function call)."""

    response_id: str
    item_id: str
    item_type: str  # "message" or "function_call"


@dataclass(frozen=True, slots=True)
class InputCommitted:
    """The caller's audio became a user item, placed after ``previous_item_id``."""

    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """The caller's words, when input transcription is on. It completes asynchronously: it
    may arrive after the reply to those words (docs/protocols.md §3.5)."""

    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class InputTranscriptFailed:
    item_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RateLimit:
    name: str  # "requests" or "tokens"
    limit: int
    remaining: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """``rate_limits.updated``: sent as each response starts."""

    limits: tuple[RateLimit, ...]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one response (or summed over a call), by direction and modality."""

    input_text: int = 0
    input_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @property
    def total(self) -> int:
        return self.input_text + self.input_audio + self.output_text + self.output_audio

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_text + other.input_text,
            self.input_audio + other.input_audio,
            self.output_text + other.output_text,
            self.output_audio + other.output_audio,
        )

    def items(self) -> list[tuple[str, str, int]]:
        """(direction, modality, tokens) rows, for metrics and the call record."""
        return [
            ("input", "text", self.input_text),
            ("input", "audio", self.input_audio),
            ("output", "text", self.output_text),
            ("output", "audio", self.output_audio),
        ]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str  # completed, cancelled, failed or incomplete
    reason: str | None
    usage: dict[str, Any] | None
    output: list[dict[str, Any]]
    error_code: str | None = None  # a failed response's status_details.error
    error_message: str | None = None

    @property
    def function_calls(self) -> list[FunctionCall]:
        """The function calls among the response's output items (malformed ones left out)."""
        calls = []
        for item in self.output:
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
            if item.get("type") == "function_call" and type(call_id) is str and type(name) is str:
                calls.append(
                    FunctionCall(call_id, name, arguments if type(arguments) is str else "")
                )
        return calls

    @property
    def token_usage(self) -> TokenUsage:
        """The response's usage (zeros where the server left fields out)."""
        usage = self.usage or {}
        details_in = usage.get("input_token_details")
        details_out = usage.get("output_token_details")
        return TokenUsage(
            _count(details_in, "text_tokens"),
            _count(details_in, "audio_tokens"),
            _count(details_out, "text_tokens"),
            _count(details_out, "audio_tokens"),
        )


def _count(details: object, key: str) -> int:
    value = details.get(key) if type(details) is dict else None
    return value if type(value) is int and value > 0 else 0


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: str
    message: str
    error_type: str
    event_id: str | None  # the client event that caused it, when the server says


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """A server event the worker does not act on (or does not know: new ones appear)."""

    type: str


ServerEvent = (
    SessionConfirmed
    | OutputAudioDelta
    | OutputAudioDone
    | TranscriptDelta
    | TranscriptDone
    | OutputItemAdded
    | InputCommitted
    | InputTranscript
    | InputTranscriptFailed
    | RateLimits
    | SpeechStarted
    | ResponseCreated
    | ResponseDone
    | ErrorEvent
    | OtherEvent
)


def _fail(kind: str, message: str) -> RealtimeProtocolError:
    return RealtimeProtocolError(message, kind=kind)


def _str(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if type(value) is not str:
        raise _fail("bad_field", f"{event.get('type')}.{key} must be a string")
    return value


def _int(event: dict[str, Any], key: str) -> int:
    value = event.get(key)
    if type(value) is not int:
        raise _fail("bad_field", f"{event.get('type')}.{key} must be an integer")
    return value


def _dict(event: dict[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key)
    if type(value) is not dict:
        raise _fail("bad_field", f"{event.get('type')}.{key} must be an object")
    return value


def _format_of(audio: dict[str, Any], direction: str) -> tuple[str | None, int | None]:
    side = audio.get(direction)
    fmt = side.get("format") if type(side) is dict else None
    if type(fmt) is not dict:
        return None, None
    kind, rate = fmt.get("type"), fmt.get("rate")
    return (kind if type(kind) is str else None), (rate if type(rate) is int else None)


def _session(event: dict[str, Any]) -> SessionConfirmed:
    session = _dict(event, "session")
    audio = session.get("audio")
    audio = audio if type(audio) is dict else {}
    input_format, input_rate = _format_of(audio, "input")
    output_format, output_rate = _format_of(audio, "output")
    return SessionConfirmed(
        updated=event["type"] == "session.updated",
        session_id=str(session.get("id", "")),
        input_format=input_format,
        output_format=output_format,
        input_rate=input_rate,
        output_rate=output_rate,
    )


def _audio_delta(event: dict[str, Any]) -> OutputAudioDelta:
    try:
        audio = binascii.a2b_base64(_str(event, "delta"), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail("bad_base64", f"response.output_audio.delta is not base64: {exc}") from None
    return OutputAudioDelta(_str(event, "response_id"), _str(event, "item_id"), audio)


def _optional_str(container: object, key: str) -> str | None:
    value = container.get(key) if type(container) is dict else None
    return value if type(value) is str else None


def _response_done(event: dict[str, Any]) -> ResponseDone:
    response = _dict(event, "response")
    details = response.get("status_details")
    error = details.get("error") if type(details) is dict else None
    usage = response.get("usage")
    output = response.get("output")
    return ResponseDone(
        response_id=str(response.get("id", "")),
        status=str(response.get("status", "")),
        reason=_optional_str(details, "reason"),
        usage=usage if type(usage) is dict else None,
        output=[o for o in output if type(o) is dict] if type(output) is list else [],
        error_code=_optional_str(error, "code") or _optional_str(error, "type"),
        error_message=_optional_str(error, "message"),
    )


def _output_item_added(event: dict[str, Any]) -> OutputItemAdded:
    item = _dict(event, "item")
    return OutputItemAdded(_str(event, "response_id"), _str(item, "id"), _str(item, "type"))


def _transcript_failed(event: dict[str, Any]) -> InputTranscriptFailed:
    error = event.get("error")
    return InputTranscriptFailed(
        _str(event, "item_id"),
        _optional_str(error, "code") or "transcription_failed",
        _optional_str(error, "message") or "",
    )


def _rate_limits(event: dict[str, Any]) -> RateLimits:
    raw = event.get("rate_limits")
    limits = []
    for entry in raw if type(raw) is list else []:
        name, limit, remaining = (
            entry.get(k) if type(entry) is dict else None for k in ("name", "limit", "remaining")
        )
        if type(name) is str and type(limit) is int and type(remaining) is int:
            limits.append(RateLimit(name, limit, remaining))
    return RateLimits(tuple(limits))


def _error(event: dict[str, Any]) -> ErrorEvent:
    error = event.get("error")
    error = error if type(error) is dict else {}
    caused_by = error.get("event_id")
    return ErrorEvent(
        code=str(error.get("code") or "unknown"),
        message=str(error.get("message") or ""),
        error_type=str(error.get("type") or ""),
        event_id=caused_by if type(caused_by) is str else None,
    )


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], ServerEvent]]] = {
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": lambda e: OutputAudioDone(
        _str(e, "response_id"), _str(e, "item_id")
    ),
    "response.output_audio_transcript.delta": lambda e: TranscriptDelta(
        _str(e, "response_id"), _str(e, "delta")
    ),
    "response.output_audio_transcript.done": lambda e: TranscriptDone(
        _str(e, "response_id"), _str(e, "item_id"), _str(e, "transcript")
    ),
    "response.output_item.added": _output_item_added,
    "input_audio_buffer.committed": lambda e: InputCommitted(
        _str(e, "item_id"), _optional_str(e, "previous_item_id")
    ),
    "conversation.item.input_audio_transcription.completed": lambda e: InputTranscript(
        _str(e, "item_id"), _str(e, "transcript")
    ),
    "conversation.item.input_audio_transcription.failed": _transcript_failed,
    "rate_limits.updated": _rate_limits,
    "input_audio_buffer.speech_started": lambda e: SpeechStarted(
        _int(e, "audio_start_ms"), _str(e, "item_id")
    ),
    "response.created": lambda e: ResponseCreated(str(_dict(e, "response").get("id", ""))),
    "response.done": _response_done,
    "session.created": _session,
    "session.updated": _session,
    "error": _error,
}


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Parse one Realtime server frame.

    Raises ``RealtimeProtocolError`` (kinds: not_json, not_object, bad_field, bad_base64) for a
    frame the protocol does not allow; unknown event types are not errors.
    """
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _fail("not_json", "server frame is not JSON") from None
    if type(event) is not dict:
        raise _fail("not_object", "server frame is not a JSON object")
    kind = event.get("type")
    if type(kind) is not str:
        raise _fail("bad_field", "server event has no string 'type'")
    parser = _PARSERS.get(kind)
    return OtherEvent(kind) if parser is None else parser(event)
