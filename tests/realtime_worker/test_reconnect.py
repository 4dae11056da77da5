"""A call whose Realtime session drops goes on in a new session, within a budget; errors no new
session would cure end it (and the caller hears FAILURE_MESSAGE through the edge).

Driven like test_call_session: fakeredis and scripted fake Realtime sockets, one per session.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time

import pytest

from services.realtime_worker.call_session import CallSession
from shared.keys import CallField
from shared.messages import Hangup, InboundAudio, OutboundAudio
from tests.support.realtime import PCMU, FakeRealtime, Opener
from tests.support.scripted_call import start_session
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import Harness

pytestmark = pytest.mark.anyio

RECONNECTS = "switchboard_worker_session_reconnects_total"


def _frame(i: int) -> bytes:
    return bytes((i * 11 + k) % 256 for k in range(160))


async def _stop(session: CallSession, task: asyncio.Task[None]) -> None:
    session.stop("test over")
    await asyncio.wait_for(task, 3.0)


def _say(ws: FakeRealtime, item: str, text: str, *, user: str | None = None) -> None:
    """A caller turn (its transcript) and the model's reply to it, as the server streams them."""
    if user is not None:
        ws.push_event(
            type="conversation.item.input_audio_transcription.completed",
            item_id=f"u_{item}",
            content_index=0,
            transcript=user,
        )
    ws.push_event(type="response.created", response={"id": f"resp_{item}"})
    ws.push_event(
        type="response.output_audio_transcript.done",
        response_id=f"resp_{item}",
        item_id=item,
        transcript=text,
    )
    ws.push_event(type="response.done", response={"id": f"resp_{item}", "status": "completed"})


@pytest.mark.parametrize(
    ("code", "reason", "label", "logged"),
    [
        (1011, "internal error", "internal_error", "close 1011 'internal error'"),
        (None, "", "connection_lost", "the connection broke without a close frame"),
        (1001, "going away", "going_away", "close 1001 'going away'"),
    ],
)
async def test_a_dropped_session_is_replaced_seeded_and_given_the_callers_audio(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    code: int | None,
    reason: str,
    label: str,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.worker.call")
    first, second = FakeRealtime(), FakeRealtime()
    session, task = await start_session(harness, Opener(first, second))
    _say(first, "a1", "We open at nine.", user="When do you open?")
    await eventually(lambda: len(session.turns) == 2)
    frames = [_frame(i) for i in range(10)]
    for i, frame in enumerate(frames[:5]):
        await harness.send_inbound(InboundAudio(frame, 20 * i, time.time()))
    await eventually(lambda: first.appended_audio() == b"".join(frames[:5]))

    first.drop(code, reason)
    for i, frame in enumerate(frames[5:], start=5):
        await harness.send_inbound(InboundAudio(frame, 20 * i, time.time()))

    # Every frame the caller sent after the drop reaches the new session, in order.
    await eventually(lambda: second.appended_audio() == b"".join(frames[5:]))
    update, *seeded = second.sent[:3]
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["input"]["format"] == PCMU
    assert update["session"]["audio"]["output"]["format"] == PCMU
    assert [item["item"]["content"][0]["text"] for item in seeded] == [
        "When do you open?",
        "We open at nine.",
    ]
    for event in second.sent:
        check_client_event(event)
    # The new session's audio reaches the caller.
    second.push_event(
        type="response.output_audio.delta",
        response_id="resp_b",
        item_id="b1",
        delta=base64.b64encode(b"\x7e" * 160).decode(),
    )
    await eventually(lambda: session.bytes_from_model == 160)
    await harness.writer.flush()
    assert [m for m in await harness.outbound() if isinstance(m, OutboundAudio)][0].item_id == "b1"
    assert harness.metric(RECONNECTS, reason=label) == 1
    assert (await harness.record())[CallField.RECONNECTS] == "1"
    assert f"the Realtime session dropped ({logged})" in caplog.text
    assert "reconnected: a new Realtime session holds the call (2 turns)" in caplog.text
    assert session.end_reason is None
    await _stop(session, task)
    assert second.closed


async def test_a_fourth_drop_within_a_minute_ends_the_call(harness: Harness) -> None:
    opener = Opener()
    session, task = await start_session(harness, opener, realtime_reconnects=3)

    def session_open(count: int) -> bool:
        return len(opener.opened) == count and len(opener.opened[-1].sent) >= 1

    for n in range(1, 5):
        await eventually(functools.partial(session_open, n))
        opener.opened[-1].drop(1011, "internal error")
    await asyncio.wait_for(task, 3.0)
    assert len(opener.opened) == 4
    assert session.end_reason == "realtime_reconnects_exhausted"
    record = await harness.record()
    assert "after 3 reconnects within a minute (REALTIME_RECONNECTS=3)" in record[CallField.ERROR]
    assert record[CallField.RECONNECTS] == "3"
    assert harness.metric(RECONNECTS, reason="internal_error") == 3
    assert (
        harness.metric(
            "switchboard_worker_realtime_errors_total", code="realtime_reconnects_exhausted"
        )
        == 1
    )
    assert await harness.outbound() == [Hangup("realtime_reconnects_exhausted")]


async def test_a_server_error_alone_keeps_the_session_and_one_before_a_close_is_the_reason(
    harness: Harness,
) -> None:
    opener = Opener()
    session, task = await start_session(harness, opener)
    first = opener.opened[0]
    first.push_event(
        type="error",
        event_id="ev_1",
        error={"type": "server_error", "code": None, "message": "The server had an error."},
    )
    # Handled in order: once this delta reached the caller, the error was handled, and the
    # session kept.
    first.push_event(
        type="response.output_audio.delta",
        response_id="resp_1",
        item_id="item_1",
        delta=base64.b64encode(b"\x7e" * 80).decode(),
    )
    await eventually(lambda: session.bytes_from_model == 80)
    assert len(opener.opened) == 1 and session.end_reason is None
    assert harness.metric("switchboard_worker_realtime_errors_total", code="unknown") == 1

    first.drop(1011, "internal error")
    await eventually(lambda: len(opener.opened) == 2)
    assert harness.metric(RECONNECTS, reason="server_error") == 1
    await _stop(session, task)


async def test_a_failed_attempt_is_retried_with_backoff(harness: Harness) -> None:
    first, third = FakeRealtime(), FakeRealtime()
    opener = Opener(first, ConnectionRefusedError("refused"), third)
    session, task = await start_session(harness, opener)
    first.drop(None)
    await eventually(lambda: len(third.sent) >= 1)
    assert harness.metric(RECONNECTS, reason="connection_lost") == 1
    assert harness.metric(RECONNECTS, reason="reconnect_failed") == 1
    assert session.end_reason is None
    await _stop(session, task)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"code": "invalid_api_key", "message": "Incorrect API key provided"}, "invalid_api_key"),
        ({"code": "model_not_found", "message": "The model does not exist"}, "model_not_found"),
    ],
)
async def test_an_error_no_new_session_cures_ends_the_call_at_once(
    harness: Harness, answer: dict[str, str], code: str
) -> None:
    refusing = FakeRealtime(confirm_format=None)
    refusing.push_event(type="error", error={"type": "invalid_request_error", **answer})
    opener = Opener(FakeRealtime(), refusing)
    session, task = await start_session(harness, opener)
    opener.opened[0].drop(1011, "internal error")
    await asyncio.wait_for(task, 3.0)
    assert session.end_reason == code
    assert len(opener.opened) == 2  # no further attempt
    assert await harness.outbound() == [Hangup(code)]


async def test_a_session_confirming_another_format_is_not_retried(harness: Harness) -> None:
    opener = Opener(
        FakeRealtime(), FakeRealtime(confirm_format={"type": "audio/pcm", "rate": 24000})
    )
    session, task = await start_session(harness, opener)
    opener.opened[0].drop(1011, "internal error")
    await asyncio.wait_for(task, 3.0)
    assert session.end_reason == "format_mismatch"
    assert len(opener.opened) == 2


async def test_a_goodbye_the_dropped_session_never_said_is_asked_of_the_next(
    harness: Harness,
) -> None:
    first, second = FakeRealtime(), FakeRealtime()
    session, task = await start_session(harness, Opener(first, second))
    first.push_event(type="response.created", response={"id": "resp_1"})
    end_call = {
        "type": "function_call",
        "id": "item_fc",
        "call_id": "call_end",
        "name": "end_call",
        "arguments": "{}",
        "status": "completed",
    }
    first.push_event(
        type="response.done", response={"id": "resp_1", "status": "completed", "output": [end_call]}
    )
    await eventually(lambda: any(e["type"] == "response.create" for e in first.sent))
    first.drop(1011, "internal error")  # before the goodbye was said
    await eventually(lambda: any(e["type"] == "response.create" for e in second.sent))
    (goodbye,) = [e for e in second.sent if e["type"] == "response.create"]
    instructions = goodbye["response"]["instructions"]
    assert instructions.startswith(harness.ctx.settings.instructions)
    assert "goodbye" in instructions
    assert session.ending is not None and session.end_reason is None
    await _stop(session, task)
