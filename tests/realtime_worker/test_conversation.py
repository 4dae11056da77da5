"""The conversation on a CallSession: barge-in, DTMF, greeting, usage, caps and end_call.

Driven like test_call_session: fakeredis and the scripted fake Realtime socket; the session's
playback clock is replaced, so what the caller "heard" is exact.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_session import CallSession
from shared.keys import CallField, CallState
from shared.messages import (
    CallStopped,
    ClearPlayback,
    DtmfPressed,
    Hangup,
    MarkPlayed,
    OutboundAudio,
    PlaybackMark,
    StreamStarted,
)
from shared.records import load_turns
from tests.support.realtime import FakeRealtime
from tests.support.scripted_call import ScriptedCall as Call
from tests.support.scripted_call import running_call
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness, inbound_handled

pytestmark = pytest.mark.anyio


@pytest.fixture
async def call(harness: Harness) -> AsyncIterator[Call]:
    async with running_call(harness) as running:
        yield running


# --- the session ------------------------------------------------------------------------------


async def test_session_declares_end_call_and_interrupts_per_barge_in(call: Call) -> None:
    update = call.ws.sent[0]
    assert update["session"]["tools"] == [rt.END_CALL_TOOL]
    assert update["session"]["tool_choice"] == "auto"
    turn = update["session"]["audio"]["input"]["turn_detection"]
    assert turn["interrupt_response"] is True
    check_client_event(update)


# --- barge-in ---------------------------------------------------------------------------------


async def test_barge_in_clears_truncates_to_what_was_heard_drops_late_audio_cancels_once(
    call: Call,
) -> None:
    h, session = call.harness, call.session
    call.reply("resp_1", "item_1", 8000, 8000)  # 2 s of audio, generated at once
    await eventually(lambda: session.bytes_from_model == 16_000)
    first, _second = await call.marks()
    call.clock.now = 101.0
    await h.send_inbound(MarkPlayed(first))  # the first second has been played
    await eventually(
        lambda: (item := session.playback.get("item_1")) is not None and item.echoed_bytes == 8000
    )

    call.clock.now = 101.25
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=900, item_id="u1")
    await eventually(lambda: len(call.sent("conversation.item.truncate")) == 1)
    (truncate,) = call.sent("conversation.item.truncate")
    assert truncate["item_id"] == "item_1"
    assert truncate["content_index"] == 0
    assert truncate["audio_end_ms"] == 1250
    await h.writer.flush()
    out = await h.outbound()
    assert out[-1] == ClearPlayback("item_1")

    # Audio of the interrupted reply still arriving is never published.
    call.audio("resp_1", "item_1", 4000)
    call.ws.push_event(type="response.output_audio.done", response_id="resp_1", item_id="item_1")
    # The server did not cancel it (no response.done): the worker does, once.
    await eventually(lambda: len(call.sent("response.cancel")) == 1)
    assert call.sent("response.cancel")[0]["response_id"] == "resp_1"
    call.done("resp_1", "cancelled")
    await eventually(lambda: session.active_response is None)
    # A second speech start: nothing is playing any more.
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=1900, item_id="u2")
    await call.ws.handled()
    await h.writer.flush()
    assert await h.outbound() == out
    assert session.bytes_from_model == 16_000
    assert len(call.sent("conversation.item.truncate")) == 1
    assert len(call.sent("response.cancel")) == 1
    assert h.metric("switchboard_worker_barge_ins_total") == 1
    assert h.metric("switchboard_worker_late_audio_dropped_bytes_total") == 4000
    assert h.metric("switchboard_worker_barge_in_unheard_ms_sum") == 750
    assert (await h.record())[CallField.BARGE_INS] == "1"

    await h.send_inbound(CallStopped("caller_hangup"))
    await call.finish()


async def test_speech_to_clear_is_observed_for_voice_barge_ins_only(call: Call) -> None:
    h, session = call.harness, call.session
    name = "switchboard_worker_speech_to_clear_seconds"
    call.reply("resp_1", "item_1", 8000)
    await eventually(lambda: session.bytes_from_model == 8000)
    call.clock.now = 100.5
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    await eventually(lambda: h.metric(f"{name}_count") == 1)
    assert 0 <= h.metric(f"{name}_sum") < 0.5
    call.done("resp_1", "cancelled")
    await eventually(lambda: session.active_response is None)
    # Speech over nothing playing clears nothing; a key press barges in without speech.
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u2")
    call.reply("resp_2", "item_2", 8000)
    await eventually(lambda: session.bytes_from_model == 16_000)
    call.clock.now = 101.5
    await h.send_inbound(DtmfPressed("9"))
    await eventually(lambda: h.metric("switchboard_worker_barge_ins_total") == 2)
    assert h.metric(f"{name}_count") == 1


async def test_no_cancel_when_the_server_cancelled_itself(call: Call) -> None:
    call.reply("resp_1", "item_1", 8000)
    await eventually(lambda: call.session.bytes_from_model == 8000)
    call.clock.now = 100.5
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    call.done(
        "resp_1", "cancelled", status_details={"type": "cancelled", "reason": "turn_detected"}
    )
    await eventually(lambda: call.session.active_response is None)
    # The cancel loop, past the grace period, has taken the interrupted response and decided.
    await eventually(lambda: call.session.model._cancel_target is None)
    assert [e["audio_end_ms"] for e in call.sent("conversation.item.truncate")] == [500]
    assert call.sent("response.cancel") == []


async def test_interrupted_transcript_keeps_what_was_heard(call: Call) -> None:
    call.reply("resp_1", "item_1", 8000)
    call.ws.push_event(
        type="response.output_audio_transcript.delta",
        response_id="resp_1",
        delta="one two three four",
    )
    await eventually(lambda: call.session.bytes_from_model == 8000)
    call.clock.now = 100.5
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    call.done("resp_1", "cancelled")
    await eventually(lambda: call.session.turns)
    assert call.session.turns[-1].text == "one two …"


async def test_too_little_heard_is_no_barge_in(call: Call) -> None:
    call.reply("resp_1", "item_1", 8000)
    await eventually(lambda: call.session.bytes_from_model == 8000)
    call.clock.now = 100.2  # 200 ms < BARGE_IN_MIN_HEARD_MS (300)
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    call.audio("resp_1", "item_1", 800)
    await eventually(lambda: call.session.bytes_from_model == 8800)  # still relayed
    assert call.sent("conversation.item.truncate") == []
    assert not any(isinstance(m, ClearPlayback) for m in await call.harness.outbound())


async def test_barge_in_off(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.configure(barge_in=False)
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: session.stream_seen)
    turn = ws.sent[0]["session"]["audio"]["input"]["turn_detection"]
    assert turn["interrupt_response"] is False
    ws.push_event(type="response.created", response={"id": "resp_1"})
    ws.push_event(
        type="response.output_audio.delta",
        response_id="resp_1",
        item_id="item_1",
        delta=base64.b64encode(b"\x55" * 8000).decode(),
    )
    await eventually(lambda: session.bytes_from_model == 8000)
    ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    await ws.handled()
    assert not [e for e in ws.sent if e["type"] == "conversation.item.truncate"]
    session.stop("test over")
    await asyncio.wait_for(task, 3.0)


# --- DTMF and greeting ------------------------------------------------------------------------


async def test_dtmf_reaches_the_model_and_prompts_a_response(call: Call) -> None:
    await call.harness.send_inbound(DtmfPressed("4"))
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (item,) = call.sent("conversation.item.create")
    assert item["item"] == rt.user_text_item("The caller pressed 4 on the keypad.")
    assert call.harness.metric("switchboard_worker_dtmf_digits_total") == 1
    await call.harness.send_inbound(DtmfPressed("<script>"))  # not a key: counted, dropped
    await eventually(lambda: call.session.io.faults == 1)
    assert len(call.sent("conversation.item.create")) == 1


async def test_dtmf_during_a_reply_cancels_it_and_waits_for_its_end(call: Call) -> None:
    call.reply("resp_1", "item_1", 8000)
    await eventually(lambda: call.session.bytes_from_model == 8000)
    call.clock.now = 100.1  # a key press needs no minimum heard time
    await call.harness.send_inbound(DtmfPressed("9"))
    await eventually(lambda: len(call.sent("response.cancel")) == 1)  # at once: no VAD cancels
    # The server ends a cancelled response a little later; until its response.done it is
    # active, and a response.create would be refused (conversation_already_has_active_response).
    # Late audio of the reply, handled after the cancel, shows the worker is still waiting.
    call.audio("resp_1", "item_1", 160)
    await eventually(
        lambda: call.harness.metric("switchboard_worker_late_audio_dropped_bytes_total") == 160
    )
    assert call.sent("response.create") == [] and call.sent("conversation.item.create") == []
    call.done("resp_1", "cancelled", status_details={"type": "cancelled"})
    await eventually(lambda: len(call.sent("response.create")) == 1)
    kinds = [e["type"] for e in call.ws.sent[1:]]
    assert kinds == [
        "conversation.item.truncate",
        "response.cancel",
        "conversation.item.create",
        "response.create",
    ]
    assert call.sent("conversation.item.truncate")[0]["audio_end_ms"] == 100


async def test_dtmf_while_a_reply_is_generated_but_unheard_cancels_it_first(call: Call) -> None:
    call.ws.push_event(type="response.created", response={"id": "resp_1"})
    await eventually(lambda: call.session.active_response == "resp_1")
    await call.harness.send_inbound(DtmfPressed("1"))
    await eventually(lambda: len(call.sent("response.cancel")) == 1)
    assert call.sent("response.cancel")[0]["response_id"] == "resp_1"
    call.done("resp_1", "cancelled", status_details={"type": "cancelled"})
    await eventually(lambda: len(call.sent("response.create")) == 1)
    kinds = [e["type"] for e in call.ws.sent[1:]]
    assert kinds == ["response.cancel", "conversation.item.create", "response.create"]


async def test_dtmf_off(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.configure(dtmf=False)
    ws = FakeRealtime()
    harness.use(ws)
    _, key = await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0), DtmfPressed("4"))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await inbound_handled(session, key)
    assert [e["type"] for e in ws.sent] == ["session.update"]
    session.stop("test over")
    await asyncio.wait_for(task, 3.0)


async def test_greeting_is_asked_for_right_after_the_session(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.configure(greeting="Greet the caller warmly.")
    ws = FakeRealtime()
    harness.use(ws)
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(ws.sent) == 2)
    # The override replaces the session's instructions for the greeting: they ride along.
    persona = harness.ctx.settings.instructions
    assert ws.sent[1] == {
        "type": "response.create",
        "event_id": ws.sent[1]["event_id"],
        "response": {"instructions": f"{persona}\n\nGreet the caller warmly."},
    }
    check_client_event(ws.sent[1])
    session.stop("test over")
    await asyncio.wait_for(task, 3.0)
    # A taken-over call has been greeted already.
    ws2 = FakeRealtime()
    harness.use(ws2)
    again = CallSession(harness.ctx, SID, "0-0", takeover=True)
    task = asyncio.create_task(again.run())
    # The caller's side is relayed only once the session is past its greeting (or none).
    (mark,) = await harness.send_inbound(MarkPlayed("no_such_mark"))
    await inbound_handled(again, mark)
    assert [e["type"] for e in ws2.sent] == ["session.update"]
    again.stop("test over")
    await asyncio.wait_for(task, 3.0)


# --- usage, summary, caps ---------------------------------------------------------------------


def _usage(text_in: int, audio_in: int, text_out: int, audio_out: int) -> dict[str, Any]:
    return {
        "total_tokens": text_in + audio_in + text_out + audio_out,
        "input_tokens": text_in + audio_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in},
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


async def test_usage_is_summed_and_the_summary_written_at_the_end(call: Call) -> None:
    h = call.harness
    call.done("resp_1", usage=_usage(10, 20, 5, 40))
    call.done("resp_2", usage=_usage(1, 2, 3, 4))
    await eventually(lambda: call.session.usage.total == 85)
    (end_id,) = await h.send_inbound(CallStopped("caller_hangup"))
    await call.finish()
    await h.writer.flush()
    record = await h.record()
    assert record[CallField.TOKENS_INPUT_TEXT] == "11"
    assert record[CallField.TOKENS_INPUT_AUDIO] == "22"
    assert record[CallField.TOKENS_OUTPUT_TEXT] == "8"
    assert record[CallField.TOKENS_OUTPUT_AUDIO] == "44"
    assert record[CallField.ENDED_BY] == "caller"
    assert record[CallField.BARGE_INS] == "0"
    assert record[CallField.ERRORS] == "0"
    assert 0 <= int(record[CallField.DURATION_MS]) < 60_000
    assert h.metric("switchboard_worker_tokens_total", direction="output", modality="audio") == 44
    retention = h.ctx.settings.call_record_retention_s
    assert retention - 5 < await h.redis.ttl(h.keys.call(SID)) <= retention


async def _goodbye_and_hang_up(call: Call, reason: str) -> None:
    """The model speaks the goodbye; once its last mark is echoed the worker hangs up."""
    h, session = call.harness, call.session
    before = session.bytes_from_model
    call.reply("resp_bye", "item_bye", 1600, 800, done=True)
    call.done("resp_bye")
    await eventually(lambda: session.bytes_from_model == before + 2400)
    await eventually(lambda: session.active_response is None)
    marks = [m for m in await call.marks() if m.startswith("item_bye:")]
    await call.inbound(MarkPlayed(marks[0]))
    assert session.end_reason is None  # part of the goodbye still plays
    await h.send_inbound(MarkPlayed(marks[1]))
    await call.finish()
    await h.writer.flush()
    out = await h.outbound()
    assert out[-1] == Hangup(reason)
    assert [type(m) for m in out[-4:-1]] == [OutboundAudio, PlaybackMark, type(out[-2])]
    record = await h.record()
    assert record[CallField.STATE] == CallState.ENDED
    assert record[CallField.END_REASON] == reason


async def test_token_cap_wraps_up_then_hangs_up_after_the_goodbye(harness: Harness) -> None:
    harness.configure(max_tokens_per_call=100)
    async with running_call(harness) as call:
        call.done("resp_1", usage=_usage(50, 50, 10, 10))
        await eventually(lambda: len(call.sent("response.create")) == 1)
        assert "usage limit" in call.sent("response.create")[0]["response"]["instructions"]
        await _goodbye_and_hang_up(call, "max_tokens")
    assert (await harness.record())[CallField.ENDED_BY] == "limit"


async def test_duration_cap_waits_for_the_reply_in_progress(harness: Harness) -> None:
    harness.configure(max_call_duration_s=20)
    async with running_call(harness) as call:
        call.ws.push_event(type="response.created", response={"id": "resp_1"})
        await eventually(lambda: call.session.active_response == "resp_1")
        call.clock.wall_offset_s = 25  # 25 s into the call
        # What the watchdog does every 10 ms: a reply being generated is not cut.
        await call.session.model.check_caps()
        assert call.sent("response.create") == [] and call.session.ending is None
        call.done("resp_1")
        await eventually(lambda: len(call.sent("response.create")) == 1)
        assert "time limit" in call.sent("response.create")[0]["response"]["instructions"]
        await _goodbye_and_hang_up(call, "max_duration")


# --- the model ends the call ------------------------------------------------------------------


def _function_call(call_id: str, name: str = "end_call") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "item_fc",
        "call_id": call_id,
        "name": name,
        "arguments": '{"reason": "done"}',
        "status": "completed",
    }


async def test_end_call_answers_asks_for_goodbye_and_hangs_up_once_heard(call: Call) -> None:
    call.ws.push_event(type="response.created", response={"id": "resp_fc"})
    call.done("resp_fc", output=[_function_call("call_1")])
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (answer,) = call.sent("conversation.item.create")
    assert answer["item"]["type"] == "function_call_output"
    assert answer["item"]["call_id"] == "call_1"
    assert "instructions" in call.sent("response.create")[0]["response"]
    # Caller speech during the goodbye does not cut it.
    call.reply("resp_bye", "item_bye", 1600, 800, done=True)
    await eventually(lambda: call.session.bytes_from_model == 2400)
    call.clock.now = 101.0
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    await call.ws.handled()
    assert call.sent("conversation.item.truncate") == []
    call.done("resp_bye")
    await eventually(lambda: call.session.active_response is None)
    marks = [m for m in await call.marks() if m.startswith("item_bye:")]
    for mark in marks:
        await call.harness.send_inbound(MarkPlayed(mark))
    await call.finish()
    await call.harness.writer.flush()
    assert (await call.harness.outbound())[-1] == Hangup("model_ended")
    record = await call.harness.record()
    assert record[CallField.ENDED_BY] == "model"
    assert record[CallField.STATE] == CallState.ENDED
    assert call.session.end_reason == "model_ended"


async def test_end_call_after_a_spoken_goodbye_needs_no_second_one(call: Call) -> None:
    call.reply("resp_1", "item_1", 800, done=True)
    call.done("resp_1", output=[_function_call("call_9")])
    await eventually(lambda: call.session.ending is not None)
    assert call.sent("response.create") == []
    (mark,) = await call.marks()
    await call.harness.send_inbound(MarkPlayed(mark))
    await call.finish()
    assert call.session.end_reason == "model_ended"


async def test_an_unknown_function_gets_an_error_and_the_call_goes_on(call: Call) -> None:
    call.done("resp_1", output=[_function_call("call_2", name="book_flight")])
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (answer,) = call.sent("conversation.item.create")
    assert "no function named book_flight" in answer["item"]["output"]
    assert call.session.ending is None
    await call.harness.send_inbound(CallStopped("caller_hangup"))
    await call.finish()


async def test_turns_are_kept_with_the_record(call: Call) -> None:
    h = call.harness
    call.reply("resp_1", "item_1", 800, done=True)
    call.ws.push_event(
        type="response.output_audio_transcript.done",
        response_id="resp_1",
        item_id="item_1",
        transcript="Hello!",
    )
    call.done("resp_1")
    await eventually(lambda: call.session.turns)
    await h.send_inbound(CallStopped("caller_hangup"))
    await call.finish()
    await h.writer.flush()
    turns = await load_turns(h.redis, h.keys, SID)
    assert [(t.role, t.text) for t in turns] == [("assistant", "Hello!")]
    assert await h.redis.ttl(h.keys.turns(SID)) > 3600


async def test_a_complete_reply_cut_short_while_playing_is_remembered_as_heard(
    call: Call,
) -> None:
    h = call.harness
    call.reply("resp_1", "item_1", 8000, done=True)
    call.ws.push_event(
        type="response.output_audio_transcript.done",
        response_id="resp_1",
        item_id="item_1",
        transcript="one two three four",
    )
    call.done("resp_1")  # generated in full, long before it has played
    await eventually(lambda: call.session.turns)
    call.clock.now = 100.5
    call.ws.push_event(type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    await eventually(lambda: call.session.turns[-1].text == "one two …")
    await h.writer.flush()
    assert [t.text for t in await load_turns(h.redis, h.keys, SID)] == ["one two …"]
