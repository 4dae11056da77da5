"""Run one call of a configured tool: POST the arguments, return what the model should read.

Never raises for the tool's failures: a timeout, a connection error, a non-2xx status or
arguments that are not a JSON object become a clear error message for the model, and an
outcome for the metric and the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from services.realtime_worker.tools import MAX_OUTPUT_CHARS, Tool, tool_error_output

__all__ = ["ToolResult", "run_tool"]


@dataclass(frozen=True, slots=True)
class ToolResult:
    output: str  # the function_call_output for the model
    outcome: str  # ok, bad_arguments, timeout, unreachable, http_error
    problem: str | None = None  # for the log line, when it failed


def _parse_arguments(text: str) -> dict[str, Any]:
    value = json.loads(text) if text.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("the arguments are not a JSON object")
    return value


async def run_tool(
    client: httpx.AsyncClient,
    tool: Tool,
    call_sid: str,
    arguments: str,
    variables: Mapping[str, str] | None = None,
) -> ToolResult:
    """POST ``{"call_sid", "arguments", "variables"}`` to the tool's URL within its timeout
    (``variables``: the call's, e.g. those an outbound call was placed with)."""

    def failed(outcome: str, problem: str) -> ToolResult:
        return ToolResult(tool_error_output(tool.name, problem), outcome, problem)

    try:
        parsed = _parse_arguments(arguments)
    except ValueError as exc:
        return failed("bad_arguments", f"invalid arguments ({str(exc)[:200]})")
    try:
        response = await client.post(
            tool.url,
            json={"call_sid": call_sid, "arguments": parsed, "variables": dict(variables or {})},
            timeout=tool.timeout_s,
        )
    except httpx.TimeoutException:
        return failed("timeout", f"no answer within {tool.timeout_s:g} s")
    except httpx.HTTPError as exc:
        return failed("unreachable", f"cannot reach the tool ({type(exc).__name__}: {exc})"[:300])
    if not 200 <= response.status_code < 300:
        return failed("http_error", f"HTTP {response.status_code}")
    text = response.text
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + "…"
    return ToolResult(text, "ok")
