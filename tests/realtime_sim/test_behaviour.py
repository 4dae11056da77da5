"""The session logic, driven directly: no sockets, no clock."""

from __future__ import annotations

import base64
import json

import pytest

from services.realtime_sim.behaviour import Mode
from services.realtime_sim.reply import DEFAULT_REPLY_TEXT, default_reply_audio
from services.realtime_worker import openai_protocol as rt
from shared.audio import FRAME_BYTES
from tests.support.realtime_sim import (
    CALLER,
    Driver,
    Event,
    of_type,
    pcmu_update,
    quiet,
    tone,
    types,
)


def test_session_created_has_the_server_defaults() -> None:
    (created,) = Driver().events
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_session_update_is_applied_and_echoed_in_full() -> None:
    d = Driver()
    (updated,) = d.send(pcmu_update())
    session = updated["session"]
    assert updated["type"] == "session.updated"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["instructions"] == "You are a helpful phone agent."
    assert session["tool_choice"] == "auto"  # untouched fields survive
    assert d.record.session_formats == {"input": "audio/pcmu", "output": "audio/pcmu"}


def test_audio_before_pcmu_is_refused() -> None:
    d = Driver(Mode.ECHO)
    (error,) = d.send(rt.audio_append(b"\x01" * 160))
    assert error["error"]["code"] == "unsupported_audio_format"
    assert "audio/pcm" in error["error"]["message"]
    assert d.record.audio_in_bytes == 0


def test_non_pcmu_update_is_answered_with_an_error_and_audio_refused() -> None:
    d = Driver(Mode.ECHO)
    d.send(pcmu_update())
    update = json.loads(pcmu_update())
    update["session"]["audio"]["output"]["format"] = {"type": "audio/pcm", "rate": 24000}
    updated, error = d.send(json.dumps(update))
    assert updated["type"] == "session.updated"
    assert error["error"]["code"] == "unsupported_audio_format"
    assert "audio/pcm" in error["error"]["message"]
    assert error["error"]["event_id"] == "evt_update"
    assert types(d.send(rt.audio_append(b"\x01" * 160))) == ["error"]
    assert d.record.session_formats["output"] == "audio/pcm"


def test_invalid_events_are_answered_with_an_error_and_ignored() -> None:
    d = Driver()
    bad = json.loads(pcmu_update())
    bad["session"]["audio"]["input"]["format"]["rate"] = 8000
    (error,) = d.send(json.dumps(bad))
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "unknown_parameter"
    assert "session.audio.input.format.rate" in error["error"]["message"]
    assert error["error"]["event_id"] == "evt_update"
    assert d.record.session_formats["input"] == "audio/pcm"  # not applied
    (error,) = d.send("{not json")
    assert error["error"]["code"] == "invalid_json"
    assert error["error"]["event_id"] is None
    assert len(d.record.invalid_events) == 2
    assert d.record.client_events == {}


def test_echo_returns_each_append_at_once_in_one_response() -> None:
    d = Driver(Mode.ECHO)
    d.send(pcmu_update())
    chunks = [bytes([i]) * FRAME_BYTES for i in range(5)]
    first = d.send(rt.audio_append(chunks[0]))
    assert types(first)[0] == "response.created"
    assert types(first)[-1] == "response.output_audio.delta"
    deltas = of_type(first, "response.output_audio.delta")
    for chunk in chunks[1:]:
        (delta,) = d.send(rt.audio_append(chunk))
        deltas.append(delta)
    assert [base64.b64decode(e["delta"]) for e in deltas] == chunks
    assert len({(e["response_id"], e["item_id"]) for e in deltas}) == 1
    assert d.session.next_reply_step() is None


def test_conversation_turn_and_reply() -> None:
    d = Driver()
    d.send(pcmu_update())
    heard = d.speak(CALLER)
    assert types(heard) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert heard[0]["audio_start_ms"] == 0 and heard[1]["audio_end_ms"] == 1700
    assert heard[5]["transcript"] == "Hi, I would like to know when my order will arrive."
    assert d.session.reply_pending

    reply = d.steps()
    deltas = of_type(reply, "response.output_audio.delta")
    audio = [base64.b64decode(e["delta"]) for e in deltas]
    assert b"".join(audio) == default_reply_audio()
    sizes = [len(a) for a in audio]
    assert len(sizes) > 10 and len(set(sizes)) > 5
    assert sum(1 for s in sizes if s % FRAME_BYTES == 0) <= 1
    text = "".join(e["delta"] for e in of_type(reply, "response.output_audio_transcript.delta"))
    assert text == DEFAULT_REPLY_TEXT
    assert types(reply)[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    # Transcript pieces are interleaved with the audio, not all sent at the start or end.
    first_text = types(reply).index("response.output_audio_transcript.delta")
    assert 0 < first_text < len(deltas) // 2
    assert reply[-5]["transcript"] == DEFAULT_REPLY_TEXT
    done = reply[-1]["response"]
    assert done["status"] == "completed"
    assert done["id"] == heard[6]["response"]["id"] == deltas[0]["response_id"]
    assert done["output"][0]["content"][0]["transcript"] == DEFAULT_REPLY_TEXT
    usage = done["usage"]
    assert usage["output_token_details"]["audio_tokens"] == 160  # 8 s at 20 tokens/s
    assert usage["input_token_details"]["audio_tokens"] == 19  # 1.9 s at 10 tokens/s
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert not d.session.reply_pending


def test_no_transcription_event_when_not_configured() -> None:
    d = Driver()
    d.send(pcmu_update(transcription=None))
    assert "conversation.item.input_audio_transcription.completed" not in types(d.speak(CALLER))


def test_barge_in_cancels_the_reply() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.speak(CALLER)
    partial = of_type(d.steps(limit=3), "response.output_audio.delta")
    assert partial
    interrupted = d.speak(tone(100))
    assert types(interrupted) == [
        "input_audio_buffer.speech_started",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = interrupted[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["usage"]["output_tokens"] > 0
    assert d.steps() == []  # no more deltas
    # The caller finishes speaking: a fresh reply starts.
    assert "response.created" in types(d.speak(quiet(600)))


def test_response_cancel_and_truncate() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.speak(CALLER)
    deltas = of_type(d.steps(limit=2), "response.output_audio.delta")
    response_id, item_id = deltas[0]["response_id"], deltas[0]["item_id"]
    sent_ms = sum(len(base64.b64decode(e["delta"])) for e in deltas) // 8
    assert d.send(rt.response_cancel("c1", response_id)) == []  # the done comes later
    (done,) = d.steps()[-1:]
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    (error,) = d.send(rt.response_cancel("c2"))
    assert error["error"]["code"] == "response_cancel_not_active"
    assert error["error"]["event_id"] == "c2"

    (truncated,) = d.send(rt.truncate("t1", item_id, sent_ms))
    assert truncated == {
        **truncated,
        "type": "conversation.item.truncated",
        "audio_end_ms": sent_ms,
    }
    (error,) = d.send(rt.truncate("t2", item_id, sent_ms + 1))
    assert error["error"]["code"] == "invalid_value" and error["error"]["event_id"] == "t2"
    (error,) = d.send(rt.truncate("t3", "item_nope", 0))
    assert error["error"]["code"] == "item_not_found"


def test_item_create_and_response_create() -> None:
    d = Driver()
    d.send(pcmu_update())
    added, done = d.send(rt.conversation_item_create("i1", rt.user_text_item("Pressed 1")))
    assert types([added, done]) == ["conversation.item.added", "conversation.item.done"]
    assert added["item"]["content"] == [{"type": "input_text", "text": "Pressed 1"}]
    item_id = added["item"]["id"]
    assert types(
        d.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
    ) == ["conversation.item.retrieved"]
    started = d.send(rt.response_create("r1", "Confirm the choice."))
    assert types(started)[:2] == ["response.created", "response.output_item.added"]
    (error,) = d.send(rt.response_create("r2"))
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert of_type(d.steps(), "response.done")[0]["response"]["status"] == "completed"
    assert d.record.client_events == {
        "session.update": 1,
        "conversation.item.create": 1,
        "conversation.item.retrieve": 1,
        "response.create": 2,
    }


@pytest.mark.parametrize(
    ("event", "answer"),
    [
        ({"type": "input_audio_buffer.commit"}, "error"),
        ({"type": "input_audio_buffer.clear"}, "input_audio_buffer.cleared"),
        ({"type": "output_audio_buffer.clear"}, "error"),
        ({"type": "conversation.item.delete", "item_id": "item_x"}, "error"),
    ],
)
def test_other_client_events(event: Event, answer: str) -> None:
    d = Driver()
    d.send(pcmu_update())
    assert types(d.send(json.dumps(event))) == [answer]


def test_manual_turns_without_vad() -> None:
    d = Driver()
    update = json.loads(pcmu_update())
    update["session"]["audio"]["input"]["turn_detection"] = None
    d.send(json.dumps(update))
    assert d.speak(CALLER) == []
    committed = d.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c"}))
    assert types(committed)[0] == "input_audio_buffer.committed"
    assert "response.created" not in types(committed)
    assert types(d.send(rt.response_create("r")))[0] == "response.created"


def _update_with_end_call() -> str:
    options = rt.SessionOptions(
        model="gpt-realtime",
        instructions="Be brief.",
        voice="marin",
        transcription_model=None,
        turn_detection="server_vad",
        tools=(rt.END_CALL_TOOL,),
    )
    return rt.session_update("evt_update", options)


def test_end_call_after_n_turns_calls_the_tool_then_the_goodbye_is_spoken() -> None:
    d = Driver(end_call_after=2)
    d.send(_update_with_end_call())
    first = d.speak(CALLER)
    assert of_type(first, "response.created")  # turn 1: a spoken reply
    d.steps()
    second = d.speak(CALLER)
    (done,) = of_type(second, "response.done")
    (call,) = done["response"]["output"]
    assert (call["type"], call["name"], call["status"]) == (
        "function_call",
        "end_call",
        "completed",
    )
    assert json.loads(call["arguments"]) == {"reason": "the caller said goodbye"}
    assert not of_type(second, "response.output_audio.delta")
    assert of_type(second, "response.function_call_arguments.done")[0]["name"] == "end_call"
    assert d.record.function_calls == ["end_call"]
    # The client answers the call and asks for the goodbye: a spoken reply.
    output = rt.function_call_output_item(call["call_id"], '{"ok": true}')
    added = d.send(rt.conversation_item_create("evt_out", output))
    assert types(added) == ["conversation.item.added", "conversation.item.done"]
    assert types(d.send(rt.response_create("evt_bye", "Say goodbye.")))[0] == "response.created"
    assert of_type(d.steps(), "response.done")[0]["response"]["status"] == "completed"
    assert len(d.record.usage) == 3  # every response.done's usage, recorded
    assert d.record.invalid_events == []


def test_end_call_needs_the_tool_declared() -> None:
    d = Driver(end_call_after=1)
    d.send(pcmu_update())
    events = d.speak(CALLER)
    assert of_type(events, "response.created")
    assert d.record.function_calls == []


def test_accepted_truncates_are_recorded() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.speak(CALLER)
    d.steps()
    (item,) = of_type(d.events, "response.output_item.done")
    d.send(rt.truncate("evt_t", item["item"]["id"], 120))
    d.send(rt.truncate("evt_bad", item["item"]["id"], 10**7))  # refused: not recorded
    assert d.record.truncates == [{"item_id": item["item"]["id"], "audio_end_ms": 120}]
