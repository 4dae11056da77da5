"""The strict validator: everything the worker sends passes; every kind of mistake is named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.realtime_sim.client_events import (
    event_models,
    validate_client_event,
    validate_server_event,
)
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import options


def worker_events() -> list[str]:
    return [
        rt.session_update("e1", options()),
        rt.session_update("e2", options(transcription=None)),
        rt.session_update(
            "e3", rt.SessionOptions("gpt-realtime", "", "voice_abc", None, "semantic_vad")
        ),
        rt.audio_append(b"\xff\x7f\x00" * 160),
        rt.truncate("e4", "item_1", 1234),
        rt.response_cancel("e5"),
        rt.response_cancel("e6", "resp_1"),
        rt.response_create("e7"),
        rt.response_create("e8", "Greet the caller."),
        rt.conversation_item_create("e9", rt.user_text_item("The caller pressed 1.")),
    ]


@pytest.mark.parametrize("text", worker_events())
def test_every_worker_builder_output_is_valid(text: str) -> None:
    assert validate_client_event(json.loads(text)) == []


def session_update() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(rt.session_update("e1", options()))
    return event


def test_unknown_top_level_field_is_named() -> None:
    event = {**json.loads(rt.response_cancel("e1")), "response": "resp_1"}
    assert validate_client_event(event) == ["Unknown parameter: 'response'"]


def test_unknown_nested_fields_are_named_by_path() -> None:
    event = session_update()
    event["session"]["input_sample_rate"] = 8000
    event["session"]["audio"]["output"]["format"]["rate"] = 8000
    event["session"]["audio"]["input"]["turn_detection"]["min_speech_ms"] = 100
    assert sorted(validate_client_event(event)) == [
        "Unknown parameter: 'session.audio.input.turn_detection.min_speech_ms'",
        "Unknown parameter: 'session.audio.output.format.rate'",
        "Unknown parameter: 'session.input_sample_rate'",
    ]


def test_unknown_field_inside_a_list_item() -> None:
    event = json.loads(rt.conversation_item_create("e1", rt.user_text_item("hi")))
    event["item"]["content"][0]["lang"] = "en"
    assert validate_client_event(event) == ["Unknown parameter: 'item.content[0].lang'"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("audio_end_ms", "12"), ("audio_end_ms", 12.5), ("content_index", None), ("item_id", 7)],
)
def test_wrong_types_are_not_coerced(field: str, value: object) -> None:
    event = {**json.loads(rt.truncate("e1", "item_1", 12)), field: value}
    problems = validate_client_event(event)
    assert problems and all(p.startswith(f"{field}:") for p in problems), problems


def test_missing_required_field() -> None:
    problems = validate_client_event({"type": "input_audio_buffer.append"})
    assert problems == ["audio: Field required"]


@pytest.mark.parametrize("kind", ["response.audio.delta", "transcription_session.update", "hello"])
def test_unknown_event_type(kind: str) -> None:
    (problem,) = validate_client_event({"type": kind})
    assert kind in problem


@pytest.mark.parametrize("obj", [[], "session.update", 3, None, {"event_id": "e1"}, {"type": 1}])
def test_not_an_event(obj: object) -> None:
    assert validate_client_event(obj) != []


def test_beta_session_is_rejected() -> None:
    beta = {
        "type": "session.update",
        "session": {
            "turn_detection": {"type": "server_vad"},
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "voice": "alloy",
            "modalities": ["text", "audio"],
            "temperature": 0.8,
        },
    }
    assert validate_client_event(beta) != []


def test_beta_fields_in_a_ga_session_are_named() -> None:
    event = session_update()
    event["session"]["input_audio_format"] = "g711_ulaw"
    event["session"]["temperature"] = 0.8
    assert sorted(validate_client_event(event)) == [
        "Unknown parameter: 'session.input_audio_format'",
        "Unknown parameter: 'session.temperature'",
    ]


def test_string_format_is_rejected() -> None:
    event = session_update()
    event["session"]["audio"]["input"]["format"] = "g711_ulaw"
    assert validate_client_event(event) != []


def test_beta_response_modalities_flagged() -> None:
    event = {"type": "response.create", "response": {"modalities": ["audio", "text"]}}
    assert validate_client_event(event) == ["Unknown parameter: 'response.modalities'"]


def test_tables_cover_the_whole_unions() -> None:
    assert len(event_models("client")) == 11
    assert "response.output_audio.delta" in event_models("server")
    assert "response.audio.delta" not in event_models("server")


def test_server_validator_allows_only_the_known_session_extras() -> None:
    event: dict[str, Any] = {
        "type": "session.created",
        "event_id": "event_1",
        "session": {
            "type": "realtime",
            "id": "sess_1",
            "object": "realtime.session",
            "expires_at": 1,
        },
    }
    assert validate_server_event(event) == []
    event["session"]["input_audio_format"] = "g711_ulaw"
    assert validate_server_event(event) == ["Unknown parameter: 'session.input_audio_format'"]


def test_server_validator_rejects_beta_events() -> None:
    delta = {
        "type": "response.audio.delta",
        "event_id": "e",
        "response_id": "r",
        "item_id": "i",
        "output_index": 0,
        "content_index": 0,
        "delta": "",
    }
    assert validate_server_event(delta) != []
