"""Twilio's shared-key signing end to end: a whole call signed with a SharedKey (HMAC-SHA256,
X-Twilio-Webhooks-Signature-Settings on every request and the stream upgrade) works, and a
request naming an algorithm the edge does not know is refused and counted."""

from __future__ import annotations

import random
import secrets

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.call_sim import place_call
from services.call_sim.signing import SETTINGS_HEADER, new_shared_key_id
from tests.support.stack import StackFactory, call_config, metric_value, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

REJECTED = "switchboard_edge_rejected_requests_total"


async def test_a_call_signed_with_a_shared_key_and_an_unknown_algorithm_refused(
    make_stack: StackFactory,
) -> None:
    shared = "shared-key-e2e-" + secrets.token_hex(12)
    stack = make_stack(workers=1, sim_mode="echo", edge_env={"TWILIO_WEBHOOK_SHARED_KEY": shared})
    audio = random.Random(31).randbytes(3 * 8000)
    # A wrong auth token: had any request been signed the legacy way, the edge would refuse it.
    report = await place_call(
        call_config(stack, audio, hold_s=1.0, auth_token="not-the-auth-token", shared_key=shared)
    )
    assert report.problems() == []
    assert len(report.stream_sids) == 1
    # Echo mode: the caller's audio comes back bit-exact (at most the last second cut off).
    assert len(report.received_audio) >= len(report.sent_audio) - 8000
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]
    metrics = scrape(stack.edge_admin_urls[0])
    for route in ("/twilio/voice", "/twilio/stream-status", "media"):
        assert metric_value(metrics, REJECTED, route=route, reason="bad_signature") == 0

    # The same key, an algorithm the edge does not know: 403 for the webhook and the upgrade.
    key_id = new_shared_key_id()
    unknown = {SETTINGS_HEADER: f"key={key_id},algorithm=HMAC_SHA512"}
    params = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + secrets.token_hex(16)}
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            stack.edge_urls[0] + "/twilio/voice",
            data=params,
            headers={**unknown, "X-Twilio-Signature": "c2lnbmVk"},
        )
    assert response.status_code == 403
    ws_url = stack.edge_urls[0].replace("http://", "ws://") + "/twilio/media"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url, additional_headers=unknown, proxy=None, open_timeout=5):
            pass
    assert refused.value.response.status_code == 403

    metrics = scrape(stack.edge_admin_urls[0])
    reason = "unknown_signature_algorithm"
    assert metric_value(metrics, REJECTED, route="/twilio/voice", reason=reason) == 1
    assert metric_value(metrics, REJECTED, route="media", reason=reason) == 1
    log = stack.edges[0].log()
    assert log.count("'HMAC_SHA512'") == 2
    assert shared not in log
