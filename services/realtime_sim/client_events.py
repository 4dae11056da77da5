"""Strict validation of Realtime GA events against the ``openai`` package's pydantic types.

The SDK models accept unknown fields and coerce types (docs/protocols.md §6.2), so on their own they
would wave through exactly the mistakes this simulator exists to catch. Here each event is
validated against the one union member its ``type`` names, in strict mode, and every field the
model kept as an "extra" is reported by path.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, Final

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

__all__ = [
    "SERVER_EXTRAS",
    "event_models",
    "strict_problems",
    "validate_client_event",
    "validate_server_event",
]

# Fields the real server sends in its session object that the SDK's session model lacks.
SERVER_EXTRAS: Final = frozenset({"session.id", "session.object", "session.expires_at"})

_MAX_PROBLEMS: Final = 8


def _union_members(union: object) -> tuple[type[pydantic.BaseModel], ...]:
    # The unions are Annotated[Union[...], PropertyInfo(...)]; unwrap the Annotated first.
    inner = typing.get_args(union)[0] if typing.get_origin(union) is typing.Annotated else union
    return tuple(typing.get_args(inner))


@cache
def event_models(direction: str) -> Mapping[str, type[pydantic.BaseModel]]:
    """Event ``type`` string → SDK model class, for ``"client"`` or ``"server"`` events."""
    union = RealtimeClientEvent if direction == "client" else RealtimeServerEvent
    table: dict[str, type[pydantic.BaseModel]] = {}
    for model in _union_members(union):
        (name,) = typing.get_args(model.model_fields["type"].annotation)
        table[name] = model
    return table


def _extras(value: object, path: str) -> Iterator[str]:
    """Dotted paths of every field a validated model kept as an extra, depth first."""
    if isinstance(value, pydantic.BaseModel):
        prefix = f"{path}." if path else ""
        for key in value.model_extra or {}:
            yield f"{prefix}{key}"
        for name, info in type(value).model_fields.items():
            yield from _extras(getattr(value, name), f"{prefix}{info.alias or name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _extras(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extras(item, f"{path}.{key}")


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(event)"
    return f"{where}: {error['msg']}"


def strict_problems(
    model: type[pydantic.BaseModel], obj: Mapping[str, Any], allowed_extras: frozenset[str]
) -> list[str]:
    """Problems found validating ``obj`` as ``model``: strict types, and no unknown fields."""
    try:
        validated = model.model_validate(obj, strict=True)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [_describe(error) for error in errors[:_MAX_PROBLEMS]]
        if len(errors) > _MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - _MAX_PROBLEMS} more problems")
        return problems
    return [
        f"Unknown parameter: '{path}'"
        for path in _extras(validated, "")
        if path not in allowed_extras
    ]


def _validate(obj: object, direction: str, allowed_extras: frozenset[str]) -> list[str]:
    if not isinstance(obj, dict):
        return [f"an event must be a JSON object, not {type(obj).__name__}"]
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ["missing required parameter 'type' (a string)"]
    model = event_models(direction).get(kind)
    if model is None:
        return [f"Invalid value: '{kind}' is not a GA {direction} event type"]
    return strict_problems(model, obj, allowed_extras)


def validate_client_event(obj: object) -> list[str]:
    """Human-readable problems with one decoded client event; an empty list means valid."""
    return _validate(obj, "client", frozenset())


def validate_server_event(obj: object) -> list[str]:
    """The same check for a server event, allowing only the known ``SERVER_EXTRAS``."""
    return _validate(obj, "server", SERVER_EXTRAS)
