"""Webhooks and stream upgrades signed with a Twilio SharedKey (X-Twilio-Webhooks-Signature-
Settings), through the whole edge app: accepted with the configured key and the header's
algorithm, refused and counted otherwise."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator

from tests.support import twilio_frames as tf
from tests.support.edge_app import (
    MEDIA_URL,
    PUBLIC_URL,
    Edge,
    make_settings,
    running_edge,
    send,
    stream_token,
    voice_params,
)
from tests.support.waiting import eventually_sync

SHARED = "shared-key-secret-0123456789abcdef"
OLD_SHARED = "shared-key-secret-previous-fedcba98"
KEY_ID = "webhooks_sharedkey_01J9Z6Q8W5X4V3T2S1R0P9N8M7"
VOICE_URL = PUBLIC_URL + "/twilio/voice"
REJECTED = "switchboard_edge_rejected_requests_total"


def shared_headers(
    url: str, params: dict[str, str], secret: str = SHARED, algorithm: str = "HMAC_SHA256"
) -> dict[str, str]:
    """The headers Twilio sends when a Webhook Rule signs with a SharedKey."""
    validator = RequestValidator(secret)
    # twilio-python refuses to sign with an algorithm it does not know; sign with SHA-256.
    known = algorithm if algorithm.upper() in ("HMAC_SHA1", "HMAC_SHA256") else "HMAC_SHA256"
    return {
        "X-Twilio-Signature": validator.compute_signature(url, params, known),
        "X-Twilio-Webhooks-Signature-Settings": f"key={KEY_ID},algorithm={algorithm}",
    }


def post_voice(edge: Edge, headers: dict[str, str]) -> Any:
    return edge.client.post("/twilio/voice", data=voice_params(), headers=headers)


@pytest.fixture
def keyed() -> Any:
    with running_edge(make_settings(TWILIO_WEBHOOK_SHARED_KEY=SHARED)) as edge:
        yield edge


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1", "hmac_sha256"])
def test_a_webhook_signed_with_the_shared_key_is_answered(keyed: Edge, algorithm: str) -> None:
    response = post_voice(keyed, shared_headers(VOICE_URL, voice_params(), algorithm=algorithm))
    assert response.status_code == 200, response.text
    assert stream_token(response.text)
    assert keyed.record()["state"] == "dispatched"


def test_the_auth_token_still_signs_requests_without_the_header(keyed: Edge) -> None:
    assert keyed.post_signed("/twilio/voice", voice_params()).status_code == 200


def test_a_wrong_shared_key_is_refused(keyed: Edge) -> None:
    response = post_voice(keyed, shared_headers(VOICE_URL, voice_params(), secret="not-it"))
    assert response.status_code == 403
    assert keyed.record() == {}
    assert keyed.metric(REJECTED, route="/twilio/voice", reason="bad_signature") == 1


def test_an_unknown_algorithm_is_refused_counted_and_logged(
    keyed: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="switchboard.edge.http"):
        response = post_voice(keyed, shared_headers(VOICE_URL, voice_params(), algorithm="HMAC_X"))
    assert response.status_code == 403
    assert keyed.record() == {}
    reason = "unknown_signature_algorithm"
    assert keyed.metric(REJECTED, route="/twilio/voice", reason=reason) == 1
    assert any("'HMAC_X'" in record.getMessage() for record in caplog.records)
    assert all(SHARED not in record.getMessage() for record in caplog.records)


def test_the_header_without_a_configured_key_is_refused_telling_the_operator(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="switchboard.edge.http"):
        response = post_voice(edge, shared_headers(VOICE_URL, voice_params()))
    assert response.status_code == 403
    reason = "shared_key_not_configured"
    assert edge.metric(REJECTED, route="/twilio/voice", reason=reason) == 1
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "set TWILIO_WEBHOOK_SHARED_KEY" in line and KEY_ID in line


def test_rotation_accepts_the_previous_shared_key() -> None:
    settings = make_settings(
        TWILIO_WEBHOOK_SHARED_KEY=SHARED, TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS=OLD_SHARED
    )
    with running_edge(settings) as edge:
        old = shared_headers(VOICE_URL, voice_params(), secret=OLD_SHARED)
        assert post_voice(edge, old).status_code == 200
        new = shared_headers(VOICE_URL, voice_params(), secret=SHARED)
        assert post_voice(edge, new).status_code == 200
        third = shared_headers(VOICE_URL, voice_params(), secret="third")
        assert post_voice(edge, third).status_code == 403


def test_a_shared_key_alone_is_enough_and_refuses_auth_token_signatures() -> None:
    settings = make_settings(
        TWILIO_AUTH_TOKEN="", TWILIO_WEBHOOK_SHARED_KEY=SHARED, STREAM_TOKEN_SECRET="s" * 32
    )
    with running_edge(settings) as edge:
        assert post_voice(edge, shared_headers(VOICE_URL, voice_params())).status_code == 200
        assert edge.post_signed("/twilio/voice", voice_params()).status_code == 403


# --- the Media Streams upgrade ---------------------------------------------------------------


def test_a_stream_upgrade_signed_with_the_shared_key_attaches(keyed: Edge) -> None:
    token = keyed.answer()
    headers = shared_headers(MEDIA_URL, {})
    with keyed.client.websocket_connect("/twilio/media", headers=headers) as ws:
        send(ws, tf.connected())
        send(ws, tf.start(token))
        eventually_sync(lambda: keyed.record().get("state") == "live")
        send(ws, tf.stop())


@pytest.mark.parametrize(
    ("configured", "algorithm", "reason"),
    [
        (True, "HMAC_SHA512", "unknown_signature_algorithm"),
        (False, "HMAC_SHA256", "shared_key_not_configured"),
        (True, "HMAC_SHA1", "bad_signature"),  # signed with SHA-256, said to be SHA-1
    ],
)
def test_a_stream_upgrade_is_refused_before_accept(
    configured: bool, algorithm: str, reason: str
) -> None:
    env = {"TWILIO_WEBHOOK_SHARED_KEY": SHARED} if configured else {}
    with running_edge(make_settings(**env)) as edge:
        headers = shared_headers(MEDIA_URL, {})
        headers["X-Twilio-Webhooks-Signature-Settings"] = f"key={KEY_ID},algorithm={algorithm}"
        with (
            pytest.raises(WebSocketDisconnect) as info,
            edge.client.websocket_connect("/twilio/media", headers=headers),
        ):
            pass
        assert info.value.code == 1008
        assert edge.metric(REJECTED, route="media", reason=reason) == 1
