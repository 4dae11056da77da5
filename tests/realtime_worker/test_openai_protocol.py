"""Realtime GA client events and server-event parsing (docs/protocols.md §3)."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.realtime_worker import openai_protocol as rt
from shared.errors import RealtimeProtocolError
from tests.support.strict_events import check_client_event

OPTIONS = rt.SessionOptions(
    model="gpt-realtime-2.1",
    instructions="Be brief.",
    voice="marin",
    transcription_model="gpt-transcribe",
    turn_detection="server_vad",
)


# --- the strict checker itself must catch what docs/protocols.md §6.2 warns about ----------------


def test_checker_rejects_invented_fields_and_beta_shape() -> None:
    good = json.loads(rt.session_update("e1", OPTIONS))
    check_client_event(good)
    with_rate = json.loads(rt.session_update("e1", OPTIONS))
    with_rate["session"]["audio"]["output"]["format"]["rate"] = 8000
    with pytest.raises(AssertionError, match="rate"):
        check_client_event(with_rate)
    beta = {
        "type": "session.update",
        "session": {"input_audio_format": "g711_ulaw", "modalities": ["text", "audio"]},
    }
    with pytest.raises(pydantic.ValidationError):
        check_client_event(beta)
    with pytest.raises(pydantic.ValidationError):
        check_client_event(json.loads(rt.truncate("e", "item", 5)) | {"audio_end_ms": "5"})


# --- client events --------------------------------------------------------------------------


def test_session_update_is_the_ga_pcmu_session() -> None:
    event = json.loads(rt.session_update("sb_session_1", OPTIONS))
    assert event == {
        "type": "session.update",
        "event_id": "sb_session_1",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime-2.1",
            "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                    "transcription": {"model": "gpt-transcribe"},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
            },
        },
    }
    check_client_event(event)


def test_session_update_semantic_vad_custom_voice_no_transcription() -> None:
    options = rt.SessionOptions(
        model="m",
        instructions="",
        voice="voice_1234",
        transcription_model=None,
        turn_detection="semantic_vad",
    )
    event = json.loads(rt.session_update("e2", options))
    session = event["session"]
    assert session["audio"]["input"] == {
        "format": {"type": "audio/pcmu"},
        "turn_detection": {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        },
    }
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcmu"},
        "voice": {"id": "voice_1234"},
    }
    assert session["instructions"] == ""
    check_client_event(event)


@pytest.mark.parametrize("voice", ["alloy", "ash", "ballad", "coral", "echo", "sage", "cedar"])
def test_session_update_builtin_voices_validate(voice: str) -> None:
    options = rt.SessionOptions("m", "i", voice, "whisper-1", "server_vad")
    event = json.loads(rt.session_update("e", options))
    assert event["session"]["audio"]["output"]["voice"] == voice
    check_client_event(event)


def test_session_update_has_no_beta_or_invented_fields() -> None:
    text = rt.session_update("e", OPTIONS)
    for forbidden in (
        "g711_ulaw",
        "input_audio_format",
        "output_audio_format",
        'modalities":["text',
        "temperature",
        "sample_rate",
        "rate",
        "pcm16",
    ):
        assert forbidden not in text


def test_session_update_escapes_instructions() -> None:
    options = rt.SessionOptions("m", 'Say "hi"\n\\ and ünïcode ☎', "marin", None, "server_vad")
    event = json.loads(rt.session_update("e", options))
    assert event["session"]["instructions"] == 'Say "hi"\n\\ and ünïcode ☎'


def test_audio_append_base64_encodes_once() -> None:
    audio = bytes(range(256))
    text = rt.audio_append(audio)
    event = json.loads(text)
    assert event == {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
    assert base64.b64decode(event["audio"], validate=True) == audio
    check_client_event(event)
    frame = json.loads(rt.audio_append(b"\xff" * 160))["audio"]
    assert len(frame) == 216  # 20 ms: 160 bytes, 4/3 of it in base64, once
    assert frame == "/" * 213 + "w=="
    assert json.loads(rt.audio_append(b"")) == {"type": "input_audio_buffer.append", "audio": ""}


def test_truncate() -> None:
    event = json.loads(rt.truncate("sb_t_3", "item_9", 1234.9))  # type: ignore[arg-type]
    assert event == {
        "type": "conversation.item.truncate",
        "event_id": "sb_t_3",
        "item_id": "item_9",
        "content_index": 0,
        "audio_end_ms": 1234,
    }
    assert type(event["audio_end_ms"]) is int
    check_client_event(event)


def test_response_cancel() -> None:
    assert json.loads(rt.response_cancel("c1")) == {"type": "response.cancel", "event_id": "c1"}
    event = json.loads(rt.response_cancel("c2", "resp_1"))
    assert event == {"type": "response.cancel", "event_id": "c2", "response_id": "resp_1"}
    check_client_event(event)
    check_client_event(json.loads(rt.response_cancel("c1")))


def test_response_create() -> None:
    assert json.loads(rt.response_create("r1")) == {"type": "response.create", "event_id": "r1"}
    event = json.loads(rt.response_create("r2", "Greet the caller."))
    assert event == {
        "type": "response.create",
        "event_id": "r2",
        "response": {"instructions": "Greet the caller."},
    }
    check_client_event(event)
    check_client_event(json.loads(rt.response_create("r1")))


def test_response_instructions_keep_the_persona() -> None:
    persona = "You are the support line of Acme. Be brief."
    combined = rt.response_instructions(persona, "Greet the caller.")
    assert combined.startswith(persona) and combined.endswith("Greet the caller.")
    assert rt.response_instructions("  ", "Greet the caller.") == "Greet the caller."
    check_client_event(json.loads(rt.response_create("r3", combined)))


def test_function_call_item_recreates_a_call_for_a_new_session() -> None:
    item = rt.function_call_item("call_1", "lookup_order", '{"order": "7"}')
    event = json.loads(rt.conversation_item_create("t1", item))
    assert event["item"] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "lookup_order",
        "arguments": '{"order": "7"}',
    }
    check_client_event(event)


def test_conversation_item_create_user_text() -> None:
    event = json.loads(rt.conversation_item_create("i1", rt.user_text_item("earlier: hello")))
    assert event == {
        "type": "conversation.item.create",
        "event_id": "i1",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "earlier: hello"}],
        },
    }
    check_client_event(event)


# --- server events --------------------------------------------------------------------------


def _frame(event: dict[str, Any]) -> str:
    return json.dumps(event)


def _session_event(kind: str, input_format: Any, output_format: Any) -> str:
    return _frame(
        {
            "type": kind,
            "event_id": "event_1",
            "session": {
                "type": "realtime",
                "id": "sess_1",
                "object": "realtime.session",
                "model": "gpt-realtime-2.1",
                "audio": {
                    "input": {"format": input_format, "turn_detection": None},
                    "output": {"format": output_format, "voice": "marin"},
                },
            },
        }
    )


PCMU = {"type": "audio/pcmu"}
PCM24 = {"type": "audio/pcm", "rate": 24000}


@pytest.mark.parametrize("kind", ["session.created", "session.updated"])
def test_session_with_pcmu(kind: str) -> None:
    event = rt.parse_server_event(_session_event(kind, PCMU, PCMU))
    assert event == rt.SessionConfirmed(
        updated=kind == "session.updated",
        session_id="sess_1",
        input_format="audio/pcmu",
        output_format="audio/pcmu",
    )
    assert event.speaks(rt.PCMU)


@pytest.mark.parametrize(
    ("input_format", "output_format"),
    [
        (PCM24, PCM24),
        (PCMU, PCM24),
        (PCM24, PCMU),
        ({"type": "audio/pcma"}, PCMU),
        ("g711_ulaw", "g711_ulaw"),  # the retired beta string shape
        (None, None),
        ({"type": 7}, PCMU),
    ],
)
def test_session_not_pcmu_both_ways(input_format: Any, output_format: Any) -> None:
    event = rt.parse_server_event(_session_event("session.updated", input_format, output_format))
    assert isinstance(event, rt.SessionConfirmed)
    assert not event.speaks(rt.PCMU)


def test_session_pcm_24k_reports_its_format() -> None:
    event = rt.parse_server_event(_session_event("session.created", PCM24, PCM24))
    assert isinstance(event, rt.SessionConfirmed)
    assert (event.input_format, event.output_format) == ("audio/pcm", "audio/pcm")
    assert (event.input_rate, event.output_rate) == (24000, 24000)
    assert not event.updated
    assert event.speaks(rt.PCM) and not event.speaks(rt.PCMU)


@pytest.mark.parametrize(
    ("input_format", "output_format", "pcm_24k"),
    [
        (PCM24, PCM24, True),
        ({"type": "audio/pcm"}, PCM24, True),  # no rate: the 24 kHz default
        ({"type": "audio/pcm", "rate": 16000}, PCM24, False),
        (PCM24, PCMU, False),
        (PCMU, PCMU, False),
    ],
)
def test_what_a_transcoding_worker_accepts(
    input_format: Any, output_format: Any, pcm_24k: bool
) -> None:
    event = rt.parse_server_event(_session_event("session.updated", input_format, output_format))
    assert isinstance(event, rt.SessionConfirmed)
    assert event.speaks(rt.PCM) is pcm_24k


def test_session_update_for_a_transcoding_worker_asks_pcm16_24k_both_ways() -> None:
    options = dataclasses.replace(OPTIONS, audio_format=rt.PCM)
    event = json.loads(rt.session_update("sb_session_1", options))
    audio = event["session"]["audio"]
    assert audio["input"]["format"] == audio["output"]["format"] == PCM24
    check_client_event(event)


@pytest.mark.parametrize(
    "session",
    [{}, {"audio": None}, {"audio": "x"}, {"audio": {"input": []}}, {"id": 5, "audio": {}}],
)
def test_session_with_missing_parts_is_not_pcmu(session: dict[str, Any]) -> None:
    event = rt.parse_server_event(_frame({"type": "session.updated", "session": session}))
    assert isinstance(event, rt.SessionConfirmed)
    assert not event.speaks(rt.PCMU)
    assert (event.input_format, event.output_format) == (None, None)


def test_audio_delta_is_decoded_once() -> None:
    audio = bytes(range(256))
    event = rt.parse_server_event(
        _frame(
            {
                "type": "response.output_audio.delta",
                "event_id": "event_2",
                "response_id": "resp_1",
                "item_id": "item_1",
                "output_index": 0,
                "content_index": 0,
                "delta": base64.b64encode(audio).decode(),
            }
        )
    )
    assert event == rt.OutputAudioDelta("resp_1", "item_1", audio)
    # A doubly encoded delta decodes (once) to base64 text, not to the audio.
    double = base64.b64encode(base64.b64encode(audio)).decode()
    event = rt.parse_server_event(
        _frame(
            {
                "type": "response.output_audio.delta",
                "response_id": "r",
                "item_id": "i",
                "delta": double,
            }
        )
    )
    assert isinstance(event, rt.OutputAudioDelta)
    assert event.audio == base64.b64encode(audio)


def test_audio_delta_accepts_bytes_frames() -> None:
    frame = orjson.dumps(
        {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "//8="}
    )
    assert rt.parse_server_event(frame) == rt.OutputAudioDelta("r", "i", b"\xff\xff")


@pytest.mark.parametrize(
    "delta", ["not base64!", "//8", "/w==/w==", "//8=\n", "-_8=", "b'//8='", "ÿÿÿÿ"]
)
def test_audio_delta_bad_base64(delta: str) -> None:
    frame = _frame(
        {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": delta}
    )
    with pytest.raises(RealtimeProtocolError) as info:
        rt.parse_server_event(frame)
    assert info.value.kind == "bad_base64"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"type": "response.output_audio.done", "response_id": "r", "item_id": "i"},
            rt.OutputAudioDone("r", "i"),
        ),
        (
            {"type": "response.output_audio_transcript.delta", "response_id": "r", "delta": "Hel"},
            rt.TranscriptDelta("r", "Hel"),
        ),
        (
            {
                "type": "response.output_audio_transcript.done",
                "response_id": "r",
                "item_id": "item_a",
                "transcript": "Hello!",
            },
            rt.TranscriptDone("r", "item_a", "Hello!"),
        ),
        (
            {
                "type": "response.output_item.added",
                "response_id": "r",
                "output_index": 0,
                "item": {"id": "item_a", "type": "message", "role": "assistant"},
            },
            rt.OutputItemAdded("r", "item_a", "message"),
        ),
        (
            {"type": "input_audio_buffer.committed", "item_id": "u2", "previous_item_id": "a1"},
            rt.InputCommitted("u2", "a1"),
        ),
        (
            {"type": "input_audio_buffer.committed", "item_id": "u1", "previous_item_id": None},
            rt.InputCommitted("u1", None),
        ),
        (
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": "u1",
                "content_index": 0,
                "error": {"type": "server_error", "code": "audio_unintelligible", "message": "?"},
            },
            rt.InputTranscriptFailed("u1", "audio_unintelligible", "?"),
        ),
        (
            {"type": "conversation.item.input_audio_transcription.failed", "item_id": "u1"},
            rt.InputTranscriptFailed("u1", "transcription_failed", ""),
        ),
        (
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.1},
                    {"name": "tokens", "limit": 50000, "remaining": 49000, "reset_seconds": 1},
                    {"name": "tokens", "limit": "lots"},
                    "junk",
                ],
            },
            rt.RateLimits(
                (rt.RateLimit("requests", 1000, 999), rt.RateLimit("tokens", 50000, 49000))
            ),
        ),
        (
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_c",
                "content_index": 0,
                "transcript": "I need help",
            },
            rt.InputTranscript("item_c", "I need help"),
        ),
        (
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1500, "item_id": "i"},
            rt.SpeechStarted(1500, "i"),
        ),
        (
            {"type": "response.created", "response": {"id": "resp_7", "status": "in_progress"}},
            rt.ResponseCreated("resp_7"),
        ),
        (
            {
                "type": "response.done",
                "response": {
                    "id": "resp_7",
                    "status": "cancelled",
                    "status_details": {"type": "cancelled", "reason": "turn_detected"},
                    "output": [{"type": "message", "id": "item_1"}, "junk"],
                    "usage": {"total_tokens": 42},
                },
            },
            rt.ResponseDone(
                "resp_7",
                "cancelled",
                "turn_detected",
                {"total_tokens": 42},
                [{"type": "message", "id": "item_1"}],
            ),
        ),
        (
            {"type": "response.done", "response": {"id": "r", "status": "completed"}},
            rt.ResponseDone("r", "completed", None, None, []),
        ),
        (
            {
                "type": "response.done",
                "response": {
                    "id": "r",
                    "status": "failed",
                    "status_details": {
                        "type": "failed",
                        "error": {"type": "server_error", "code": None, "message": "Sorry"},
                    },
                },
            },
            rt.ResponseDone("r", "failed", None, None, [], "server_error", "Sorry"),
        ),
        (
            {
                "type": "response.done",
                "response": {"status_details": "x", "usage": [], "output": {}},
            },
            rt.ResponseDone("", "", None, None, []),
        ),
        (
            {
                "type": "error",
                "event_id": "event_9",
                "error": {
                    "type": "invalid_request_error",
                    "code": "beta_api_shape_disabled",
                    "message": "The Realtime Beta API is no longer supported.",
                    "param": None,
                    "event_id": "sb_session_1",
                },
            },
            rt.ErrorEvent(
                "beta_api_shape_disabled",
                "The Realtime Beta API is no longer supported.",
                "invalid_request_error",
                "sb_session_1",
            ),
        ),
        ({"type": "error"}, rt.ErrorEvent("unknown", "", "", None)),
        (
            {"type": "error", "error": {"code": None, "message": 5, "event_id": 3}},
            rt.ErrorEvent("unknown", "5", "", None),
        ),
        ({"type": "rate_limits.updated", "rate_limits": 5}, rt.RateLimits(())),
        ({"type": "conversation.item.added"}, rt.OtherEvent("conversation.item.added")),
        ({"type": "response.audio.delta", "delta": 5}, rt.OtherEvent("response.audio.delta")),
        ({"type": "brand.new.event", "x": [1, 2]}, rt.OtherEvent("brand.new.event")),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_server_events(event: dict[str, Any], expected: rt.ServerEvent) -> None:
    assert rt.parse_server_event(_frame(event)) == expected


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ("", "not_json"),
        ("{", "not_json"),
        ("{'type': 'error'}", "not_json"),
        (b"\xff\xfe{}", "not_json"),
        ("NaN", "not_json"),
        ("[]", "not_object"),
        ('"session.created"', "not_object"),
        ("null", "not_object"),
        ("42", "not_object"),
        ("{}", "bad_field"),
        ('{"type": null}', "bad_field"),
        ('{"type": 5}', "bad_field"),
        ('{"type": ["error"]}', "bad_field"),
        ('{"type": "session.created"}', "bad_field"),
        ('{"type": "session.updated", "session": "pcmu"}', "bad_field"),
        (
            '{"type": "response.output_audio.delta", "response_id": "r", "item_id": "i"}',
            "bad_field",
        ),
        ('{"type": "response.output_audio.delta", "delta": "//8=", "item_id": "i"}', "bad_field"),
        (
            '{"type": "response.output_audio.delta", "delta": "//8=", "response_id": "r", '
            '"item_id": 1}',
            "bad_field",
        ),
        ('{"type": "response.output_audio.delta", "delta": 5, "response_id": "r"}', "bad_field"),
        ('{"type": "response.output_audio.done", "response_id": "r"}', "bad_field"),
        ('{"type": "response.output_audio_transcript.delta", "response_id": "r"}', "bad_field"),
        ('{"type": "response.output_audio_transcript.done", "response_id": "r"}', "bad_field"),
        (
            '{"type": "response.output_audio_transcript.done", "response_id": "r", '
            '"transcript": "Hi"}',
            "bad_field",
        ),
        ('{"type": "response.output_item.added", "response_id": "r"}', "bad_field"),
        ('{"type": "response.output_item.added", "response_id": "r", "item": {}}', "bad_field"),
        ('{"type": "input_audio_buffer.committed"}', "bad_field"),
        ('{"type": "conversation.item.input_audio_transcription.failed"}', "bad_field"),
        (
            '{"type": "conversation.item.input_audio_transcription.completed", "item_id": "i"}',
            "bad_field",
        ),
        (
            '{"type": "input_audio_buffer.speech_started", "audio_start_ms": "1500", '
            '"item_id": "i"}',
            "bad_field",
        ),
        (
            '{"type": "input_audio_buffer.speech_started", "audio_start_ms": 1.5, "item_id": "i"}',
            "bad_field",
        ),
        (
            '{"type": "input_audio_buffer.speech_started", "audio_start_ms": true, "item_id": "i"}',
            "bad_field",
        ),
        ('{"type": "response.created"}', "bad_field"),
        ('{"type": "response.created", "response": []}', "bad_field"),
        ('{"type": "response.done", "response": null}', "bad_field"),
    ],
)
def test_malformed_frames(frame: str | bytes, kind: str) -> None:
    with pytest.raises(RealtimeProtocolError) as info:
        rt.parse_server_event(frame)
    assert info.value.kind == kind


def test_error_message_names_the_field() -> None:
    with pytest.raises(RealtimeProtocolError, match="speech_started.audio_start_ms"):
        rt.parse_server_event('{"type": "input_audio_buffer.speech_started", "item_id": "i"}')


# --- properties -----------------------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_KNOWN_TYPES = [
    "session.created",
    "session.updated",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "conversation.item.input_audio_transcription.completed",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.committed",
    "response.output_item.added",
    "conversation.item.input_audio_transcription.failed",
    "rate_limits.updated",
    "response.created",
    "response.done",
    "error",
]
_FIELDS = [
    "item",
    "rate_limits",
    "previous_item_id",
    "session",
    "response",
    "error",
    "delta",
    "transcript",
    "response_id",
    "item_id",
    "audio_start_ms",
]


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_frames_raise_only_protocol_errors(frame: bytes | str) -> None:
    try:
        event = rt.parse_server_event(frame)
    except RealtimeProtocolError as exc:
        assert exc.kind in {"not_json", "not_object", "bad_field", "bad_base64"}
        return
    assert isinstance(event, rt.OtherEvent | rt.SessionConfirmed | rt.ErrorEvent)


@given(
    st.sampled_from(_KNOWN_TYPES) | st.text(max_size=10),
    st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=6), _json_values, max_size=6),
    st.sampled_from(_FIELDS),
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()) | _json_values,
)
def test_arbitrary_events_raise_only_protocol_errors(
    kind: str, body: dict[str, Any], field: str, value: Any
) -> None:
    frame = orjson.dumps({**body, field: value, "type": kind})
    try:
        event = rt.parse_server_event(frame)
    except RealtimeProtocolError as exc:
        assert exc.kind in {"bad_field", "bad_base64"}
        return
    assert isinstance(event, rt.ServerEvent)
    if kind not in _KNOWN_TYPES:
        assert event == rt.OtherEvent(kind)


@given(st.binary(max_size=2000), st.text(max_size=20), st.text(max_size=20))
def test_audio_round_trips_through_base64_once(
    audio: bytes, response_id: str, item_id: str
) -> None:
    sent = json.loads(rt.audio_append(audio))["audio"]
    frame = orjson.dumps(
        {
            "type": "response.output_audio.delta",
            "response_id": response_id,
            "item_id": item_id,
            "delta": sent,
        }
    )
    assert rt.parse_server_event(frame) == rt.OutputAudioDelta(response_id, item_id, audio)


def test_function_calls_are_the_well_formed_function_call_items_only() -> None:
    done = rt.ResponseDone(
        "resp_1",
        "completed",
        None,
        None,
        [
            {"type": "message", "id": "item_1", "call_id": "c0", "name": "end_call"},
            {"type": "function_call", "call_id": "c1", "arguments": "{}"},  # no name
            {"type": "function_call", "call_id": 2, "name": "end_call"},  # id not a string
            {"type": "function_call", "call_id": "c3", "name": "end_call", "arguments": {}},
            {"type": "function_call", "call_id": "c4", "name": "lookup", "arguments": '{"a": 1}'},
        ],
    )
    assert done.function_calls == [
        rt.FunctionCall("c3", "end_call", ""),  # arguments that are not a string: none
        rt.FunctionCall("c4", "lookup", '{"a": 1}'),
    ]
