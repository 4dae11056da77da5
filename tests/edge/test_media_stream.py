"""The Media Streams socket, driven like Twilio drives it, with a worker played through Redis."""

from __future__ import annotations

import base64
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from services.edge import media_stream
from services.edge.media_stream import EdgeCall
from services.edge.signature import compute_signature
from services.edge.stream_token import issue_token
from shared.audio import FRAME_BYTES, SILENCE_BYTE
from shared.keys import CallField, CallState
from shared.messages import (
    AudioDone,
    CallDispatch,
    CallStopped,
    ClearPlayback,
    DtmfPressed,
    Hangup,
    InboundAudio,
    MarkPlayed,
    OutboundAudio,
    PlaybackMark,
    StreamDetached,
    StreamStarted,
)
from tests.support import twilio_frames as tf
from tests.support.edge_app import (
    AUTH_TOKEN,
    Edge,
    make_settings,
    receive,
    receive_json,
    running_edge,
    send,
)
from tests.support.waiting import eventually_sync

REJECTED = "switchboard_edge_rejected_requests_total"
MALFORMED = "switchboard_edge_malformed_input_total"


def _refused(edge: Edge, token: str, call_sid: str = tf.CALL_SID) -> dict[str, object]:
    """Open a stream, present ``start`` with ``token``; return the close the edge sent."""
    with edge.stream() as ws:
        send(ws, tf.connected())
        send(ws, tf.start(token, call_sid=call_sid))
        message = receive(ws)
    assert message["type"] == "websocket.close", message
    return message


def _audio_of(edge: Edge) -> list[InboundAudio]:
    return [m for m in edge.inbound() if isinstance(m, InboundAudio)]


def _frame_audio(msg: dict[str, object]) -> bytes:
    assert msg == {"event": "media", "streamSid": tf.STREAM_SID, "media": msg["media"]}
    media = msg["media"]
    assert isinstance(media, dict) and set(media) == {"payload"}
    return base64.b64decode(media["payload"], validate=True)


# --- the upgrade and the start handshake ----------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "garbage",
        compute_signature("not-the-token", "wss://edge.example.com/twilio/media"),
        # What a check behind TLS termination would see; Twilio signs the wss URL.
        compute_signature(AUTH_TOKEN, "https://edge.example.com/twilio/media"),
        compute_signature(AUTH_TOKEN, "wss://testserver/twilio/media"),
    ],
)
def test_upgrade_without_a_valid_signature_is_refused(edge: Edge, signature: str | None) -> None:
    with pytest.raises(WebSocketDisconnect) as info, edge.stream(signature):
        pass
    assert info.value.code == 1008
    assert edge.metric(REJECTED, route="media", reason="bad_signature") == 1


def test_token_for_another_call_is_refused(edge: Edge) -> None:
    edge.answer()
    other_token = edge.answer("CA" + "9" * 32)
    close = _refused(edge, other_token)
    assert (close["code"], close["reason"]) == (1008, "bad_token")
    assert edge.metric(REJECTED, route="media", reason="bad_token") == 1
    assert edge.record()[CallField.STATE] == CallState.DISPATCHED  # the call is untouched


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed"),
        ("opaque-per-call-token", "malformed"),
        ("v1.99999999999.AAAA", "bad_token"),
    ],
)
def test_bad_token_is_refused(edge: Edge, token: str, reason: str) -> None:
    edge.answer()
    close = _refused(edge, token)
    assert (close["code"], close["reason"]) == (1008, reason)
    assert edge.metric(REJECTED, route="media", reason=reason) == 1
    assert edge.runtime.calls.sids() == []


def test_expired_token_is_refused(edge: Edge) -> None:
    edge.answer()
    token = issue_token(edge.runtime.token_keys[0], tf.CALL_SID, time.time() - 120, 60)
    assert _refused(edge, token)["reason"] == "expired"


def test_stream_for_a_call_never_answered_here_is_refused(edge: Edge) -> None:
    token = issue_token(edge.runtime.token_keys[0], tf.CALL_SID, time.time(), 60)
    assert _refused(edge, token)["reason"] == "unknown_call"
    assert edge.record() == {}


def test_stream_for_an_ended_call_is_refused(edge: Edge) -> None:
    token = edge.answer()
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.STATE, CallState.ENDED)
    assert _refused(edge, token)["reason"] == "call_ended"


def test_second_stream_for_an_attached_call_is_refused(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as first:
        close = _refused(edge, token)
        assert close["reason"] == "already_attached"
        send(first, tf.media(b"\x01" * 160))  # the first stream is unaffected
        eventually_sync(lambda: len(_audio_of(edge)) == 1)
        send(first, tf.stop())
        assert receive(first)["type"] == "websocket.close"


def test_no_start_in_time_closes_the_socket() -> None:
    with running_edge(make_settings(IDLE_TIMEOUT="1")) as edge, edge.stream() as ws:
        send(ws, tf.connected())
        message = receive(ws)
        assert message == {"type": "websocket.close", "code": 1008, "reason": "no start message"}
        assert edge.metric(REJECTED, route="media", reason="no_start") == 1


def test_socket_closed_before_start_leaves_nothing_behind(edge: Edge) -> None:
    edge.answer()
    with edge.stream() as ws:
        send(ws, tf.connected())
    assert edge.runtime.calls.sids() == []
    assert edge.record()[CallField.STATE] == CallState.DISPATCHED


def test_garbage_before_start_is_counted_and_start_still_attaches(edge: Edge) -> None:
    token = edge.answer()
    with edge.stream() as ws:
        send(ws, tf.connected())
        ws.send_text("this is not json")
        ws.send_text("[1, 2, 3]")
        send(ws, tf.media())  # before start
        ws.send_bytes(b"\x00\x01binary")
        bad = tf.media()
        bad["media"]["payload"] = "!!!"
        send(ws, bad)
        send(ws, {"event": "some-future-event"})
        send(ws, tf.start(token))
        eventually_sync(lambda: edge.record().get(CallField.STATE) == CallState.LIVE)
        send(ws, tf.stop())
        assert receive(ws)["type"] == "websocket.close"
    for kind in ("not_json", "not_object", "before_start", "binary", "bad_base64"):
        assert edge.metric(MALFORMED, kind=kind) == 1, kind
    assert edge.record()[CallField.END_REASON] == "caller_hangup"


# --- twilio → redis -------------------------------------------------------------------------


def test_a_whole_call_from_the_callers_side(edge: Edge) -> None:
    token = edge.answer()
    chunks = [bytes([i]) * 160 for i in range(3)] + [bytes(range(256))]
    with edge.call(token) as ws:
        assert edge.runtime.calls.sids() == [tf.CALL_SID]
        assert edge.metric("switchboard_edge_active_calls") == 1
        record = edge.record()
        assert record[CallField.EDGE_ID] == "edge-test"
        assert record[CallField.STREAM_SID] == tf.STREAM_SID
        for n, chunk in enumerate(chunks):
            send(ws, tf.media(chunk, timestamp=str(20 * n), seq=str(n + 2), chunk=str(n + 1)))
        send(ws, tf.media(b""))  # carries nothing: publishes nothing
        send(ws, tf.dtmf("#"))
        send(ws, tf.mark("resp_1:item_1:1"))
        send(ws, tf.stop())
        assert receive(ws) == {"type": "websocket.close", "code": 1000, "reason": ""}

    inbound = edge.inbound()
    started = inbound[0]
    assert isinstance(started, StreamStarted)
    assert (started.stream_sid, started.edge_id) == (tf.STREAM_SID, "edge-test")
    audio = [m for m in inbound if isinstance(m, InboundAudio)]
    # Raw μ-law bytes, decoded exactly once, in order, with Twilio's timestamps.
    assert [m.audio for m in audio] == chunks
    assert [m.twilio_ms for m in audio] == [0, 20, 40, 60]
    rest = [m for m in inbound[1:] if not isinstance(m, InboundAudio)]
    assert rest == [DtmfPressed("#"), MarkPlayed("resp_1:item_1:1"), CallStopped("caller_hangup")]

    total = sum(map(len, chunks))
    assert edge.metric("switchboard_edge_audio_in_bytes_total") == total
    eventually_sync(lambda: edge.record().get(CallField.STATE) == CallState.ENDED)
    record = edge.record()
    assert record[CallField.END_REASON] == "caller_hangup"
    assert record[CallField.BYTES_IN] == str(total)
    assert int(record[CallField.ENDED_MS]) > 0
    assert edge.runtime.calls.sids() == []
    assert edge.metric("switchboard_edge_active_calls") == 0
    assert edge.metric("switchboard_edge_calls_total", outcome="caller_hangup") == 1
    assert 0 < edge.redis.ttl(edge.keys.inbound(tf.CALL_SID)) <= 60


def test_malformed_messages_mid_call_are_dropped_and_the_call_goes_on(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        ws.send_text("{not json")
        ws.send_bytes(b"\xff" * 160)  # raw audio instead of a JSON text frame
        bad_b64 = tf.media()
        bad_b64["media"]["payload"] = "AAA"
        send(ws, bad_b64)
        send(ws, tf.media(timestamp="9" * 30))  # would not fit a Redis message
        send(ws, tf.media(stream_sid="MZ" + "0" * 32))
        send(ws, tf.start(token))
        send(ws, tf.media(b"\x42" * 160, timestamp="100"))
        eventually_sync(lambda: _audio_of(edge))
        send(ws, tf.stop())
        assert receive(ws)["code"] == 1000
    assert [m.audio for m in _audio_of(edge)] == [b"\x42" * 160]
    for kind in (
        "not_json",
        "binary",
        "bad_base64",
        "bad_field",
        "wrong_stream",
        "duplicate_start",
    ):
        assert edge.metric(MALFORMED, kind=kind) == 1, kind
    assert edge.record()[CallField.END_REASON] == "caller_hangup"


def test_a_flood_of_garbage_ends_that_call_only(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        for _ in range(media_stream.MAX_MALFORMED):
            ws.send_text("garbage")
        assert receive(ws) == {"type": "websocket.close", "code": 1000, "reason": ""}
    eventually_sync(lambda: edge.record().get(CallField.STATE) == CallState.ENDED)
    assert edge.record()[CallField.END_REASON] == "malformed_input"
    assert edge.inbound()[-1] == CallStopped("malformed_input")
    assert edge.metric(MALFORMED, kind="not_json") == media_stream.MAX_MALFORMED
    assert edge.metric("switchboard_edge_calls_total", outcome="malformed_input") == 1
    # The edge itself is fine and takes the next call.
    assert edge.client.get("/healthz").json() == {"status": "ok"}
    assert edge.client.get("/readyz").status_code == 200
    other = "CA" + "7" * 32
    other_token = edge.answer(other)
    with edge.stream() as ws:
        send(ws, tf.start(other_token, call_sid=other))
        eventually_sync(lambda: edge.record(other).get(CallField.STATE) == CallState.LIVE)
        send(ws, tf.stop())
        assert receive(ws)["code"] == 1000


def test_socket_lost_without_stop_detaches_for_failover(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        send(ws, tf.media(b"\x01" * 160))
        eventually_sync(lambda: _audio_of(edge))
    eventually_sync(lambda: isinstance(edge.inbound()[-1], StreamDetached))
    assert edge.inbound()[-1] == StreamDetached("edge-test", "stream_closed")
    record = edge.record()
    assert record[CallField.STATE] == CallState.LIVE  # Twilio may bring it to another edge
    assert record[CallField.EDGE_ID] == ""
    assert record[CallField.BYTES_IN] == "160"
    assert edge.metric("switchboard_edge_calls_total", outcome="stream_closed") == 1


def test_reattach_after_a_lost_worker_dispatches_the_call_again(edge: Edge) -> None:
    token = edge.answer()
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.WORKER_ID, "worker-gone")
    with edge.call(token) as ws:
        eventually_sync(lambda: len(edge.entries(edge.keys.dispatch)) == 2)
        send(ws, tf.stop())
        receive(ws)
    redispatch = edge.entries(edge.keys.dispatch)[-1]
    assert isinstance(redispatch, CallDispatch)
    assert (redispatch.call_sid, redispatch.reason) == (tf.CALL_SID, "lease-lost")


# --- redis → twilio -------------------------------------------------------------------------


def test_worker_audio_goes_out_as_whole_frames_then_the_mark(edge: Edge) -> None:
    token = edge.answer()
    audio = bytes(range(256)) + bytes(range(144))  # 400 bytes: 2.5 frames
    with edge.call(token) as ws:
        edge.publish(OutboundAudio(audio, "item_1", time.time()))
        assert _frame_audio(receive_json(ws)) == audio[:320]  # both whole frames, one message
        edge.publish(PlaybackMark("resp_1:item_1:1"))  # waits for the 80 held bytes
        edge.publish(AudioDone("item_1"))
        last = _frame_audio(receive_json(ws))
        assert last == audio[320:] + bytes([SILENCE_BYTE]) * 80
        assert receive_json(ws) == {
            "event": "mark",
            "streamSid": tf.STREAM_SID,
            "mark": {"name": "resp_1:item_1:1"},
        }
        assert edge.metric("switchboard_edge_audio_out_bytes_total") == 3 * FRAME_BYTES
        assert (
            edge.metric("switchboard_call_audio_out_bytes_total", call_sid=tf.CALL_SID)
            == 3 * FRAME_BYTES
        )
        send(ws, tf.stop())
        assert receive(ws)["type"] == "websocket.close"
    eventually_sync(lambda: edge.record().get(CallField.BYTES_OUT) == str(3 * FRAME_BYTES))
    # The per-call series goes away with the call.
    labels = {"call_sid": tf.CALL_SID}
    assert edge.registry.get_sample_value("switchboard_call_audio_out_bytes_total", labels) is None


def test_barge_in_clears_twilio_and_voids_waiting_marks(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        edge.publish(OutboundAudio(b"\x01" * 200, "item_1", time.time()))
        assert _frame_audio(receive_json(ws)) == b"\x01" * 160
        edge.publish(PlaybackMark("m_waiting"))  # 40 bytes held: the mark waits
        edge.publish(ClearPlayback("item_1"))
        assert receive_json(ws) == {"event": "clear", "streamSid": tf.STREAM_SID}
        # The held remainder never reached Twilio, so its mark is reported played at once.
        eventually_sync(lambda: MarkPlayed("m_waiting") in edge.inbound())
        # The next item starts on a fresh frame, not after the dropped 40 bytes.
        edge.publish(OutboundAudio(b"\x02" * 160, "item_2", time.time()))
        assert _frame_audio(receive_json(ws)) == b"\x02" * 160
        send(ws, tf.stop())
        assert receive(ws)["type"] == "websocket.close"


def test_worker_hangup_closes_the_stream(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        edge.publish(OutboundAudio(b"\x03" * 160, "item_1", time.time()))
        edge.publish(Hangup("goodbye"))
        assert _frame_audio(receive_json(ws)) == b"\x03" * 160
        assert receive(ws) == {"type": "websocket.close", "code": 1000, "reason": ""}
    assert edge.metric("switchboard_edge_calls_total", outcome="worker_hangup") == 1
    eventually_sync(lambda: edge.record().get(CallField.BYTES_OUT) == "160")


def test_malformed_worker_message_is_dropped(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        edge.redis.xadd(edge.keys.outbound(tf.CALL_SID), {b"m": b"\xc1not msgpack"})
        edge.publish(OutboundAudio(b"\x04" * 160, "item_1", time.time()))
        assert _frame_audio(receive_json(ws)) == b"\x04" * 160
        assert edge.metric(MALFORMED, kind="bad_redis_message") == 1
        send(ws, tf.stop())
        receive(ws)


# --- latency metrics ------------------------------------------------------------------------

RELAY = "switchboard_relay_latency_seconds"
MARK_RT = "switchboard_edge_mark_round_trip_seconds"
FIRST_AUDIO = "switchboard_edge_webhook_to_first_audio_seconds"


def test_relay_latency_worker_to_edge_is_observed_per_audio_message(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        assert edge.metric(f"{RELAY}_count", hop="worker_to_edge") == 0  # exported from the start
        edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time() - 0.02))
        edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time() + 5))  # a skewed clock
        receive_json(ws), receive_json(ws)
        eventually_sync(lambda: edge.metric(f"{RELAY}_count", hop="worker_to_edge") == 2)
        total = edge.metric(f"{RELAY}_sum", hop="worker_to_edge")
        assert 0.02 <= total < 1.0  # the skewed one counts as 0
        assert edge.metric(f"{RELAY}_bucket", hop="worker_to_edge", le="0.0005") == 1
        send(ws, tf.stop())
        receive(ws)
    assert edge.metric(f"{RELAY}_count", hop="edge_to_worker") == 0  # the workers' hop


def test_mark_round_trip_is_observed_and_cleared_marks_are_not(edge: Edge) -> None:
    token = edge.answer()
    with edge.call(token) as ws:
        edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time()))
        edge.publish(PlaybackMark("m1"))
        receive_json(ws)
        assert receive_json(ws)["event"] == "mark"
        time.sleep(0.05)  # Twilio plays the audio queued ahead of the mark
        send(ws, tf.mark("m1"))
        eventually_sync(lambda: edge.metric(f"{MARK_RT}_count") == 1)
        assert 0.05 <= edge.metric(f"{MARK_RT}_sum") < 1.0
        edge.publish(OutboundAudio(b"\x02" * 160, "item_2", time.time()))
        edge.publish(PlaybackMark("m2"))
        receive_json(ws)
        assert receive_json(ws)["event"] == "mark"
        edge.publish(ClearPlayback("item_2"))
        assert receive_json(ws)["event"] == "clear"
        send(ws, tf.mark("m2"))  # echoed at once after the clear: no audio was queued
        send(ws, tf.mark("never_sent"))
        eventually_sync(lambda: MarkPlayed("never_sent") in edge.inbound())
        send(ws, tf.stop())
        receive(ws)
    assert edge.metric(f"{MARK_RT}_count") == 1


def test_marks_awaiting_their_echo_are_bounded(edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_stream, "MAX_MARKS_TIMED", 2)
    token = edge.answer()
    with edge.call(token) as ws:
        for n in range(3):
            edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time()))
            edge.publish(PlaybackMark(f"m{n}"))
            receive_json(ws)
            assert receive_json(ws)["event"] == "mark"
        live = edge.runtime.calls.get(tf.CALL_SID)
        assert isinstance(live, EdgeCall)
        assert list(live.marks_sent) == ["m1", "m2"]
        send(ws, tf.stop())
        receive(ws)


def test_webhook_to_first_audio_is_observed_once_per_call(edge: Edge) -> None:
    token = edge.answer()
    created_ms = int(edge.record()[CallField.CREATED_MS])
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.CREATED_MS, created_ms - 1500)
    with edge.call(token) as ws:
        # A later message, relayed to the worker, proves the edge is done with the start.
        send(ws, tf.mark("after_start"))
        eventually_sync(lambda: MarkPlayed("after_start") in edge.inbound())
        assert edge.metric(f"{FIRST_AUDIO}_count") == 0
        for _ in range(2):
            edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time()))
            receive_json(ws)
        eventually_sync(lambda: edge.metric(f"{FIRST_AUDIO}_count") == 1)
        assert 1.5 <= edge.metric(f"{FIRST_AUDIO}_sum") < 5.0
        send(ws, tf.stop())
        receive(ws)
    assert edge.metric(f"{FIRST_AUDIO}_count") == 1


def test_a_stream_resumed_on_another_edge_does_not_count_first_audio_again(edge: Edge) -> None:
    token = edge.answer()
    edge.publish(OutboundAudio(b"\x01" * 160, "item_1", time.time()))  # sent by the old edge
    first_id = edge.redis.xrange(edge.keys.outbound(tf.CALL_SID))[0][0].decode()
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.OUT_CURSOR, first_id)
    with edge.call(token) as ws:
        edge.publish(OutboundAudio(b"\x02" * 160, "item_1", time.time()))
        assert _frame_audio(receive_json(ws)) == b"\x02" * 160
        send(ws, tf.stop())
        receive(ws)
    assert edge.metric(f"{FIRST_AUDIO}_count") == 0
