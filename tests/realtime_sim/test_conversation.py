"""The conversation item store and its editing rules."""

from __future__ import annotations

import pytest

from services.realtime_sim.conversation import Conversation, ItemError
from services.realtime_sim.server_events import assistant_item


def test_items_chain_and_delete_moves_the_tail() -> None:
    c = Conversation()
    assert c.add(assistant_item("a", "completed", "")) is None
    assert c.add(assistant_item("b", "completed", "")) == "a"
    c.delete("b")
    assert c.add(assistant_item("c", "completed", "")) == "a"
    with pytest.raises(ItemError) as missing:
        c.delete("b")
    assert missing.value.code == "item_not_found"


def test_create_assigns_ids_and_refuses_duplicates() -> None:
    c = Conversation()
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    body, previous = c.create(item, lambda prefix: f"{prefix}_1")
    assert previous is None
    assert body == {**item, "id": "item_1", "object": "realtime.item", "status": "completed"}
    assert "id" not in item  # the client's dict is not modified
    with pytest.raises(ItemError) as duplicate:
        c.create({**item, "id": "item_1"}, lambda prefix: "unused")
    assert duplicate.value.code == "item_already_exists"


def test_truncate_bounds() -> None:
    c = Conversation()
    c.add(assistant_item("a", "completed", ""))
    c.get("a").audio_bytes = 8000  # 1000 ms
    c.check_truncate("a", 0, 1000)
    c.check_truncate("a", 0, 0)
    for content_index, end_ms in [(0, 1001), (0, -1), (1, 10)]:
        with pytest.raises(ItemError) as bad:
            c.check_truncate("a", content_index, end_ms)
        assert bad.value.code == "invalid_value"
    c.create({"type": "message", "role": "user", "content": []}, lambda prefix: "u")
    with pytest.raises(ItemError):
        c.check_truncate("u", 0, 0)
