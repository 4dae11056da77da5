"""CallSession driven end to end with fakeredis and a scripted fake Realtime socket."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from typing import Any

import pytest

from services.realtime_worker.call_session import CallSession
from shared.keys import CallField, CallState
from shared.messages import (
    AudioDone,
    CallStopped,
    DtmfPressed,
    Hangup,
    InboundAudio,
    OutboundAudio,
    PlaybackMark,
    StreamStarted,
)
from tests.support.realtime import PCM24, PCMU, FakeRealtime, session_event
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness, inbound_handled, worker_settings

pytestmark = pytest.mark.anyio


async def test_call_relays_both_ways_and_ends_on_caller_stop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    caller_audio = [bytes([i]) * 160 for i in (0x10, 0x90, 0xFF)]
    await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", 0.0),
        *(InboundAudio(a, 20 * i, 0.0) for i, a in enumerate(caller_audio)),
        DtmfPressed("5"),
    )
    session = CallSession(harness.ctx, SID, "0-0")
    caplog.set_level(logging.INFO, logger="switchboard.worker.call")
    task = asyncio.create_task(session.run())

    await eventually(lambda: len(ws.appended_audio()) == 480)
    update = ws.sent[0]
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["input"]["format"] == PCMU
    assert update["session"]["audio"]["output"]["format"] == PCMU
    assert ws.appended_audio() == b"".join(caller_audio)
    for event in ws.sent:
        check_client_event(event)

    model_audio = bytes(range(256))
    ws.push_event(type="response.created", response={"id": "resp_1"})
    ws.push_event(
        type="response.output_audio.delta",
        response_id="resp_1",
        item_id="item_1",
        delta=base64.b64encode(model_audio[:100]).decode(),
    )
    ws.push("this is not json")  # a malformed frame is counted and skipped
    ws.push_event(
        type="response.output_audio.delta",
        response_id="resp_1",
        item_id="item_1",
        delta=base64.b64encode(model_audio[100:]).decode(),
    )
    ws.push_event(type="response.output_audio.done", response_id="resp_1", item_id="item_1")
    ws.push_event(type="response.output_audio_transcript.delta", response_id="resp_1", delta="Hi ")
    ws.push_event(
        type="response.output_audio_transcript.done",
        response_id="resp_1",
        item_id="item_1",
        transcript="Hi there!",
    )
    ws.push_event(type="response.done", response={"id": "resp_1", "status": "completed"})
    await eventually(lambda: session.bytes_from_model == 256)
    await eventually(lambda: not session.conversation.replies)  # response.done handled
    await harness.writer.flush()
    out = await harness.outbound()
    assert (
        out
        == [
            OutboundAudio(model_audio[:100], "item_1", out[0].sent_at),  # type: ignore[union-attr]
            OutboundAudio(model_audio[100:], "item_1", out[1].sent_at),  # type: ignore[union-attr]
            # Under 100 ms of audio: one mark, at the end of the item's audio.
            PlaybackMark("item_1:1"),
            AudioDone("item_1"),
        ]
    )

    (stop_id,) = await harness.send_inbound(CallStopped("caller_hangup"))
    await asyncio.wait_for(task, 2.0)

    assert session.end_reason == "caller_hangup"
    assert ws.closed
    record = await harness.record()
    assert record[CallField.INPUT_FORMAT] == "audio/pcmu"
    assert record[CallField.OUTPUT_FORMAT] == "audio/pcmu"
    assert record[CallField.IN_CURSOR] == stop_id.decode()
    assert record[CallField.STATE] == CallState.DISPATCHED  # the edge owns the caller's end
    assert not any(isinstance(m, Hangup) for m in await harness.outbound())
    assert not await harness.redis.exists(harness.keys.lease(SID))  # released
    assert harness.metric("switchboard_worker_audio_in_bytes_total") == 480
    assert harness.metric("switchboard_worker_audio_out_bytes_total") == 256
    assert harness.metric("switchboard_worker_malformed_input_total", kind="not_json") == 1
    assert harness.metric("switchboard_worker_calls_total", outcome="caller_hangup") == 1
    said = [r for r in caplog.records if r.getMessage() == "AI said: Hi there!"]
    assert len(said) == 1
    assert said[0].call_sid == SID  # type: ignore[attr-defined]
    assert any("caller pressed 5" in r.getMessage() for r in caplog.records)


async def test_server_confirming_pcm_ends_the_call_before_any_audio(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime(confirm_format=PCM24)
    harness.use(ws)
    await harness.send_inbound(InboundAudio(b"\xff" * 160, 0, 0.0))
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)

    assert [e["type"] for e in ws.sent] == ["session.update"]  # no audio relayed
    assert session.end_reason == "format_mismatch"
    record = await harness.record()
    assert record[CallField.STATE] == CallState.ENDED
    assert record[CallField.END_REASON] == "format_mismatch"
    assert "'audio/pcm'" in record[CallField.ERROR]
    assert "audio/pcmu" in record[CallField.ERROR]
    assert await harness.outbound() == [Hangup("format_mismatch")]
    # The stream never arrived: its keys are left to expire soon.
    assert 0 < await harness.redis.ttl(harness.keys.outbound(SID)) <= 60
    assert harness.metric("switchboard_worker_realtime_errors_total", code="format_mismatch") == 1
    assert not await harness.redis.exists(harness.keys.lease(SID))


async def test_error_event_during_setup_ends_the_call_with_its_code(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime(confirm_format=None)
    ws.push_event(
        type="error",
        error={"type": "invalid_request_error", "code": "beta_api_shape_disabled", "message": "x"},
    )
    harness.use(ws)
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)
    assert session.end_reason == "beta_api_shape_disabled"
    assert (await harness.record())[CallField.STATE] == CallState.ENDED
    assert await harness.outbound() == [Hangup("beta_api_shape_disabled")]


async def test_session_updated_before_created_is_refused(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    ws._frames = asyncio.Queue()
    ws.push(session_event("session.updated", PCMU))
    harness.use(ws)
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)
    assert session.end_reason == "protocol"
    assert ws.sent == []


async def test_silent_server_times_out(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = FakeRealtime()
    ws._frames = asyncio.Queue()  # never says session.created
    harness.use(ws)
    harness.ctx = dataclasses.replace(
        harness.ctx, settings=worker_settings(realtime_connect_timeout_s=0.1)
    )
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)
    assert session.end_reason == "realtime_timeout"
    assert (await harness.record())[CallField.END_REASON] == "realtime_timeout"


async def test_unreachable_server(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse() -> Any:
        raise ConnectionRefusedError("connection refused")

    harness.use(refuse)
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)
    assert session.end_reason == "realtime_unreachable"
    assert "connection refused" in (await harness.record())[CallField.ERROR]


async def test_a_dropped_session_with_no_reconnects_allowed_ends_the_call(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.configure(realtime_reconnects=0)
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: session.stream_seen)
    ws.drop(1001, "going away")
    await asyncio.wait_for(task, 2.0)
    assert session.end_reason == "realtime_reconnects_exhausted"
    record = await harness.record()
    assert "close 1001" in record[CallField.ERROR]
    assert "REALTIME_RECONNECTS=0" in record[CallField.ERROR]
    # The edge closes the stream cleanly, and the resume route plays FAILURE_MESSAGE.
    assert await harness.outbound() == [Hangup("realtime_reconnects_exhausted")]
    # The stream did arrive: the edge still reads the Hangup, so no short TTL is set here.
    assert await harness.redis.ttl(harness.keys.outbound(SID)) == -1


async def test_a_fatal_error_event_mid_call_ends_the_call(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(ws.sent) == 1)
    ws.push_event(
        type="error",
        error={"type": "insufficient_quota", "code": "insufficient_quota", "message": "No quota"},
    )
    await asyncio.wait_for(task, 2.0)
    assert session.end_reason == "insufficient_quota"
    assert (await harness.record())[CallField.ERROR].endswith("No quota")


async def test_lease_lost_leaves_the_call_to_the_new_owner(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: session.stream_seen)
    await harness.redis.set(harness.keys.lease(SID), "worker-2")
    session.stop("lease_lost", lease_lost=True)
    await asyncio.wait_for(task, 2.0)
    await harness.writer.flush()
    assert session.end_reason == "lease_lost"
    assert ws.closed
    record = await harness.record()
    assert CallField.IN_CURSOR not in record  # the new owner's cursor is not overwritten
    assert record[CallField.STATE] == CallState.DISPATCHED
    assert await harness.outbound() == []
    assert await harness.redis.get(harness.keys.lease(SID)) == b"worker-2"


async def test_resumes_reading_after_the_saved_cursor(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    ids = await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", 0.0),
        InboundAudio(b"\x01" * 160, 0, 0.0),
        InboundAudio(b"\x02" * 160, 20, 0.0),
    )
    session = CallSession(harness.ctx, SID, ids[1].decode())
    task = asyncio.create_task(session.run())
    await inbound_handled(session, ids[2])
    assert ws.appended_audio() == b"\x02" * 160
    session.stop("worker_stopped")
    await asyncio.wait_for(task, 2.0)
    assert (await harness.record())[CallField.IN_CURSOR] == ids[2].decode()


async def test_stream_that_never_arrives_ends_the_call(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.set_timing(watchdog_interval_s=0.01)
    ws = FakeRealtime()
    harness.use(ws)
    harness.configure(stream_start_timeout_s=0.1)
    session = CallSession(harness.ctx, SID, "0-0")
    await asyncio.wait_for(session.run(), 2.0)
    assert session.end_reason == "stream_never_arrived"
    assert await harness.outbound() == [Hangup("stream_never_arrived")]


async def test_oversized_audio_delta_is_dropped_and_counted_the_call_goes_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    small = dataclasses.replace(harness.ctx.settings, max_audio_delta_bytes=1024)
    monkeypatch.setattr(harness, "ctx", dataclasses.replace(harness.ctx, settings=small))
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: len(ws.sent) >= 1)
    for size in (5000, 300):  # one far over the limit, then a normal one
        ws.push_event(
            type="response.output_audio.delta",
            response_id="resp_1",
            item_id="item_1",
            delta=base64.b64encode(b"\x55" * size).decode(),
        )
    await eventually(lambda: session.bytes_from_model == 300)
    assert harness.metric("switchboard_worker_malformed_input_total", kind="delta_too_large") == 1
    assert session.end_reason is None
    session.stop("test over")
    await asyncio.wait_for(task, 2.0)


async def test_relay_latency_edge_to_worker_is_observed_per_audio_frame_sent(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = FakeRealtime()
    harness.use(ws)
    name = "switchboard_relay_latency_seconds"
    await harness.send_inbound(
        StreamStarted("MZ1", "edge-1", 0.0),
        InboundAudio(b"\x01" * 160, 0, time.time() - 0.03),
        InboundAudio(b"\x01" * 160, 20, time.time() + 5),  # a skewed clock counts as 0
    )
    session = CallSession(harness.ctx, SID, "0-0")
    task = asyncio.create_task(session.run())
    await eventually(lambda: harness.metric(f"{name}_count", hop="edge_to_worker") == 2)
    assert 0.03 <= harness.metric(f"{name}_sum", hop="edge_to_worker") < 1.0
    assert harness.metric(f"{name}_bucket", hop="edge_to_worker", le="0.0005") == 1
    assert harness.metric(f"{name}_count", hop="worker_to_edge") == 0  # the edges' hop
    await harness.send_inbound(CallStopped("caller_hangup"))
    await asyncio.wait_for(task, 2.0)
