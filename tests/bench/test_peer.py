"""The peer's protocol handling, against fake sockets: what goes to the model and to Twilio."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.protocol import State

from services.bench.peer import MARK_NAME, PeerCall

pytestmark = pytest.mark.anyio


class FakeTwilio:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = [json.dumps(m) for m in messages]
        self.sent: list[dict[str, Any]] = []

    async def iter_text(self) -> AsyncIterator[str]:
        for text in self.messages:
            yield text

    async def send_json(self, data: Any, mode: str = "text") -> None:
        self.sent.append(data)


class FakeModel:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = [json.dumps(e) for e in events]
        self.sent: list[dict[str, Any]] = []
        self.state = State.OPEN

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    async def close(self) -> None:
        self.state = State.CLOSED

    async def __aiter__(self) -> AsyncIterator[str]:
        for text in self.events:
            yield text


def _media(timestamp: int, payload: str = "//79") -> dict[str, Any]:
    return {"event": "media", "media": {"timestamp": str(timestamp), "payload": payload}}


def _delta(item: str, audio: bytes) -> dict[str, Any]:
    return {
        "type": "response.output_audio.delta",
        "item_id": item,
        "delta": base64.b64encode(audio).decode(),
    }


async def test_caller_audio_goes_to_the_model_as_it_came_and_the_socket_closes_after() -> None:
    twilio = FakeTwilio([{"event": "start", "start": {"streamSid": "MZ1"}}, _media(20, "AAEC")])
    model = FakeModel([])
    await PeerCall(twilio, model).run()
    assert model.sent[0]["type"] == "session.update"
    assert model.sent[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert model.sent[1] == {"type": "input_audio_buffer.append", "audio": "AAEC"}
    assert model.state is State.CLOSED


async def test_each_delta_is_a_media_message_and_a_mark() -> None:
    peer = PeerCall(FakeTwilio([]), FakeModel([_delta("it1", b"\x01\x02\x03\x04")] * 2))
    peer.stream_sid = "MZ1"
    await peer.from_model()
    sent = peer.twilio.sent  # type: ignore[attr-defined]
    assert [m["event"] for m in sent] == ["media", "mark", "media", "mark"]
    assert sent[0] == {"event": "media", "streamSid": "MZ1", "media": {"payload": "AQIDBA=="}}
    assert sent[1]["mark"] == {"name": MARK_NAME} and peer.marks == [MARK_NAME] * 2


async def test_speech_over_a_playing_reply_truncates_it_by_the_media_clock_and_clears() -> None:
    twilio = FakeTwilio([])
    model = FakeModel([_delta("it1", b"\x01" * 160), {"type": "input_audio_buffer.speech_started"}])
    peer = PeerCall(twilio, model)
    peer.stream_sid, peer.media_ms = "MZ1", 1000  # the reply starts at media time 1 s …
    model_events = model.__aiter__()
    await peer._play(json.loads(await anext(model_events)))
    peer.media_ms = 1740  # … and the caller speaks 740 ms later
    await peer._interrupt()
    assert model.sent == [
        {
            "type": "conversation.item.truncate",
            "item_id": "it1",
            "content_index": 0,
            "audio_end_ms": 740,
        }
    ]
    assert twilio.sent[-1] == {"event": "clear", "streamSid": "MZ1"}
    assert peer.marks == [] and peer.reply_item is None


async def test_speech_once_every_mark_came_back_clears_nothing() -> None:
    twilio = FakeTwilio([{"event": "mark", "mark": {"name": MARK_NAME}}])
    model = FakeModel([])
    peer = PeerCall(twilio, model)
    peer.stream_sid, peer.reply_item, peer.reply_began_ms = "MZ1", "it1", 0
    peer.marks = [MARK_NAME]
    await peer.from_twilio()  # the echo pops the last pending mark
    await peer._interrupt()
    assert twilio.sent == [] and model.sent == []
