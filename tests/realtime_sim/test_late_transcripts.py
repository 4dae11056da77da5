"""--late-transcripts: a caller turn's transcript arrives after the reply to it."""

from __future__ import annotations

import json

from services.realtime_sim.failures import Failures
from services.realtime_sim.late_transcripts import HeldTranscripts
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import CALLER, Driver, pcmu_update, types

COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"


def manual_update() -> str:
    update = json.loads(pcmu_update())
    update["session"]["audio"]["input"]["turn_detection"] = None
    return json.dumps(update)


def test_the_transcript_follows_the_response_done_of_the_reply() -> None:
    d = Driver(late_transcripts=True)
    d.send(pcmu_update())
    heard = d.speak(CALLER)
    assert COMPLETED not in types(heard)
    assert "response.created" in types(heard)
    reply = d.steps()
    assert types(reply)[-2:] == ["response.done", COMPLETED]
    committed = next(e for e in heard if e["type"] == "input_audio_buffer.committed")
    assert reply[-1]["item_id"] == committed["item_id"]


def test_a_barge_in_sends_it_after_the_cancelled_response_done() -> None:
    d = Driver(late_transcripts=True)
    d.send(pcmu_update())
    d.speak(CALLER)
    d.steps(limit=2)
    interrupted = d.speak(CALLER[:1600])  # speech starts: the reply is cancelled
    assert types(interrupted)[-2:] == ["response.done", COMPLETED]
    assert interrupted[-2]["response"]["status"] == "cancelled"


def test_without_a_response_it_comes_with_the_next_events() -> None:
    d = Driver(late_transcripts=True)
    d.send(manual_update())
    d.speak(CALLER)
    committed = d.send(json.dumps({"type": "input_audio_buffer.commit"}))
    assert COMPLETED not in types(committed)
    assert d.speak(CALLER) == []  # no events: nothing to ride on
    created = d.send(rt.conversation_item_create("evt_i", rt.user_text_item("hello")))
    assert types(created) == ["conversation.item.added", "conversation.item.done", COMPLETED]


def test_a_manual_turn_then_response_create_waits_for_that_response() -> None:
    d = Driver(late_transcripts=True)
    d.send(manual_update())
    d.speak(CALLER)
    d.send(json.dumps({"type": "input_audio_buffer.commit"}))
    assert COMPLETED not in types(d.send(rt.response_create("evt_r")))
    assert types(d.steps())[-2:] == ["response.done", COMPLETED]


def test_a_failed_transcription_is_late_too() -> None:
    d = Driver(late_transcripts=True, failures=Failures(transcription_fails=True))
    d.send(pcmu_update())
    assert FAILED not in types(d.speak(CALLER))
    assert types(d.steps())[-2:] == ["response.done", FAILED]


def test_on_time_by_default() -> None:
    d = Driver()
    d.send(pcmu_update())
    heard = types(d.speak(CALLER))
    assert heard.index(COMPLETED) < heard.index("response.created")


def test_the_holder_directly() -> None:
    held = HeldTranscripts()
    held.hold({"type": "t1"})
    assert held.flush([{"type": "a"}]) == [{"type": "a"}]  # not with the batch that held it
    held.response_started("resp_1")
    held.hold({"type": "t2"})
    assert held.flush([]) == []
    assert held.flush([{"type": "b"}]) == [{"type": "b"}, {"type": "t2"}]
    assert held.after_done("resp_2") == []
    assert held.after_done("resp_1") == [{"type": "t1"}]
