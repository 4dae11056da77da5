"""The built-in transfer_call tool (transfer_tool.py): its definition, checked the way the
Realtime server would, and the model's arguments turned into a transfer or an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from services.realtime_sim.client_events import validate_client_event
from services.realtime_sim.values import AllowList, check_client_values
from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.settings import DEFAULT_REALTIME_MODEL
from services.realtime_worker.tools import ToolsError, load_tools, parse_tools
from services.realtime_worker.transfer_tool import (
    MAX_SUMMARY_CHARS,
    TRANSFER_CALL,
    Transfer,
    parse_transfer,
    transfer_tool,
)

TARGETS = {
    "sales": "sip:sales@pbx.example.com",
    "billing": "+15005550007",
    "Night_Desk": "+15005550008",
}


def _args(**values: Any) -> str:
    return json.dumps(values)


# --- the definition ---------------------------------------------------------------------------


def test_the_definition() -> None:
    tool = transfer_tool(TARGETS)
    assert TRANSFER_CALL == "transfer_call"
    assert (tool["type"], tool["name"]) == ("function", "transfer_call")
    assert isinstance(tool["description"], str) and tool["description"]
    parameters = tool["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["target", "summary"]
    assert parameters["additionalProperties"] is False
    assert set(parameters["properties"]) == {"target", "summary"}
    target = parameters["properties"]["target"]
    assert (target["type"], target["enum"]) == ("string", ["Night_Desk", "billing", "sales"])
    assert parameters["properties"]["summary"]["type"] == "string"
    assert set(tool) == {"type", "name", "description", "parameters"}


def test_the_enum_follows_the_targets() -> None:
    enum = transfer_tool({"b": "+15005550007"})["parameters"]["properties"]["target"]["enum"]
    assert enum == ["b"]
    # Each call builds its own definition: one agent's targets never leak into another's.
    assert transfer_tool({"z": "+1500555", "a": "+1500556"})["parameters"]["properties"]["target"][
        "enum"
    ] == ["a", "z"]


@pytest.mark.parametrize("targets", [TARGETS, {"billing": "+15005550007"}])
def test_the_realtime_simulator_accepts_the_definition(targets: dict[str, str]) -> None:
    options = rt.SessionOptions(
        model=DEFAULT_REALTIME_MODEL,
        instructions="You are the support line.",
        voice="marin",
        transcription_model="gpt-4o-transcribe",
        turn_detection="server_vad",
        tools=(rt.END_CALL_TOOL, transfer_tool(targets)),
    )
    event = json.loads(rt.session_update("evt_update", options))
    assert event["session"]["tools"][1] == transfer_tool(targets)
    assert validate_client_event(event) == []
    assert check_client_values(event, AllowList()) is None
    response = {"type": "response.create", "response": {"tools": [transfer_tool(targets)]}}
    assert validate_client_event(response) == []
    assert check_client_values(response, AllowList()) is None


def test_the_parameters_are_a_schema_that_admits_only_a_known_target_and_a_summary() -> None:
    validator = jsonschema.Draft202012Validator(transfer_tool(TARGETS)["parameters"])
    validator.check_schema(validator.schema)
    assert validator.is_valid({"target": "billing", "summary": "Ada wants a refund."})
    assert not validator.is_valid({"target": "hr", "summary": "x"})
    assert not validator.is_valid({"target": "billing"})
    assert not validator.is_valid({"summary": "x"})
    assert not validator.is_valid({"target": "billing", "summary": "x", "urgent": True})
    assert not validator.is_valid({"target": "billing", "summary": 3})


# --- the model's arguments --------------------------------------------------------------------


@pytest.mark.parametrize("warm", [False, True])
def test_valid_arguments_are_a_transfer_to_the_targets_address(warm: bool) -> None:
    result = parse_transfer(_args(target="sales", summary="Ada wants a quote."), TARGETS, warm)
    assert result == Transfer("sales", "sip:sales@pbx.example.com", "Ada wants a quote.", warm)
    result = parse_transfer(_args(target="billing", summary="Refund."), TARGETS, warm)
    assert result == Transfer("billing", "+15005550007", "Refund.", warm)


def test_the_summary_whitespace_is_collapsed() -> None:
    arguments = _args(target="billing", summary="  Ada\n wants \t a\u00a0refund.\r\n ")
    result = parse_transfer(arguments, TARGETS, False)
    assert isinstance(result, Transfer)
    assert result.summary == "Ada wants a refund."


def test_the_summary_is_capped() -> None:
    result = parse_transfer(_args(target="billing", summary="x" * 700), TARGETS, True)
    assert isinstance(result, Transfer)
    assert result.summary == "x" * MAX_SUMMARY_CHARS
    assert MAX_SUMMARY_CHARS == 600


def test_the_summary_is_capped_after_collapsing() -> None:
    summary = "word    " * 150  # 1200 characters, 750 once collapsed
    result = parse_transfer(_args(target="billing", summary=summary), TARGETS, True)
    assert isinstance(result, Transfer)
    assert result.summary == ("word " * 150)[:MAX_SUMMARY_CHARS]
    assert len(result.summary) == MAX_SUMMARY_CHARS


def test_a_missing_summary_is_empty() -> None:
    result = parse_transfer(_args(target="billing"), TARGETS, False)
    assert result == Transfer("billing", "+15005550007", "", False)


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        (_args(target="hr", summary="x"), "'hr'"),
        (_args(target="Billing", summary="x"), "'Billing'"),  # names are exact
        (_args(target="+15005550007", summary="x"), "'+15005550007'"),  # not an address
        (_args(target=["billing"], summary="x"), "\"['billing']\""),
        (_args(target="h" * 100, summary="x"), repr("h" * 64)),
    ],
)
def test_an_unknown_target_is_answered_with_the_targets(arguments: str, shown: str) -> None:
    assert parse_transfer(arguments, TARGETS, False) == (
        f"there is no transfer target {shown}; the targets are: Night_Desk, billing, sales"
    )


def test_a_missing_target_is_answered_with_the_targets() -> None:
    result = parse_transfer(_args(summary="x"), TARGETS, False)
    assert isinstance(result, str)
    assert result.endswith("; the targets are: Night_Desk, billing, sales")
    assert result.startswith("there is no transfer target ")


def test_without_targets_the_answer_says_none() -> None:
    assert parse_transfer(_args(target="billing", summary="x"), {}, False) == (
        "there is no transfer target 'billing'; the targets are: none"
    )


@pytest.mark.parametrize("arguments", ["{not json", "{'target': 'billing'}", '{"target": '])
def test_arguments_that_are_not_json(arguments: str) -> None:
    assert parse_transfer(arguments, TARGETS, False) == "the arguments are not JSON"


def test_no_arguments_at_all_name_no_target() -> None:
    result = parse_transfer("", TARGETS, False)
    assert isinstance(result, str)
    assert result.startswith("there is no transfer target ")
    assert result.endswith("; the targets are: Night_Desk, billing, sales")


@pytest.mark.parametrize("arguments", ["[1]", '"billing"', "3", "null"])
def test_arguments_that_are_not_an_object(arguments: str) -> None:
    assert parse_transfer(arguments, TARGETS, False) == (
        "the arguments must be an object with target and summary"
    )


@pytest.mark.parametrize("summary", [3, None, ["x"], {"a": 1}, True])
def test_a_summary_that_is_not_a_string(summary: object) -> None:
    arguments = json.dumps({"target": "billing", "summary": summary})
    assert parse_transfer(arguments, TARGETS, False) == "summary must be a string"


# --- TOOLS_FILE cannot take the name ----------------------------------------------------------

RESERVED_TOOL = {
    "name": "transfer_call",
    "description": "My own transfer.",
    "parameters": {"type": "object", "properties": {}},
    "url": "http://tools.internal/transfer",
}


def test_tools_file_cannot_declare_a_tool_named_transfer_call(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([RESERVED_TOOL]))
    message = str(pytest.raises(ToolsError, load_tools, path).value)
    assert message == (
        f"{path}: tool 'transfer_call': field 'name': 'transfer_call' is built in and cannot be "
        "redefined"
    )


def test_a_tool_with_a_similar_name_is_fine() -> None:
    (tool,) = parse_tools([RESERVED_TOOL | {"name": "transfer_call_v2"}])
    assert tool.name == "transfer_call_v2"
