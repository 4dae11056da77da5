"""Responses: per-response instructions, the asynchronous cancel, and tool call ids."""

from __future__ import annotations

import json

import pytest

from services.realtime_sim.behaviour import Mode
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import CALLER, Driver, of_type, pcmu_update, tone, types

SESSION_INSTRUCTIONS = "You are a helpful phone agent."  # pcmu_update's


def test_response_instructions_apply_to_that_response_only_and_are_recorded() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.send(rt.response_create("evt_1", "Greet the caller."))
    d.steps()
    d.speak(CALLER)  # a VAD response: the session's instructions again
    d.steps()
    d.send(rt.response_create("evt_2"))
    d.steps()
    empty = {"type": "response.create", "response": {"instructions": ""}}
    d.send(json.dumps(empty))  # empty instructions are instructions too
    d.steps()
    assert d.record.response_instructions == [
        "Greet the caller.",
        SESSION_INSTRUCTIONS,
        SESSION_INSTRUCTIONS,
        "",
    ]
    assert d.record.to_json()["response_instructions"] == d.record.response_instructions
    # The usage counts the instructions the response was generated under.
    text_tokens = [u["input_token_details"]["text_tokens"] for u in d.record.usage]
    assert text_tokens == [5, 8, 8, 0]


def test_function_call_responses_are_recorded_with_the_session_instructions() -> None:
    update = json.loads(pcmu_update())
    update["session"]["tools"] = [rt.END_CALL_TOOL]
    d = Driver(end_call_after=1)
    d.send(json.dumps(update))
    d.speak(CALLER)
    assert d.record.function_calls == ["end_call"]
    assert d.record.response_instructions == [SESSION_INSTRUCTIONS]


def test_response_metadata_is_echoed_on_the_response() -> None:
    d = Driver()
    d.send(pcmu_update())
    event = {"type": "response.create", "response": {"metadata": {"turn": "greeting"}}}
    (created,) = of_type(d.send(json.dumps(event)), "response.created")
    assert created["response"]["metadata"] == {"turn": "greeting"}
    assert of_type(d.steps(), "response.done")[0]["response"]["metadata"] == {"turn": "greeting"}


def test_a_cancelled_response_stays_active_until_its_delayed_done() -> None:
    d = Driver(cancel_delay_ms=35)
    d.send(pcmu_update())
    d.speak(CALLER)
    deltas = of_type(d.steps(limit=2), "response.output_audio.delta")
    response_id = deltas[0]["response_id"]
    assert d.send(rt.response_cancel("evt_c", response_id)) == []
    assert d.session.reply_pending
    (error,) = d.send(rt.response_create("evt_r"))  # still active
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert response_id in error["error"]["message"]
    assert d.send(rt.response_cancel("evt_c2")) == []  # a second cancel changes nothing
    step = d.session.next_reply_step()
    assert step == ([], 0.035)  # the server waits this long
    step = d.session.next_reply_step()
    assert step is not None
    done, pause = step
    assert types(done) == ["response.output_item.done", "conversation.item.done", "response.done"]
    assert done[-1]["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
    }
    assert pause == 0
    assert not of_type(done, "response.output_audio.delta")  # no audio after the cancel
    assert d.session.next_reply_step() is None
    assert types(d.send(rt.response_create("evt_r2")))[0] == "response.created"


def test_barge_in_during_a_pending_cancel_keeps_the_client_cancel() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.speak(CALLER)
    d.steps(limit=2)
    d.send(rt.response_cancel("evt_c"))
    started = d.speak(tone(200))
    assert "input_audio_buffer.speech_started" in types(started)
    assert "response.done" not in types(started)
    (done,) = of_type(d.steps(), "response.done")
    assert done["response"]["status_details"]["reason"] == "client_cancelled"


def test_an_echo_response_cancel_is_delayed_too() -> None:
    d = Driver(Mode.ECHO, cancel_delay_ms=0)
    d.send(pcmu_update())
    first = d.send(rt.audio_append(b"\x01" * 160))
    response_id = first[0]["response"]["id"]
    assert d.send(rt.response_cancel("evt_c")) == []
    assert d.send(rt.audio_append(b"\x02" * 160)) == []  # not echoed into a cancelled response
    (done,) = of_type(d.steps(), "response.done")
    assert done["response"]["id"] == response_id
    assert types(d.send(rt.audio_append(b"\x03" * 160)))[0] == "response.created"


def test_vad_cancel_stays_immediate() -> None:
    d = Driver()
    d.send(pcmu_update())
    d.speak(CALLER)
    d.steps(limit=2)
    interrupted = d.speak(tone(100))
    assert types(interrupted)[-1] == "response.done"
    assert interrupted[-1]["response"]["status_details"]["reason"] == "turn_detected"


def _function_call_output(call_id: str, event_id: str = "evt_out") -> str:
    return rt.conversation_item_create(event_id, rt.function_call_output_item(call_id, "{}"))


def test_a_function_output_for_an_unknown_call_is_refused() -> None:
    d = Driver()
    d.send(pcmu_update())
    (error,) = d.send(_function_call_output("call_nope"))
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_tool_call_id",
        "message": "Tool call ID 'call_nope' not found in conversation.",
        "param": "item.call_id",
        "event_id": "evt_out",
    }
    assert d.record.tool_outputs == []


def test_a_function_output_for_the_models_call_is_accepted() -> None:
    update = json.loads(pcmu_update())
    update["session"]["tools"] = [rt.END_CALL_TOOL]
    d = Driver(end_call_after=1)
    d.send(json.dumps(update))
    (done,) = of_type(d.speak(CALLER), "response.done")
    call_id = done["response"]["output"][0]["call_id"]
    added, _ = d.send(_function_call_output(call_id))
    assert added["item"] == {
        **added["item"],
        "type": "function_call_output",
        "call_id": call_id,
        "object": "realtime.item",
        "status": "completed",
    }


@pytest.mark.parametrize("call_id", ["call_client_1", None])
def test_a_client_created_function_call_makes_its_call_id_known(call_id: str | None) -> None:
    d = Driver()
    d.send(pcmu_update())
    item = {"type": "function_call", "name": "lookup_order", "arguments": '{"order": "42"}'}
    if call_id is not None:
        item["call_id"] = call_id
    added, _ = d.send(rt.conversation_item_create("evt_call", item))
    known = added["item"]["call_id"]
    assert known == (call_id or known) and known.startswith("call_")
    assert types(d.send(_function_call_output(known))) == [
        "conversation.item.added",
        "conversation.item.done",
    ]


def test_a_deleted_call_is_no_longer_known() -> None:
    d = Driver()
    d.send(pcmu_update())
    item = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    added, _ = d.send(rt.conversation_item_create("evt_call", item))
    d.send(json.dumps({"type": "conversation.item.delete", "item_id": added["item"]["id"]}))
    assert of_type(d.send(_function_call_output("call_1")), "error")
