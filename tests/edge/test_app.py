"""The edge's HTTP side: Twilio webhooks, health, readiness and metrics."""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET

import pytest
from twilio.request_validator import RequestValidator

from services.edge.stream_token import derive_token_key, verify_token
from shared.keys import CALL_KEY_TTL_S, CallField, CallState
from shared.messages import CallDispatch, Message
from tests.support import twilio_frames as tf
from tests.support.edge_app import (
    AUTH_TOKEN,
    PUBLIC_URL,
    Edge,
    make_settings,
    running_edge,
    stream_token,
    voice_params,
)
from tests.support.live_call import StubCall

OTHER_CALL = "CA" + "9" * 32


def _root(response_text: str) -> ET.Element:
    root = ET.fromstring(response_text)
    assert root.tag == "Response"
    return root


def _is_stream_twiml(text: str, call_sid: str = tf.CALL_SID) -> bool:
    root = _root(text)
    stream = root.find("Connect/Stream")
    redirect = root.find("Redirect")
    assert stream is not None and redirect is not None, text
    assert stream.attrib["url"] == "wss://edge.example.com/twilio/media"
    assert stream.attrib["statusCallback"] == "https://edge.example.com/twilio/stream-status"
    assert redirect.text == "https://edge.example.com/twilio/voice/resume"
    assert redirect.attrib.get("method") == "POST"
    verify_token([derive_token_key(AUTH_TOKEN)], stream_token(text), call_sid, time.time())
    return True


def _is_hangup(text: str) -> bool:
    return [child.tag for child in _root(text)] == ["Hangup"]


def _dispatched(edge: Edge) -> list[Message]:
    return edge.entries(edge.keys.dispatch)


# --- POST /twilio/voice ---------------------------------------------------------------------


def test_new_call_is_recorded_dispatched_and_answered_with_a_stream(edge: Edge) -> None:
    response = edge.post_signed("/twilio/voice", voice_params())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert _is_stream_twiml(response.text)

    record = edge.record()
    assert record[CallField.STATE] == CallState.DISPATCHED
    assert record[CallField.FROM] == "+16175551212"
    assert record[CallField.TO] == "+18005551212"
    assert record[CallField.ACCOUNT_SID] == tf.ACCOUNT_SID
    assert abs(int(record[CallField.CREATED_MS]) - time.time() * 1000) < 60_000
    assert 0 < edge.redis.ttl(edge.keys.call(tf.CALL_SID)) <= CALL_KEY_TTL_S

    dispatched = _dispatched(edge)
    assert len(dispatched) == 1
    assert isinstance(dispatched[0], CallDispatch)
    assert (dispatched[0].call_sid, dispatched[0].reason) == (tf.CALL_SID, "new")


def test_signature_made_by_twilios_own_validator_is_accepted(edge: Edge) -> None:
    params = voice_params()
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + "/twilio/voice", params)
    response = edge.post("/twilio/voice", params, signature)
    assert response.status_code == 200
    assert _is_stream_twiml(response.text)


def test_unknown_extra_parameters_are_signed_and_accepted(edge: Edge) -> None:
    params = {**voice_params(), "FromCity": "BOSTON", "CallToken": "%7B%22x%22%7D", "Empty": ""}
    assert edge.post_signed("/twilio/voice", params).status_code == 200


def test_webhook_retry_dispatches_the_call_once(edge: Edge) -> None:
    first = edge.post_signed("/twilio/voice", voice_params())
    second = edge.post_signed("/twilio/voice", voice_params())
    assert first.status_code == second.status_code == 200
    assert _is_stream_twiml(second.text)
    assert len(_dispatched(edge)) == 1


def test_two_calls_get_their_own_records_and_tokens(edge: Edge) -> None:
    first = edge.post_signed("/twilio/voice", voice_params())
    second = edge.post_signed("/twilio/voice", voice_params(OTHER_CALL))
    assert _is_stream_twiml(first.text, tf.CALL_SID)
    assert _is_stream_twiml(second.text, OTHER_CALL)
    assert edge.record(OTHER_CALL)[CallField.STATE] == CallState.DISPATCHED
    assert len(_dispatched(edge)) == 2


def test_signed_query_string_is_part_of_the_url(edge: Edge) -> None:
    params = voice_params()
    path = "/twilio/voice?tenant=acme"
    ok = edge.post(path, params, edge.sign(path, params))
    assert ok.status_code == 200
    stripped = edge.post(path, params, edge.sign("/twilio/voice", params))
    assert stripped.status_code == 403


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "garbage",
        "sign:wrong-token",
        "sign:tampered",
        "sign:host-header-url",
    ],
)
def test_bad_signature_is_refused_and_nothing_recorded(edge: Edge, signature: str | None) -> None:
    params = voice_params()
    if signature == "sign:wrong-token":
        signature = edge.sign("/twilio/voice", params, token="not-the-token")
    elif signature == "sign:tampered":
        signature = edge.sign("/twilio/voice", {**params, "From": "+19995550000"})
    elif signature == "sign:host-header-url":
        # What a check that trusts the Host header would compute; Twilio signed PUBLIC_URL.
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            "http://testserver/twilio/voice", params
        )
    response = edge.post("/twilio/voice", params, signature)
    assert response.status_code == 403
    assert edge.record() == {}
    assert _dispatched(edge) == []
    assert (
        edge.metric(
            "switchboard_edge_rejected_requests_total",
            route="/twilio/voice",
            reason="bad_signature",
        )
        == 1
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"From": "+16175551212"},
        {"CallSid": ""},
        {"CallSid": "CA123"},
        {"CallSid": "ca" + "a" * 32},
        {"CallSid": "MZ" + "a" * 32},
        {"CallSid": tf.CALL_SID + "\n"},
    ],
)
def test_missing_or_malformed_call_sid_is_a_bad_request(edge: Edge, params: dict[str, str]) -> None:
    response = edge.post_signed("/twilio/voice", params)
    assert response.status_code == 400
    assert _dispatched(edge) == []
    assert (
        edge.metric(
            "switchboard_edge_rejected_requests_total",
            route="/twilio/voice",
            reason="bad_call_sid",
        )
        == 1
    )


@pytest.mark.parametrize(
    "body",
    [b'{"CallSid": "CA00000000000000000000000000000000"}', b"\xff\xfe\x00garbage", b"%%%&&&==="],
)
def test_body_that_is_not_a_form_is_a_bad_request(edge: Edge, body: bytes) -> None:
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    response = edge.client.post(
        "/twilio/voice",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": edge.sign("/twilio/voice", params),
        },
    )
    assert response.status_code == 400
    assert _dispatched(edge) == []


def test_oversized_body_is_refused(edge: Edge) -> None:
    params = {**voice_params(), "Padding": "x" * 70_000}
    response = edge.post_signed("/twilio/voice", params)
    assert response.status_code == 413
    assert _dispatched(edge) == []
    assert (
        edge.metric(
            "switchboard_edge_rejected_requests_total", route="/twilio/voice", reason="too_large"
        )
        == 1
    )


def test_only_post_is_routed(edge: Edge) -> None:
    assert edge.client.get("/twilio/voice").status_code == 405


def test_call_that_already_ended_is_hung_up(edge: Edge) -> None:
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.STATE, CallState.ENDED)
    response = edge.post_signed("/twilio/voice", voice_params())
    assert response.status_code == 200
    assert _is_hangup(response.text)
    assert _dispatched(edge) == []


def test_edge_not_ready_declines_politely(edge: Edge) -> None:
    edge.runtime.draining = True
    response = edge.post_signed("/twilio/voice", voice_params())
    assert response.status_code == 200
    root = _root(response.text)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == make_settings().busy_message
    assert edge.record() == {}
    assert _dispatched(edge) == []


def test_a_draining_edge_can_reject_instead_of_speaking() -> None:
    with running_edge(make_settings(DRAIN_RESPONSE="reject")) as edge:
        edge.runtime.draining = True
        root = _root(edge.post_signed("/twilio/voice", voice_params()).text)
        assert [(child.tag, child.attrib) for child in root] == [("Reject", {"reason": "busy"})]


def test_a_full_edge_declines_new_calls_and_counts_them() -> None:
    with running_edge(make_settings(EDGE_MAX_CALLS="1")) as edge:
        other = StubCall("CA" + "1" * 32)
        edge.runtime.calls.add(other)
        try:
            response = edge.post_signed("/twilio/voice", voice_params())
        finally:
            edge.runtime.calls.remove(other)
        root = _root(response.text)
        assert [child.tag for child in root] == ["Say", "Hangup"]
        assert _dispatched(edge) == []
        rejected = "switchboard_edge_rejected_requests_total"
        assert edge.metric(rejected, route="/twilio/voice", reason="edge_full") == 1


def test_signature_check_can_be_switched_off_for_local_tests() -> None:
    settings = make_settings(
        TWILIO_VALIDATE_SIGNATURE="false", TWILIO_AUTH_TOKEN="", STREAM_TOKEN_SECRET="s" * 32
    )
    assert not settings.validate_signature
    with running_edge(settings) as edge:
        response = edge.post("/twilio/voice", voice_params())
        assert response.status_code == 200
        assert len(_dispatched(edge)) == 1


# --- POST /twilio/voice/resume --------------------------------------------------------------


def test_resume_of_a_live_call_reconnects_its_stream(edge: Edge) -> None:
    edge.answer()
    edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.STATE, CallState.LIVE)
    response = edge.post_signed("/twilio/voice/resume", voice_params())
    assert response.status_code == 200
    assert _is_stream_twiml(response.text)
    assert len(_dispatched(edge)) == 1  # a resume is not a new call


@pytest.mark.parametrize("state", [CallState.ENDED, None])
def test_resume_of_an_ended_or_unknown_call_hangs_up(edge: Edge, state: CallState | None) -> None:
    if state is not None:
        edge.answer()
        edge.redis.hset(edge.keys.call(tf.CALL_SID), CallField.STATE, state)
    response = edge.post_signed("/twilio/voice/resume", voice_params())
    assert response.status_code == 200
    assert _is_hangup(response.text)
    if state is None:
        assert edge.record() == {}  # resume never creates a call


def test_resume_of_a_call_that_ended_in_failure_plays_the_apology(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    edge.answer()
    # What the worker writes before it tells the edge to hang up: ended, and why.
    edge.redis.hset(
        edge.keys.call(tf.CALL_SID),
        mapping={
            CallField.STATE: CallState.ENDED,
            CallField.END_REASON: "error",
            CallField.ERROR: "realtime session failed: reconnects exhausted",
        },
    )
    with caplog.at_level(logging.INFO, logger="switchboard.edge.http"):
        response = edge.post_signed("/twilio/voice/resume", voice_params())
    assert response.status_code == 200
    root = _root(response.text)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == make_settings().failure_message
    assert any("ended in failure" in record.getMessage() for record in caplog.records)


def test_the_failure_message_is_configurable_and_normal_ends_just_hang_up() -> None:
    with running_edge(make_settings(FAILURE_MESSAGE="We are sorry. Goodbye.")) as edge:
        edge.answer()
        record_key = edge.keys.call(tf.CALL_SID)
        edge.redis.hset(record_key, mapping={CallField.STATE: CallState.ENDED, CallField.ERROR: ""})
        assert _is_hangup(edge.post_signed("/twilio/voice/resume", voice_params()).text)
        edge.redis.hset(record_key, CallField.ERROR, "format_mismatch")
        root = _root(edge.post_signed("/twilio/voice/resume", voice_params()).text)
        assert [(child.tag, child.text) for child in root] == [
            ("Say", "We are sorry. Goodbye."),
            ("Hangup", None),
        ]


def test_an_error_on_a_live_call_does_not_end_it(edge: Edge) -> None:
    edge.answer()
    edge.redis.hset(
        edge.keys.call(tf.CALL_SID),
        mapping={CallField.STATE: CallState.LIVE, CallField.ERROR: "a session was reopened"},
    )
    assert _is_stream_twiml(edge.post_signed("/twilio/voice/resume", voice_params()).text)


def test_no_worker_plays_the_busy_message_before_any_failure_rule(edge: Edge) -> None:
    edge.answer()
    edge.redis.hset(
        edge.keys.call(tf.CALL_SID),
        mapping={
            CallField.STATE: CallState.ENDED,
            CallField.END_REASON: "no_worker",
            CallField.ERROR: "no worker took the call",
        },
    )
    root = _root(edge.post_signed("/twilio/voice/resume", voice_params()).text)
    assert [(child.tag, child.text) for child in root][0] == ("Say", make_settings().busy_message)


def test_resume_needs_a_signature_for_its_own_url(edge: Edge) -> None:
    edge.answer()
    params = voice_params()
    response = edge.post("/twilio/voice/resume", params, edge.sign("/twilio/voice", params))
    assert response.status_code == 403
    assert (
        edge.metric(
            "switchboard_edge_rejected_requests_total",
            route="/twilio/voice/resume",
            reason="bad_signature",
        )
        == 1
    )


# --- POST /twilio/stream-status -------------------------------------------------------------


def test_stream_status_callback(edge: Edge) -> None:
    params = {
        "AccountSid": tf.ACCOUNT_SID,
        "CallSid": tf.CALL_SID,
        "StreamSid": tf.STREAM_SID,
        "StreamEvent": "stream-error",
        "StreamError": "Handshake Error",
        "Timestamp": "2026-01-01T00:00:00Z",
    }
    assert edge.post_signed("/twilio/stream-status", params).status_code == 204
    assert edge.post("/twilio/stream-status", params, "bad").status_code == 403


# --- health, readiness, metrics -------------------------------------------------------------


def test_healthz(edge: Edge) -> None:
    response = edge.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    edge.runtime.broken = "redis-reader stopped: boom"
    response = edge.client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "broken", "reason": "redis-reader stopped: boom"}


def test_readyz(edge: Edge) -> None:
    response = edge.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"ready": True, "calls": 0})
    edge.runtime.draining = True
    response = edge.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reasons": ["draining"]}


def test_metrics_endpoint(edge: Edge) -> None:
    edge.post("/twilio/voice", voice_params(), "bad")
    response = edge.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "switchboard_edge_redis_up 1.0" in text
    assert "switchboard_edge_active_calls 0.0" in text
    assert (
        'switchboard_edge_rejected_requests_total{reason="bad_signature",route="/twilio/voice"} '
        "1.0" in text
    )


# --- deployment details ---------------------------------------------------------------------


def test_public_url_with_a_path_prefix_is_what_gets_signed_and_handed_out() -> None:
    with running_edge(make_settings(PUBLIC_URL="https://example.com/switchboard/")) as edge:
        params = voice_params()
        signed_without_prefix = RequestValidator(AUTH_TOKEN).compute_signature(
            "https://example.com/twilio/voice", params
        )
        assert edge.post("/twilio/voice", params, signed_without_prefix).status_code == 403
        response = edge.post_signed("/twilio/voice", params)
        assert response.status_code == 200
        root = _root(response.text)
        stream, redirect = root.find("Connect/Stream"), root.find("Redirect")
        assert stream is not None and redirect is not None
        assert stream.attrib["url"] == "wss://example.com/switchboard/twilio/media"
        assert redirect.text == "https://example.com/switchboard/twilio/voice/resume"


def test_redis_down_during_a_webhook_declines_the_call_instead_of_failing(edge: Edge) -> None:
    edge.server.connected = False
    try:
        response = edge.post_signed("/twilio/voice", voice_params())
        resume = edge.post_signed("/twilio/voice/resume", voice_params())
    finally:
        edge.server.connected = True
    assert response.status_code == 200
    assert [child.tag for child in _root(response.text)] == ["Say", "Hangup"]
    assert resume.status_code == 200
    assert _is_hangup(resume.text)
