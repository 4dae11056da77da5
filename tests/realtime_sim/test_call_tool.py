"""The simulator calling a configured tool (--call-tool), and what it records of the client's
items: function outputs and user texts (DTMF)."""

from __future__ import annotations

import json

import pytest

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import CALLER, Driver, of_type, types

LOOKUP: dict[str, object] = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order.",
    "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
}


def _update(*tools: dict[str, object]) -> str:
    options = rt.SessionOptions(
        model="gpt-realtime",
        instructions="Be brief.",
        voice="marin",
        transcription_model=None,
        turn_detection="server_vad",
        tools=(rt.END_CALL_TOOL, *tools),
    )
    return rt.session_update("evt_update", options)


def test_the_first_turn_calls_the_tool_then_the_reply_follows_its_output() -> None:
    d = Driver(call_tool="lookup_order", tool_arguments='{"order": "42"}')
    d.send(_update(LOOKUP))
    first = d.speak(CALLER)
    (done,) = of_type(first, "response.done")
    (call,) = done["response"]["output"]
    assert (call["type"], call["name"], call["arguments"]) == (
        "function_call",
        "lookup_order",
        '{"order": "42"}',
    )
    assert not of_type(first, "response.output_audio.delta")
    assert d.record.function_calls == ["lookup_order"]
    output = rt.function_call_output_item(call["call_id"], "order 42: shipped")
    assert types(d.send(rt.conversation_item_create("evt_out", output)))[0] == (
        "conversation.item.added"
    )
    assert d.record.tool_outputs == ["order 42: shipped"]
    assert types(d.send(rt.response_create("evt_reply")))[0] == "response.created"
    reply = d.steps()
    assert of_type(reply, "response.output_audio.delta")
    assert of_type(reply, "response.done")[0]["response"]["status"] == "completed"
    # Only once: the next turn is answered with speech.
    d.speak(CALLER)
    assert d.record.function_calls == ["lookup_order"]
    assert d.record.invalid_events == [] and d.record.errors == []
    assert d.record.to_json()["tool_outputs"] == ["order 42: shipped"]


def test_a_tool_the_session_does_not_declare_is_not_called() -> None:
    d = Driver(call_tool="lookup_order")
    d.send(_update())
    assert of_type(d.speak(CALLER), "response.created")
    assert d.record.function_calls == []


def test_user_texts_are_recorded() -> None:
    d = Driver()
    d.send(_update())
    d.send(rt.conversation_item_create("evt_1", rt.user_text_item("The caller pressed 4.")))
    assert d.record.user_texts == ["The caller pressed 4."]
    assert d.record.to_json()["user_texts"] == ["The caller pressed 4."]


def test_cli_options() -> None:
    args = build_parser().parse_args(["--call-tool", "x", "--tool-arguments", '{"a": 1}'])
    behaviour = config_from_args(args).behaviour
    assert (behaviour.call_tool, json.loads(behaviour.tool_arguments)) == ("x", {"a": 1})
    assert config_from_args(build_parser().parse_args([])).behaviour.call_tool is None
    with pytest.raises(ValueError, match="JSON object"):
        config_from_args(build_parser().parse_args(["--tool-arguments", "[1]"]))
