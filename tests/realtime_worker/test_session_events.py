"""What real Realtime sessions send that the happy path does not: caller transcripts after the
reply, failed transcriptions, failed responses, rate-limit updates."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import pytest

from services.realtime_worker.transcript import NOT_TRANSCRIBED
from shared.keys import CallField
from shared.messages import CallStopped
from shared.records import load_turns
from tests.support.scripted_call import ScriptedCall as Call
from tests.support.scripted_call import running_call
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def call(harness: Harness) -> AsyncIterator[Call]:
    async with running_call(harness) as running:
        yield running


def _caller_turn(call: Call, item_id: str, previous: str | None) -> None:
    call.ws.push_event(
        type="input_audio_buffer.committed", item_id=item_id, previous_item_id=previous
    )


def _reply(call: Call, response_id: str, item_id: str, text: str) -> None:
    call.ws.push_event(type="response.created", response={"id": response_id})
    call.ws.push_event(
        type="response.output_item.added",
        response_id=response_id,
        output_index=0,
        item={"id": item_id, "type": "message", "role": "assistant", "content": []},
    )
    call.ws.push_event(
        type="response.output_audio_transcript.done",
        response_id=response_id,
        item_id=item_id,
        transcript=text,
    )
    call.done(response_id)


async def _stored(call: Call) -> list[tuple[str, str]]:
    await call.harness.writer.flush()
    turns = await load_turns(call.harness.redis, call.harness.keys, SID)
    return [(t.role, t.text) for t in turns]


async def test_a_caller_transcript_after_the_reply_is_stored_before_it(call: Call) -> None:
    _caller_turn(call, "u1", None)
    _reply(call, "resp_1", "a1", "We open at nine.")
    await eventually(lambda: len(call.session.turns) == 1)  # the reply; the caller's pending
    call.ws.push_event(
        type="conversation.item.input_audio_transcription.completed",
        item_id="u1",
        content_index=0,
        transcript="When do you open?",
    )
    await eventually(lambda: len(call.session.turns) == 2)
    expected = [("user", "When do you open?"), ("assistant", "We open at nine.")]
    assert [(t.role, t.text) for t in call.session.turns] == expected
    assert await _stored(call) == expected


async def test_a_failed_transcription_keeps_the_callers_place(call: Call) -> None:
    _caller_turn(call, "u1", None)
    call.ws.push_event(
        type="conversation.item.input_audio_transcription.failed",
        item_id="u1",
        content_index=0,
        error={"type": "server_error", "code": "audio_unintelligible", "message": "?"},
    )
    _reply(call, "resp_1", "a1", "Sorry, could you say that again?")
    await eventually(lambda: len(call.session.turns) == 2)
    assert await _stored(call) == [
        ("user", NOT_TRANSCRIBED),
        ("assistant", "Sorry, could you say that again?"),
    ]
    errors = "switchboard_worker_realtime_errors_total"
    assert call.harness.metric(errors, code="audio_unintelligible") == 1


async def test_a_failed_response_is_counted_and_the_call_goes_on(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchboard.worker.call")
    call.ws.push_event(type="response.created", response={"id": "resp_1"})
    call.done(
        "resp_1",
        "failed",
        status_details={
            "type": "failed",
            "error": {"type": "server_error", "code": None, "message": "Please retry."},
        },
    )
    errors = "switchboard_worker_realtime_errors_total"
    await eventually(lambda: call.harness.metric(errors, code="server_error") == 1)
    assert "response resp_1 failed (server_error): Please retry." in caplog.text
    assert call.session.active_response is None and call.session.end_reason is None
    # The next response is relayed as ever.
    call.reply("resp_2", "a2", 160)
    await eventually(lambda: call.session.bytes_from_model == 160)
    await call.harness.send_inbound(CallStopped("caller_hangup"))
    await call.finish()
    await call.harness.writer.flush()
    assert (await call.harness.record())[CallField.ERRORS] == "1"
    assert call.session.end_reason == "caller_hangup"


async def test_rate_limits_are_exported_and_a_low_one_warned_about_once(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchboard.worker.call")

    def update(requests: int, tokens: int) -> None:
        call.ws.push_event(
            type="rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 1000, "remaining": requests, "reset_seconds": 1.0},
                {"name": "tokens", "limit": 100000, "remaining": tokens, "reset_seconds": 1.0},
            ],
        )

    remaining = "switchboard_worker_realtime_rate_limit_remaining"
    update(900, 90000)
    await eventually(lambda: call.harness.metric(remaining, limit="tokens") == 90000)
    assert "rate limit" not in caplog.text
    update(50, 5000)
    update(40, 4000)
    # A delta behind the updates: once it is handled, they were too.
    call.ws.push_event(
        type="response.output_audio.delta",
        response_id="resp_1",
        item_id="a1",
        delta=base64.b64encode(b"\x7e" * 80).decode(),
    )
    await eventually(lambda: call.session.bytes_from_model == 80)
    assert call.harness.metric(remaining, limit="requests") == 40
    assert caplog.text.count("OpenAI rate limit nearly reached") == 1
