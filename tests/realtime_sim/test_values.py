"""Value checks beyond the SDK's types: names from the installed package, documented limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.values import (
    REALTIME_MODELS,
    TRANSCRIPTION_MODELS,
    VOICES,
    AllowList,
    check_client_values,
)
from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.settings import DEFAULT_REALTIME_MODEL, WorkerSettings
from tests.support.realtime_sim import Driver, pcmu_update, types

TOOL: dict[str, Any] = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order.",
    "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
}


def update(**session: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(pcmu_update())
    for key, value in session.items():
        event["session"][key] = value
    return event


def with_voice(voice: object) -> dict[str, Any]:
    event = update()
    event["session"]["audio"]["output"]["voice"] = voice
    return event


def create(**response: Any) -> dict[str, Any]:
    return {"type": "response.create", "event_id": "evt_r", "response": response}


def refused(event: dict[str, Any]) -> tuple[str, str, str]:
    problem = check_client_values(event, AllowList())
    assert problem is not None, event
    return problem.code, problem.param, problem.message


def test_the_lists_come_from_the_installed_sdk_and_hold_the_workers_defaults() -> None:
    assert DEFAULT_REALTIME_MODEL in REALTIME_MODELS and "gpt-realtime" in REALTIME_MODELS
    assert "gpt-transcribe" in TRANSCRIPTION_MODELS and "whisper-1" in TRANSCRIPTION_MODELS
    assert {"marin", "cedar", "alloy"} <= VOICES
    assert "gpt-4o" not in REALTIME_MODELS  # a chat model is not a realtime model


def test_the_workers_own_session_update_passes() -> None:
    assert check_client_values(update(), AllowList()) is None
    assert check_client_values(with_voice({"id": "voice_1234"}), AllowList()) is None


def test_the_workers_defaults_pass() -> None:
    """What a worker with no configuration sends (its model, voice and transcription model
    by default, its built-in tool and a TOOLS_FILE tool) passes every value check."""
    settings = WorkerSettings.from_env(
        {"REDIS_URL": "redis://localhost", "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime"}
    )
    options = rt.SessionOptions(
        model=settings.realtime_model,
        instructions=settings.instructions,
        voice=settings.voice,
        transcription_model=settings.transcription_model,
        turn_detection="server_vad",
        tools=(rt.END_CALL_TOOL, TOOL),
    )
    event = json.loads(rt.session_update("evt_update", options))
    assert check_client_values(event, AllowList()) is None
    assert AllowList().model(settings.realtime_model)


@pytest.mark.parametrize(
    ("voice", "param"),
    [
        ("bob", "session.audio.output.voice"),
        ("Marin", "session.audio.output.voice"),
        ({"id": "1234"}, "session.audio.output.voice.id"),
    ],
)
def test_unknown_voices_are_refused(voice: object, param: str) -> None:
    code, where, message = refused(with_voice(voice))
    assert (code, where) == ("invalid_value", param)
    if isinstance(voice, str):
        assert f"'{voice}'" in message and "'marin'" in message


def test_a_response_voice_is_checked_too() -> None:
    event = create(audio={"output": {"voice": "nobody"}})
    assert refused(event)[:2] == ("invalid_value", "response.audio.output.voice")


def test_an_unknown_session_model_is_model_not_found_unless_allowed() -> None:
    event = update(model="gpt-realtime-9")
    code, param, message = refused(event)
    assert (code, param) == ("model_not_found", "session.model")
    assert message == ("The model `gpt-realtime-9` does not exist or you do not have access to it.")
    assert check_client_values(event, AllowList(models=frozenset({"gpt-realtime-9"}))) is None
    assert check_client_values(event, AllowList(any_model=True)) is None


def test_an_unknown_transcription_model_is_refused_unless_allowed() -> None:
    event = json.loads(pcmu_update("gpt-4o-transcriber"))
    code, param, message = refused(event)
    assert (code, param) == ("invalid_value", "session.audio.input.transcription.model")
    assert "'gpt-transcribe'" in message
    allow = AllowList(transcription_models=frozenset({"gpt-4o-transcriber"}))
    assert check_client_values(event, allow) is None
    # --any-model is about the realtime model only.
    assert check_client_values(event, AllowList(any_model=True)) is not None


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"name": "lookup order"}, "invalid_value", "name"),
        ({"name": "x" * 65}, "invalid_value", "name"),
        ({"name": "lookup.order"}, "invalid_value", "name"),
        ({"description": "d" * 1025}, "string_above_max_length", "description"),
        ({"parameters": {"type": "array", "items": {}}}, "invalid_value", "parameters"),
        ({"parameters": {"type": "object", "properties": 3}}, "invalid_value", "parameters"),
        ({"parameters": {"type": "objet"}}, "invalid_value", "parameters"),
        ({"parameters": "an object"}, "invalid_value", "parameters"),
    ],
)
def test_bad_function_tools_are_refused(change: dict[str, Any], code: str, field: str) -> None:
    tools = [TOOL, {**TOOL, **change}]
    assert refused(update(tools=tools))[:2] == (code, f"session.tools[1].{field}")
    assert refused(create(tools=tools))[:2] == (code, f"response.tools[1].{field}")


def test_good_function_tools_pass() -> None:
    edge = {**TOOL, "name": "a" * 64, "description": "d" * 1024}
    bare = {"type": "function", "name": "no-params_1"}
    tools = [TOOL, edge, rt.END_CALL_TOOL, bare, {**bare, "parameters": None}]
    assert check_client_values(update(tools=tools), AllowList()) is None


def test_a_tool_without_a_name_is_missing_a_parameter() -> None:
    nameless = {k: v for k, v in TOOL.items() if k != "name"}
    assert refused(update(tools=[nameless]))[:2] == (
        "missing_required_parameter",
        "session.tools[0].name",
    )


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({f"k{i}": "v" for i in range(17)}, "invalid_value"),
        ({"k" * 65: "v"}, "string_above_max_length"),
        ({"k": "v" * 513}, "string_above_max_length"),
    ],
)
def test_response_metadata_limits(metadata: dict[str, str], code: str) -> None:
    assert refused(create(metadata=metadata))[0] == code
    fits = {f"{'k' * 62}{i:02d}": "v" * 512 for i in range(16)}
    assert check_client_values(create(metadata=fits), AllowList()) is None


def test_the_session_answers_a_refused_value_with_one_error_and_changes_nothing() -> None:
    d = Driver()
    (error,) = d.send(json.dumps(with_voice("bob")))
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "session.audio.output.voice"
    assert error["error"]["event_id"] == "evt_update"
    assert d.record.session_formats["input"] == "audio/pcm"  # not applied
    assert d.record.invalid_events and d.record.client_events == {}
    (error,) = d.send(json.dumps(update(model="gpt-5")))
    assert error["error"]["code"] == "model_not_found"
    assert types(d.send(pcmu_update())) == ["session.updated"]


def test_an_unknown_model_on_the_url_is_an_error_then_a_close() -> None:
    d = Driver(model="gpt-realtime-preview-9")
    (error,) = d.events  # no session.created
    assert error["type"] == "error"
    assert error["error"]["code"] == "model_not_found"
    assert error["error"]["param"] == "model"
    assert "`gpt-realtime-preview-9`" in error["error"]["message"]
    close = d.session.close_due()
    assert close is not None and close.code == 1008
    assert d.session.close_due() is None  # handed over once
    assert d.send(pcmu_update()) == []  # closing: nothing more


def test_an_allowed_model_on_the_url_opens_the_session() -> None:
    d = Driver(model="my-model", allow=AllowList(models=frozenset({"my-model"})))
    (created,) = d.events
    assert created["session"]["model"] == "my-model"
    assert d.session.close_due() is None


def test_cli_flags() -> None:
    allow = config_from_args(
        build_parser().parse_args(
            [
                "--allow-model",
                "a",
                "--allow-model",
                "b",
                "--allow-transcription-model",
                "t",
            ]
        )
    ).behaviour.allow
    assert allow == AllowList(frozenset({"a", "b"}), False, frozenset({"t"}))
    assert config_from_args(build_parser().parse_args(["--any-model"])).behaviour.allow.any_model
    assert config_from_args(build_parser().parse_args([])).behaviour.allow == AllowList()
