"""Hostile input against running processes: every outcome is defined, counted, and harmless to
a concurrent healthy call. Plus: no secret ever leaks, and auth-token rotation works."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from services.call_sim import CallConfig, CallReport, place_call
from services.devstack import PUBLIC_URL, RedisHandle, Stack, StackConfig, start_redis_server
from services.edge.stream_token import derive_token_key, issue_token
from tests.support.calls import CALLER_AUDIO, segments_of, sim_sessions
from tests.support.raw_twilio import (
    VALIDATOR,
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

STREAM_SECRET = "e2e-stream-token-secret-6f1d2c"
MALFORMED = "switchboard_edge_malformed_input_total"
REJECTED = "switchboard_edge_rejected_requests_total"


def healthy_call(stack: Stack, seconds: float, seed: int) -> asyncio.Task[CallReport]:
    audio = random.Random(seed).randbytes(int(seconds * 8000))
    config = call_config(stack, audio)
    return asyncio.create_task(place_call(config))


def assert_bit_exact(report: CallReport) -> None:
    assert report.problems() == []
    assert len(report.received_audio) >= len(report.sent_audio) - 8000
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]


async def open_stream(stack: Stack) -> tuple[str, str, str]:
    call_sid, stream_sid = "CA" + secrets.token_hex(16), "MZ" + secrets.token_hex(16)
    return call_sid, stream_sid, await answer_call(stack, call_sid)


async def test_each_hostile_outcome_is_defined_and_counted(make_stack: StackFactory) -> None:
    stack = make_stack(
        workers=1,
        sim_mode="echo",
        edge_env={"STREAM_TOKEN_SECRET": STREAM_SECRET, "IDLE_TIMEOUT": "2"},
    )
    healthy = healthy_call(stack, 8, seed=21)
    url = ws_url(stack)

    # A binary frame, a second start and a stop for another stream: dropped, counted.
    call_sid, stream_sid, token = await open_stream(stack)
    async with connect(url, additional_headers=signed()) as ws:
        await ws.send(start_message(call_sid, stream_sid, token))
        await ws.send(b"\x00\x01binary")
        await ws.send(start_message(call_sid, stream_sid, token))
        other = "MZ" + secrets.token_hex(16)
        await ws.send(json.dumps({"event": "stop", "streamSid": other, "stop": {}}))
        await ws.send("x" * 20_000)  # over MAX_MESSAGE_BYTES
        frame = base64.b64encode(b"\x42" * 160).decode()
        flood_began = time.monotonic()
        for seq in range(400):  # 8 s of audio in one burst: only MEDIA_BURST_MS gets through
            await ws.send(media_message(stream_sid, frame, seq))
        # The edge handles a socket's messages in order: the stop comes after the whole burst.
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
        assert await closed_code(ws) == 1000
        # The edge took the burst in at most this long; real time let that much more through.
        flood_frames = math.ceil((time.monotonic() - flood_began) * 1000 / 20)

    # A stream for a call that was never posted, even with a correctly signed token.
    ghost = "CA" + secrets.token_hex(16)
    ghost_token = issue_token(derive_token_key(STREAM_SECRET), ghost, time.time(), 60)
    async with connect(url, additional_headers=signed()) as ws:
        await ws.send(start_message(ghost, "MZ" + secrets.token_hex(16), ghost_token))
        assert await closed_code(ws) == 1008

    # The ended call's token cannot be replayed, and its resume hangs up.
    async with connect(url, additional_headers=signed()) as ws:
        await ws.send(start_message(call_sid, "MZ" + secrets.token_hex(16), token))
        assert await closed_code(ws) == 1008
    params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32}
    async with httpx.AsyncClient() as client:
        resume = await client.post(
            stack.edge_urls[0] + "/twilio/voice/resume",
            data=params,
            headers={
                "X-Twilio-Signature": VALIDATOR.compute_signature(
                    PUBLIC_URL + "/twilio/voice/resume", params
                )
            },
        )
    assert "<Hangup/>" in resume.text

    # A client that never sends start is closed after IDLE_TIMEOUT.
    async with connect(url, additional_headers=signed()) as ws:
        assert await closed_code(ws) == 1008

    report = await healthy
    assert_bit_exact(report)
    metrics = scrape(stack.edge_admin_urls[0])
    for kind in ("binary", "duplicate_start", "wrong_stream", "too_large"):
        assert metric_value(metrics, MALFORMED, kind=kind) == 1, kind
    dropped = metric_value(
        metrics, "switchboard_edge_media_dropped_total", reason="faster_than_real_time"
    )
    # All beyond the 2 s burst, less what the time the burst took admitted.
    assert 400 - 2000 // 20 - flood_frames - 1 <= dropped <= 400 - 2000 // 20
    for reason in ("unknown_call", "call_ended", "no_start"):
        assert metric_value(metrics, REJECTED, route="media", reason=reason) == 1, reason
    log = stack.edges[0].log()
    for words in ("(binary)", "(duplicate_start)", "(wrong_stream)", "MAX_MESSAGE_BYTES"):
        assert words in log, words
    assert all(process.alive() for process in stack.processes())


async def test_two_auth_tokens_during_rotation(make_stack: StackFactory) -> None:
    old, new = "old-auth-token-" + secrets.token_hex(8), "new-auth-token-" + secrets.token_hex(8)
    stack = make_stack(
        workers=1,
        sim_mode="echo",
        auth_token=new,
        edge_env={"TWILIO_AUTH_TOKEN_PREVIOUS": old},
    )
    for token, accepted in ((new, True), (old, True), ("some-other-token", False)):
        report = await place_call(
            CallConfig(
                edge_urls=stack.edge_urls,
                public_url=PUBLIC_URL,
                auth_token=token,
                caller_audio=random.Random(len(token)).randbytes(8000),
                hold_s=0.5,
            )
        )
        if accepted:
            assert_bit_exact(report)
        else:
            assert report.error is not None and "403" in report.error
    metrics = scrape(stack.edge_admin_urls[0])
    assert metric_value(metrics, REJECTED, route="/twilio/voice", reason="bad_signature") == 1


async def test_no_secret_appears_in_logs_metrics_or_responses(tmp_path: Path) -> None:
    values = {
        "openai": "sk-e2e-" + secrets.token_hex(12),
        "twilio": "twilio-e2e-" + secrets.token_hex(12),
        "twilio_previous": "twilio-old-e2e-" + secrets.token_hex(12),
        "stream": "stream-e2e-" + secrets.token_hex(12),
        "redis": "redis-e2e-" + secrets.token_hex(12),
    }
    redis_server: RedisHandle = start_redis_server(password=values["redis"])
    stack = Stack(
        StackConfig(
            redis_url=redis_server.url,
            log_dir=tmp_path / "logs",
            sim_mode="conversation",
            sim_args=["--api-key", values["openai"], "--speed", "8"],
            auth_token=values["twilio"],
            log_level="DEBUG",
            edge_env={
                "TWILIO_AUTH_TOKEN_PREVIOUS": values["twilio_previous"],
                "STREAM_TOKEN_SECRET": values["stream"],
            },
            worker_env={"OPENAI_API_KEY": values["openai"]},
        )
    )
    captured: list[str] = []
    try:
        stack.start()
        report = await place_call(
            CallConfig(
                edge_urls=stack.edge_urls,
                public_url=PUBLIC_URL,
                auth_token=values["twilio"],
                caller_audio=CALLER_AUDIO,
                hold_s=3.0,
            )
        )
        assert report.problems() == []
        assert report.received_audio, "the model's reply reached the caller"
        captured += report.twiml
        urls = [f"{stack.edge_admin_urls[0]}/{path}" for path in ("healthz", "readyz", "metrics")]
        urls += [f"http://127.0.0.1:{worker.port}/metrics" for worker in stack.workers]
        async with httpx.AsyncClient() as client:
            for url in urls:
                captured.append((await client.get(url)).text)
    finally:
        stack.stop()
        redis_server.close()
    captured += [process.log() for process in stack.processes()]
    everything = "\n".join(captured)
    assert "AI said" in everything  # the capture holds the real run
    for name, value in values.items():
        for form in (value, base64.b64encode(value.encode()).decode().rstrip("=")):
            assert form not in everything, f"the {name} secret leaked"
    # The config dump at start-up names each secret variable without its value.
    assert re.search(r"OPENAI_API_KEY=\S", stack.workers[0].log())


async def test_a_hostile_realtime_session_harms_no_call(make_stack: StackFactory) -> None:
    # Every 2nd session sends garbage, an unknown event, a recoverable error and a 200 kB delta,
    # then drops the socket mid-response (close 1011). The first call's session is well-behaved.
    stack = make_stack(workers=1, sim_mode="echo", sim_args=["--hostile-every", "2"])
    healthy = healthy_call(stack, 6, seed=31)
    await wait_for_audio_out(stack, 1)  # the healthy call's session (session 1) echoes
    hostile_audio = random.Random(32).randbytes(4 * 8000)
    hostile = await place_call(call_config(stack, hostile_audio))
    report = await healthy

    assert_bit_exact(report)
    # The hostile call: what came back is the caller's audio, unaltered (the huge delta was
    # dropped); the dropped session was replaced by a well-behaved one, whose echo carried the
    # call to its end. At most what was in flight when the socket dropped is missing.
    assert hostile.problems() == []
    assert hostile.closed_by == "caller"
    runs = segments_of(hostile.received_audio, hostile.sent_audio)
    assert runs[0][0] == 0 and runs[-1][1] >= len(hostile_audio)

    worker = stack.workers[0]
    metrics = scrape(f"http://127.0.0.1:{worker.port}")
    malformed = "switchboard_worker_malformed_input_total"
    assert metric_value(metrics, malformed, kind="not_json") == 1
    assert metric_value(metrics, malformed, kind="delta_too_large") == 1
    errors = "switchboard_worker_realtime_errors_total"
    assert metric_value(metrics, errors, code="invalid_value") == 1
    reconnects = "switchboard_worker_session_reconnects_total"
    assert metric_value(metrics, reconnects, reason="internal_error") == 1
    log = worker.log()
    assert f"call={hostile.call_sid} the Realtime server refused event ? (invalid_value)" in log
    assert "MAX_AUDIO_DELTA_BYTES" in log
    assert worker.alive()
    sessions = sim_sessions(stack)
    assert [s["hostile"] for s in sessions].count(True) == 1
