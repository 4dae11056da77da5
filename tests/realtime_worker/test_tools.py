"""Tools from TOOLS_FILE: the file's validation, the session's tool list, and the HTTP call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.tool_runner import run_tool
from services.realtime_worker.tools import (
    MAX_OUTPUT_CHARS,
    Tool,
    ToolsError,
    load_tools,
    parse_tools,
    session_tools,
)
from shared.errors import ConfigError
from tests.support.strict_events import check_client_event

pytestmark = pytest.mark.anyio

LOOKUP: dict[str, Any] = {
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {
        "type": "object",
        "properties": {"order": {"type": "string"}},
        "required": ["order"],
    },
    "url": "http://tools.internal/lookup",
}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_valid_file_loads_with_default_and_given_timeouts(tmp_path: Path) -> None:
    other = LOOKUP | {"name": "weather", "url": "https://w.example/x", "timeout_s": 2}
    tools = load_tools(_write(tmp_path, [LOOKUP, other]))
    assert [(t.name, t.timeout_s) for t in tools] == [("lookup_order", 5.0), ("weather", 2.0)]
    assert load_tools(_write(tmp_path, {"tools": [LOOKUP]}))[0].url == LOOKUP["url"]
    assert load_tools("") == ()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "has space"}, "'name'"),
        ({"name": "end_call"}, "'name'"),
        ({"name": "x" * 65}, "'name'"),
        ({"description": ""}, "'description'"),
        ({"parameters": {"type": "string"}}, "'parameters'"),
        ({"parameters": [1]}, "'parameters'"),
        ({"description": "x" * 1025}, "'description' has 1025 characters"),
        ({"parameters": {"type": "object", "properties": []}}, "'parameters' is not a valid"),
        (
            {"parameters": {"type": "object", "properties": {"order": {"type": "text"}}}},
            "JSON Schema at properties/order/type",
        ),
        (
            {"parameters": {"type": "object", "required": "order"}},
            "JSON Schema at required",
        ),
        ({"url": "ftp://x/y"}, "'url'"),
        ({"url": "not a url"}, "'url'"),
        ({"timeout_s": 31}, "'timeout_s'"),
        ({"timeout_s": 0}, "'timeout_s'"),
        ({"timeout_s": "5"}, "'timeout_s'"),
        ({"method": "GET"}, "'method'"),
    ],
)
def test_problems_name_the_file_the_tool_and_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = _write(tmp_path, [LOOKUP | change])
    with pytest.raises(ToolsError) as caught:
        load_tools(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message
    name = (LOOKUP | change)["name"]
    assert f"tool {name!r}" in message


def test_missing_fields_and_bad_entries_are_all_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"name": "a"}, 7, LOOKUP, LOOKUP])
    message = str(pytest.raises(ToolsError, load_tools, path).value)
    for expected in ("tool 'a': field 'description'", "tool 'a': field 'url'", "tool #2"):
        assert expected in message
    assert "declared twice" in message


@pytest.mark.parametrize("text", ["{not json", '{"a": 1}', "3"])
def test_a_file_that_is_not_a_list_of_tools_is_refused(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    assert str(path) in str(pytest.raises(ToolsError, load_tools, path).value)
    assert str(tmp_path / "nope.json") in str(
        pytest.raises(ToolsError, load_tools, tmp_path / "nope.json").value
    )


def test_worker_settings_check_the_file_at_start_up(tmp_path: Path) -> None:
    env = {"OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime", "WORKER_ID": "w1"}
    good = _write(tmp_path, [LOOKUP])
    settings = WorkerSettings.from_env(env | {"TOOLS_FILE": str(good)})
    assert str(settings.tools_file) == str(good)  # the start-up dump shows the path
    assert [tool.name for tool in settings.tools] == ["lookup_order"]  # parsed once, here
    assert WorkerSettings.from_env(env).tools == ()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([LOOKUP | {"url": "nowhere"}]))
    with pytest.raises(ConfigError) as caught:
        WorkerSettings.from_env(env | {"TOOLS_FILE": str(bad)})
    assert "TOOLS_FILE" in str(caught.value) and "'url'" in str(caught.value)
    assert "lookup_order" in str(caught.value)


def test_the_session_tool_list_passes_strict_validation() -> None:
    tools = parse_tools([LOOKUP])
    listed = session_tools((rt.END_CALL_TOOL,), tools)
    assert [t["name"] for t in listed] == ["end_call", "lookup_order"]
    options = rt.SessionOptions(
        "gpt-realtime", "Be brief.", "marin", None, "server_vad", True, listed
    )
    event = json.loads(rt.session_update("e1", options))
    check_client_event(event)
    assert event["session"]["tools"][1] == {
        "type": "function",
        "name": "lookup_order",
        "description": LOOKUP["description"],
        "parameters": LOOKUP["parameters"],
    }


# --- the HTTP call ----------------------------------------------------------------------------

TOOL = Tool("lookup_order", "Find an order.", {"type": "object"}, "http://tools.internal/x", 1.0)


def _client(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_posts_the_call_sid_and_arguments_and_returns_the_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="order 42 ships tomorrow")

    async with _client(handler) as client:
        result = await run_tool(client, TOOL, "CA1", '{"order": "42"}', {"name": "Ada"})
    assert (result.output, result.outcome, result.problem) == (
        "order 42 ships tomorrow",
        "ok",
        None,
    )
    (request,) = seen
    assert request.method == "POST" and str(request.url) == TOOL.url
    assert json.loads(request.content) == {
        "call_sid": "CA1",
        "arguments": {"order": "42"},
        "variables": {"name": "Ada"},
    }
    assert request.headers["content-type"] == "application/json"


async def test_a_long_answer_is_truncated() -> None:
    async with _client(lambda r: httpx.Response(200, text="x" * 10_000)) as client:
        result = await run_tool(client, TOOL, "CA1", "{}")
    assert len(result.output) == MAX_OUTPUT_CHARS + 1


@pytest.mark.parametrize(
    ("handler", "arguments", "outcome", "says"),
    [
        (lambda r: httpx.Response(500, text="boom"), "{}", "http_error", "HTTP 500"),
        (lambda r: httpx.Response(404), "{}", "http_error", "HTTP 404"),
        (lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow")), "{}", "timeout", "within 1 s"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "{}", "unreachable", ""),
        (lambda r: httpx.Response(200), "{not json", "bad_arguments", "invalid arguments"),
        (lambda r: httpx.Response(200), "[1, 2]", "bad_arguments", "invalid arguments"),
    ],
)
async def test_failures_become_a_clear_message_for_the_model(
    handler: Any, arguments: str, outcome: str, says: str
) -> None:
    async with _client(handler) as client:
        result = await run_tool(client, TOOL, "CA1", arguments)
    assert result.outcome == outcome
    message = json.loads(result.output)["error"]
    assert message.startswith("the tool lookup_order failed: ")
    assert says in message
