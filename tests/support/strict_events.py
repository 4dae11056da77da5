"""A strict checker for client events against openai-python's GA types (docs/protocols.md §6.3)."""

from __future__ import annotations

import typing
from typing import Any

from openai.types.realtime import RealtimeClientEvent
from pydantic import BaseModel


def _members(union: Any) -> dict[str, type[BaseModel]]:
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    table: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(union):
        (name,) = typing.get_args(member.model_fields["type"].annotation)
        table[name] = member
    return table


CLIENT_EVENTS = _members(RealtimeClientEvent)


def _extras(value: object, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += _extras(item, f"{path}[{i}]")
    return found


def check_client_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid GA client event with no extra fields."""
    cls = CLIENT_EVENTS.get(event.get("type"))  # type: ignore[arg-type]
    assert cls is not None, f"unknown client event type {event.get('type')!r}"
    model = cls.model_validate(event, strict=True)
    extras = _extras(model, "event")
    assert not extras, f"fields the GA API does not define: {extras}"
