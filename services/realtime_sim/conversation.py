"""The simulated conversation: its items in order, and the rules for editing them.

Violations raise ``ItemError`` carrying the error code the real server uses, so the session
can answer with an ``error`` event and leave the conversation unchanged. Tool call ids are
scoped to the conversation: a function output must answer a ``function_call`` item in it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.audio import BYTES_PER_MS

__all__ = ["Conversation", "Item", "ItemError"]

Json = dict[str, Any]


class ItemError(Exception):
    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class Item:
    body: Json  # as the server reports it
    audio_bytes: int = 0  # assistant audio generated for it: the bound for truncation


class Conversation:
    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._last: str | None = None

    def add(self, body: Json) -> str | None:
        """Append an item (its ``id`` set); the id of the item before it, if any."""
        previous = self._last
        self._items[body["id"]] = Item(body)
        self._last = body["id"]
        return previous

    def get(self, item_id: str) -> Item:
        item = self._items.get(item_id)
        if item is None:
            raise ItemError(
                "item_not_found", f"Conversation item '{item_id}' does not exist.", "item_id"
            )
        return item

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        del self._items[item_id]
        if self._last == item_id:
            self._last = next(reversed(self._items), None)

    def has_call(self, call_id: str) -> bool:
        """Whether a ``function_call`` item of the conversation has this ``call_id``."""
        return any(
            item.body.get("type") == "function_call" and item.body.get("call_id") == call_id
            for item in self._items.values()
        )

    def create(self, item: Json, new_id: Callable[[str], str]) -> tuple[Json, str | None]:
        """Add a client-supplied item: the stored copy and the previous item's id.
        ``new_id(prefix)`` makes the ids the client left out ("item", "call")."""
        body = copy.deepcopy(item)
        body["id"] = body.get("id") or new_id("item")
        if body["id"] in self._items:
            message = f"Conversation item '{body['id']}' already exists."
            raise ItemError("item_already_exists", message, "item.id")
        kind = body.get("type")
        if kind == "function_call_output" and not self.has_call(body["call_id"]):
            message = f"Tool call ID '{body['call_id']}' not found in conversation."
            raise ItemError("invalid_tool_call_id", message, "item.call_id")
        if kind == "function_call":
            body["call_id"] = body.get("call_id") or new_id("call")
        if kind in ("message", "function_call", "function_call_output"):
            body.setdefault("object", "realtime.item")
            body.setdefault("status", "completed")
        return body, self.add(body)

    def check_truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """Raise unless the item is assistant audio at least ``audio_end_ms`` long."""
        item = self.get(item_id)
        if item.body.get("role") != "assistant" or content_index != 0:
            message = "Only content 0 of an assistant message can be truncated."
            raise ItemError("invalid_value", message, "item_id")
        if audio_end_ms < 0 or audio_end_ms * BYTES_PER_MS > item.audio_bytes:
            message = (
                f"audio_end_ms {audio_end_ms} is outside the item's audio "
                f"({item.audio_bytes // BYTES_PER_MS} ms)."
            )
            raise ItemError("invalid_value", message, "audio_end_ms")
