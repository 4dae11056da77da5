"""CallSession across restarts: turns stored, takeover, edge silence, session rollover."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import pytest
import redis.exceptions

from services.realtime_worker.call_session import CallSession
from shared.keys import CALL_KEY_TTL_S, TURNS_MAX, CallField, CallState
from shared.messages import Hangup, InboundAudio, MarkPlayed, StreamStarted
from shared.records import Turn, load_turns, now_ms, turn_commands
from tests.support.clock import ManualClock
from tests.support.fake_redis import execute
from tests.support.realtime import FakeRealtime
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness, WatchdogLooks, inbound_handled

pytestmark = pytest.mark.anyio


def _frame(i: int) -> bytes:
    """160 bytes (20 ms) of μ-law, different for every ``i``."""
    return bytes((i * 7 + k) % 256 for k in range(160))


def _items(ws: FakeRealtime) -> list[dict[str, Any]]:
    return [e["item"] for e in ws.sent if e["type"] == "conversation.item.create"]


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text}]
    return {"type": "message", "role": "assistant", "content": content}


async def _stop(session: CallSession, task: asyncio.Task[None]) -> None:
    session.stop("test_over")
    await asyncio.wait_for(task, 2.0)


# --- turns --------------------------------------------------------------------------------


async def test_turns_are_stored_per_call_bounded_and_expiring(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(ws.sent) == 1)
    ws.push_event(
        type="conversation.item.input_audio_transcription.completed",
        item_id="item_u1",
        content_index=0,
        transcript=" What time is it? ",
    )
    ws.push_event(type="response.created", response={"id": "resp_1"})
    ws.push_event(type="response.output_audio_transcript.delta", response_id="resp_1", delta="It ")
    ws.push_event(type="response.output_audio_transcript.delta", response_id="resp_1", delta="is")
    # Cancelled by a barge-in: only what was produced is stored.
    ws.push_event(
        type="response.done",
        response={
            "id": "resp_1",
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "turn_detected"},
        },
    )
    ws.push_event(type="response.done", response={"id": "resp_2", "status": "completed"})
    await eventually(lambda: len(session.turns) == 2)
    await harness.writer.flush()
    turns = await load_turns(harness.redis, harness.keys, SID)
    assert [(t.role, t.text) for t in turns] == [
        ("user", "What time is it?"),
        ("assistant", "It is"),
    ]
    assert turns[0].at_ms <= turns[1].at_ms
    key = harness.keys.turns(SID)
    assert 0 < await harness.redis.ttl(key) <= CALL_KEY_TTL_S
    assert key in harness.keys.call_keys(SID)

    for i in range(TURNS_MAX + 5):
        session.model.store(
            session.conversation.transcript.fill(None, "user", f"turn {i}", now_ms())
        )
    await harness.writer.flush()
    assert await harness.redis.llen(key) == TURNS_MAX
    assert (await load_turns(harness.redis, harness.keys, SID))[-1].text == f"turn {TURNS_MAX + 4}"
    assert len(session.turns) == TURNS_MAX
    await _stop(session, task)


# --- takeover -----------------------------------------------------------------------------


async def test_takeover_seeds_turns_and_skips_stale_backlog(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    harness.set_timing(watchdog_interval_s=0.01)
    harness.configure(takeover_backlog_ms=3000, stream_start_timeout_s=1)
    clock = ManualClock()
    harness.set_clock(clock)
    ws = FakeRealtime()
    harness.use(ws)
    for turn in (
        Turn("user", "Hello, I need a taxi.", 1),
        Turn("assistant", "Sure, where to?", 2),
        Turn("user", "The station.", 3),
    ):
        await execute(harness.redis, turn_commands(harness.keys, SID, turn))
    now = time.time()
    # What the dead worker left unread: 3 frames older than the window, 2 younger, a mark.
    first_id, *_ = await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", now - 30),
        *(InboundAudio(_frame(i), 20 * i, now - 10 + i * 0.02) for i in range(3)),
        MarkPlayed("item_old:7"),
        *(InboundAudio(_frame(i), 20 * i, now - 1 + i * 0.02) for i in range(3, 5)),
    )
    caplog.set_level(logging.INFO, logger="switchboard.worker.call")
    session = CallSession(harness.ctx, SID, first_id.decode(), takeover=True)
    looks = WatchdogLooks(session, monkeypatch)
    task = asyncio.create_task(session.run())

    await eventually(lambda: len(ws.appended_audio()) == 320)
    assert ws.appended_audio() == _frame(3) + _frame(4)
    types = [e["type"] for e in ws.sent]
    assert (
        types
        == ["session.update"] + ["conversation.item.create"] * 3 + ["input_audio_buffer.append"] * 2
    )
    assert _items(ws) == [
        _user("Hello, I need a taxi."),
        _assistant("Sure, where to?"),
        _user("The station."),
    ]
    for event in ws.sent:
        check_client_event(event)
    assert any(
        r.getMessage()
        == "took over the call from its previous worker: seeded 3 turns, skipped 60 ms of stale "
        "caller audio, sending 40 ms"
        for r in caplog.records
    )
    assert harness.metric("switchboard_worker_stale_audio_skipped_bytes_total") == 480
    assert harness.metric("switchboard_worker_takeovers_total") == 1

    # Live audio after the backlog is sent whatever its age: the window is for the backlog.
    await harness.send_inbound(InboundAudio(_frame(5), 100, now - 20))
    await eventually(lambda: len(ws.appended_audio()) == 480)
    # No StreamStarted came, and none was needed: the call is still up after the timeout.
    clock.advance(2.0)
    await looks.taken()
    assert session.end_reason is None
    await _stop(session, task)


async def test_takeover_with_nothing_unread_and_no_turns(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    (last_id,) = await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    caplog.set_level(logging.INFO, logger="switchboard.worker.call")
    session = CallSession(harness.ctx, SID, last_id.decode(), takeover=True)
    task = asyncio.create_task(session.run())
    await eventually(lambda: any("took over" in r.getMessage() for r in caplog.records))
    assert "seeded 0 turns, skipped 0 ms of stale caller audio, sending 0 ms" in caplog.text
    assert [e["type"] for e in ws.sent] == ["session.update"]
    await _stop(session, task)


# --- edge silence -------------------------------------------------------------------------


async def test_edge_silence_ends_the_call_after_the_grace(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.set_timing(watchdog_interval_s=0.01)
    harness.configure(edge_grace_s=0.2)
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", time.time()), InboundAudio(_frame(0), 0, time.time())
    )
    session = CallSession(harness.ctx, SID, "0-0")
    started = time.monotonic()
    await asyncio.wait_for(session.run(), 2.0)  # the edge was killed: nothing more arrives
    assert time.monotonic() - started >= 0.2
    assert session.end_reason == "edge_lost"
    assert await harness.outbound() == [Hangup("edge_lost")]
    record = await harness.record()
    assert record[CallField.STATE] == CallState.ENDED
    assert record[CallField.END_REASON] == "edge_lost"


async def test_new_stream_within_the_grace_keeps_the_call_and_its_session(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.set_timing(watchdog_interval_s=0.01)
    harness.configure(edge_grace_s=3)
    clock = ManualClock()
    harness.set_clock(clock)
    opened: list[FakeRealtime] = []

    async def open_ws() -> FakeRealtime:
        opened.append(FakeRealtime())
        return opened[-1]

    harness.use(open_ws)
    await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", time.time()), InboundAudio(_frame(0), 0, time.time())
    )
    session = CallSession(harness.ctx, SID, "0-0")
    looks = WatchdogLooks(session, monkeypatch)
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(opened) == 1 and len(opened[0].appended_audio()) == 160)
    clock.advance(2.0)  # edge-1 was killed: no detach, no stop
    await looks.taken()
    # Twilio followed the <Redirect>: the stream is back on edge-2, no StreamDetached before.
    *_, last = await harness.send_inbound(
        StreamStarted("MZ2", "edge-2", time.time()), InboundAudio(_frame(1), 0, time.time())
    )
    await inbound_handled(session, last)
    clock.advance(2.0)  # past the first grace (3 s after edge-1's last frame)
    await looks.taken()
    assert session.end_reason is None
    assert opened[0].appended_audio() == _frame(0) + _frame(1)
    assert len(opened) == 1  # the same Realtime session carries on
    clock.advance(2.0)
    await asyncio.wait_for(task, 2.0)  # and edge-2 going silent ends it in its turn
    assert session.end_reason == "edge_lost"


async def test_redis_outage_is_not_edge_silence(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.set_timing(watchdog_interval_s=0.01)
    harness.configure(edge_grace_s=1)
    clock = ManualClock()
    harness.set_clock(clock)
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    session = CallSession(harness.ctx, SID, "0-0")
    looks = WatchdogLooks(session, monkeypatch)
    task = asyncio.create_task(session.run())
    await eventually(lambda: session.stream_seen)

    async def redis_down(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(harness.redis, "xread", redis_down)
    await eventually(lambda: not harness.reader.healthy)
    clock.advance(5.0)  # far past the grace: nothing has arrived from the edge since
    await looks.taken()
    assert not harness.reader.healthy
    assert session.end_reason is None
    await _stop(session, task)


# --- rollover -----------------------------------------------------------------------------


async def test_rollover_at_a_pause_loses_and_duplicates_no_caller_audio(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    harness.set_timing(rollover_force_fraction=100.0, rollover_drain_s=0.01)
    harness.configure(session_max_s=0.3)
    first = FakeRealtime()
    second = FakeRealtime(confirm_format=None)  # confirms only when the test says
    sockets = [first, second]
    opened: list[FakeRealtime] = []

    async def open_ws() -> FakeRealtime:
        opened.append(sockets[len(opened)])
        return opened[-1]

    harness.use(open_ws)
    caplog.set_level(logging.INFO, logger="switchboard.worker.call")
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(first.sent) == 1)
    first.push_event(
        type="conversation.item.input_audio_transcription.completed",
        item_id="item_u1",
        content_index=0,
        transcript="Hi.",
    )
    first.push_event(type="response.created", response={"id": "resp_1"})  # the model speaks

    frames = [_frame(i) for i in range(60)]
    sent_at: list[float] = []  # on the session's clock

    async def caller() -> None:
        for i, frame in enumerate(frames):
            await harness.send_inbound(InboundAudio(frame, 20 * i, time.time()))
            sent_at.append(harness.ctx.clock.monotonic())
            await asyncio.sleep(0.01)

    def relayed_well_past_session_max() -> bool:
        """Whether the first session got a frame sent 0.1 s past SESSION_MAX: a rollover
        begun then would hold the caller's audio for the new session instead."""
        due = session.sessions.session_started + 0.3 + 0.1
        late = [i for i, at in enumerate(sent_at) if at > due]
        return bool(late) and len(first.appended_audio()) >= 160 * (late[0] + 1)

    talking = asyncio.create_task(caller())
    # Past SESSION_MAX, but a response is in progress: no rollover.
    await eventually(relayed_well_past_session_max)
    assert opened == [first]
    first.push_event(
        type="response.output_audio_transcript.done",
        response_id="resp_1",
        item_id="item_1",
        transcript="Hello!",
    )
    first.push_event(type="response.done", response={"id": "resp_1", "status": "completed"})
    await eventually(lambda: len(opened) == 2)  # the pause: a new session opens
    await eventually(lambda: len(second.sent) == 1)
    # Caller audio keeps arriving while the switch is pending, and waits in the inbox.
    await eventually(lambda: len(session.caller.inbox) >= 2)
    assert second.appended_audio() == b""
    second.push(json.dumps(_updated()))
    await talking
    total = 160 * len(frames)
    await eventually(lambda: len(first.appended_audio()) + len(second.appended_audio()) == total)
    assert first.appended_audio() + second.appended_audio() == b"".join(frames)
    assert first.appended_audio() and second.appended_audio()
    await eventually(lambda: first.closed)
    assert not second.closed
    assert [e["type"] for e in second.sent[:3]] == [
        "session.update",
        "conversation.item.create",
        "conversation.item.create",
    ]
    assert _items(second) == [_user("Hi."), _assistant("Hello!")]
    for event in second.sent:
        check_client_event(event)
    assert harness.metric("switchboard_worker_session_rollovers_total") == 1
    assert "rolled the call over to a new Realtime session after 0 s (seeded 2 turns)" in (
        caplog.text
    )

    # The call goes on with the new session: its events reach the caller.
    second.push_event(
        type="response.output_audio.delta",
        response_id="resp_9",
        item_id="item_9",
        delta=base64.b64encode(b"\x7f" * 80).decode(),
    )
    await eventually(lambda: session.bytes_from_model == 80)
    assert session.end_reason is None
    await _stop(session, task)
    assert second.closed


async def test_rollover_that_cannot_open_a_session_keeps_the_old_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.set_timing(rollover_retry_s=10.0)
    harness.configure(session_max_s=0.05)
    first = FakeRealtime()
    calls = 0

    async def open_ws() -> FakeRealtime:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first
        raise ConnectionRefusedError("refused")

    harness.use(open_ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", time.time()))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: calls == 2)
    await harness.send_inbound(InboundAudio(_frame(1), 0, time.time()))
    await eventually(lambda: first.appended_audio() == _frame(1))
    assert session.end_reason is None and not first.closed
    await _stop(session, task)


def _updated() -> dict[str, Any]:
    fmt = {"type": "audio/pcmu"}
    return {
        "type": "session.updated",
        "session": {
            "type": "realtime",
            "id": "sess_2",
            "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
        },
    }
