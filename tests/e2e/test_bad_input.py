"""Hostile and broken input over real sockets: each gets its refusal, a counter and a log line,
and a healthy call on the same edge at the same time stays bit-exact."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.call_sim import place_call
from services.devstack import Stack
from tests.support.raw_twilio import (
    answer_call,
    closed_code,
    media_message,
    signed,
    start_message,
    ws_url,
)
from tests.support.stack import (
    StackFactory,
    call_config,
    metric_value,
    scrape,
    wait_for_audio_out,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def unsigned_upgrade(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(stack)):
            pass
    assert refused.value.response.status_code == 403


async def wrong_token(stack: Stack) -> None:
    call_sid = "CA" + secrets.token_hex(16)
    other_sid = "CA" + secrets.token_hex(16)
    other_token = await answer_call(stack, other_sid)
    await answer_call(stack, call_sid)
    async with connect(ws_url(stack), additional_headers=signed()) as ws:
        # Another call's (valid) token must not open this call's stream.
        await ws.send(start_message(call_sid, "MZ" + secrets.token_hex(16), other_token))
        assert await closed_code(ws) == 1008


async def garbage_then_a_working_stream(stack: Stack) -> bytes:
    """Garbage JSON, media before start and bad base64 are dropped; the stream goes on."""
    call_sid, stream_sid = "CA" + secrets.token_hex(16), "MZ" + secrets.token_hex(16)
    token = await answer_call(stack, call_sid)
    audio = bytes(range(256)) * 5  # 1280 bytes = 8 frames
    async with connect(ws_url(stack), additional_headers=signed()) as ws:
        await ws.send("{this is not json")
        await ws.send(media_message(stream_sid, "AAAA", 1))  # media before start
        await ws.send(start_message(call_sid, stream_sid, token))
        await ws.send(media_message(stream_sid, "!!not base64!!", 2))
        for i in range(0, len(audio), 160):
            frame = base64.b64encode(audio[i : i + 160]).decode()
            await ws.send(media_message(stream_sid, frame, 3 + i // 160))
        received = b""
        while len(received) < len(audio):
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["event"] == "media":
                received += base64.b64decode(message["media"]["payload"])
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
    return received


async def test_bad_input_is_refused_and_counted_while_a_healthy_call_stays_bit_exact(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=1, sim_mode="echo")
    healthy_audio = random.Random(7).randbytes(5 * 8000)
    healthy = asyncio.create_task(place_call(call_config(stack, healthy_audio)))
    await wait_for_audio_out(stack, 1)  # the healthy call is under way
    await unsigned_upgrade(stack)
    await wrong_token(stack)
    echoed = await garbage_then_a_working_stream(stack)
    report = await healthy

    assert echoed == bytes(range(256)) * 5  # the broken client's good frames still echo exactly
    assert report.problems() == []
    assert report.sent_audio.startswith(healthy_audio)
    assert len(report.received_audio) >= len(healthy_audio)
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]

    metrics = scrape(stack.edge_admin_urls[0])
    name = "switchboard_edge_malformed_input_total"
    assert metric_value(metrics, name, kind="not_json") == 1
    assert metric_value(metrics, name, kind="before_start") == 1
    assert metric_value(metrics, name, kind="bad_base64") == 1
    rejected = "switchboard_edge_rejected_requests_total"
    assert metric_value(metrics, rejected, route="media", reason="bad_signature") == 1
    assert metric_value(metrics, rejected, route="media", reason="bad_token") == 1

    log = stack.edges[0].log()
    assert "refused a media stream upgrade: missing X-Twilio-Signature" in log
    assert "stream token does not belong to this call" in log
    assert "(not_json)" in log and "(before_start)" in log and "(bad_base64)" in log
