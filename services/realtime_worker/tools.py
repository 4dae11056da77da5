"""Function tools from configuration (TOOLS_FILE): load, validate, and build the session's list.

The file is a JSON list (or ``{"tools": [...]}``) of objects::

    {"name": "lookup_order", "description": "Find an order by its number.",
     "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
     "url": "https://example.internal/tools/lookup_order", "timeout_s": 5}

When the model calls one, the worker POSTs ``{"call_sid", "arguments", "variables"}`` to its
``url`` and gives the model the response body as the function's output. Pure: no I/O but
reading the file.

Each definition is checked against the limits the Realtime API applies to function tools
(docs/protocols.md §3.4): a name of 1 to 64 letters, digits, ``_`` or ``-``; a description of
at most 1024 characters; ``parameters`` a valid JSON Schema whose type is ``object``. A file
that breaks one stops the worker at start-up instead of failing every call at
``session.update``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jsonschema
from jsonschema.exceptions import SchemaError

from services.realtime_worker.openai_protocol import END_CALL
from services.realtime_worker.transfer_tool import TRANSFER_CALL

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_DESCRIPTION_CHARS",
    "MAX_OUTPUT_CHARS",
    "MAX_TIMEOUT_S",
    "Tool",
    "ToolsError",
    "ToolsFile",
    "load_tools",
    "parse_tools",
    "session_tools",
    "tool_error_output",
]

DEFAULT_TIMEOUT_S: Final = 5.0
MAX_TIMEOUT_S: Final = 30.0
MAX_OUTPUT_CHARS: Final = 4000
MAX_DESCRIPTION_CHARS: Final = 1024
RESERVED: Final = frozenset({END_CALL, TRANSFER_CALL})  # built in: a tools file cannot redefine
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_FIELDS: Final = frozenset({"name", "description", "parameters", "url", "timeout_s"})


class ToolsError(ValueError):
    """The tools file is unusable; the message names the file, the tool and the field."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    def definition(self) -> dict[str, Any]:
        """The tool as a GA ``session.tools`` entry."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


@dataclass(frozen=True, slots=True)
class ToolsFile:
    """A TOOLS_FILE, parsed: its path (what the start-up dump shows) and its tools."""

    path: str
    tools: tuple[Tool, ...]

    def __str__(self) -> str:
        return self.path


def load_tools(path: str | Path | None) -> tuple[Tool, ...]:
    """The tools declared in ``path`` (none for an empty path); raises ToolsError."""
    if not path:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolsError(f"{path}: cannot read the tools file: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ToolsError(f"{path}: not valid JSON: {exc}") from None
    return parse_tools(data, str(path))


def parse_tools(data: Any, source: str = "TOOLS_FILE") -> tuple[Tool, ...]:
    """Validate the parsed file; every problem is reported, each naming tool and field."""
    if isinstance(data, dict) and set(data) == {"tools"}:
        data = data["tools"]
    if not isinstance(data, list):
        raise ToolsError(f'{source}: expected a JSON list of tools (or {{"tools": [...]}})')
    problems: list[str] = []
    tools: list[Tool] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        where = f"{source}: tool #{index + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object")
            continue
        name = entry.get("name")
        if isinstance(name, str) and name:
            where = f"{source}: tool {name!r}"
        found = _check(entry, where, seen)
        problems += found
        if not found:
            seen.add(entry["name"])
            tools.append(
                Tool(
                    name=entry["name"],
                    description=entry["description"],
                    parameters=entry["parameters"],
                    url=entry["url"],
                    timeout_s=float(entry.get("timeout_s", DEFAULT_TIMEOUT_S)),
                )
            )
    if problems:
        raise ToolsError("; ".join(problems))
    return tuple(tools)


def _check(entry: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    problems = [f"{where}: unknown field {key!r}" for key in entry if key not in _FIELDS]
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{where}: field 'name' must match ^[a-zA-Z0-9_-]{{1,64}}$")
    elif name in RESERVED:
        problems.append(f"{where}: field 'name': {name!r} is built in and cannot be redefined")
    elif name in seen:
        problems.append(f"{where}: field 'name': declared twice")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{where}: field 'description' must be a non-empty string")
    elif len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(
            f"{where}: field 'description' has {len(description)} characters; the Realtime API "
            f"takes at most {MAX_DESCRIPTION_CHARS}"
        )
    problems += _check_parameters(entry.get("parameters"), where)
    url = entry.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(f"{where}: field 'url' must be an http:// or https:// URL")
    timeout = entry.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        problems.append(
            f"{where}: field 'timeout_s' must be a number above 0 and at most {MAX_TIMEOUT_S:g}"
        )
    return problems


def _check_parameters(parameters: object, where: str) -> list[str]:
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        return [
            f"{where}: field 'parameters' must be a JSON schema object "
            '({"type": "object", "properties": {...}})'
        ]
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        at = "/".join(str(part) for part in exc.absolute_path) or "(top)"
        return [f"{where}: field 'parameters' is not a valid JSON Schema at {at}: {exc.message}"]
    return []


def session_tools(
    builtin: tuple[dict[str, Any], ...], tools: tuple[Tool, ...]
) -> tuple[dict[str, Any], ...]:
    """The session's ``tools``: the built-in ones, then the configured ones."""
    return builtin + tuple(tool.definition() for tool in tools)


def tool_error_output(name: str, problem: str) -> str:
    """The function output that tells the model a tool failed (JSON text)."""
    return json.dumps({"error": f"the tool {name} failed: {problem}"})
